"""A studio served in-process on the tiny random model, for tests and quick manual checks:

    with running_app(tmp_path) as srv:
        Client(srv.url) ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .settings import Settings
from .state import AppContext


@dataclass
class Served:
    url: str
    ctx: AppContext
    demo: Any


def tiny_settings(root: Path, **overrides: Any) -> Settings:
    s = Settings(db=str(root / "runs" / "studio.db"), data_dir=root / "data", runs_dir=root / "runs",
                 model="tiny-random", device="cpu", poll_s=0.5)
    return replace(s, **overrides)


@contextlib.contextmanager
def running_app(root: Path, **overrides: Any) -> Iterator[Served]:
    """Storage + job supervisor (fast timings) + the app on a free local port; all stopped on exit,
    running jobs cancelled."""
    from storage import JobSettings

    from .main import build_app, close_context, create_context, serve

    settings = tiny_settings(root, **overrides)
    ctx = create_context(settings, job_settings=JobSettings(poll_interval_s=0.2, heartbeat_interval_s=1.0,
                                                            cancel_grace_s=20.0, kill_grace_s=5.0))
    demo = build_app(ctx)
    server = serve(ctx, demo, port=0)
    try:
        server.start()
        yield Served(url=server.url, ctx=ctx, demo=demo)
    finally:
        server.stop()
        if ctx.queue is not None:
            ctx.queue.stop(cancel_running=True, timeout=30)
        close_context(ctx)
