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
    """No gallery unless asked for (``gallery_dir=...``): tests start from an empty studio."""
    s = Settings(db=str(root / "runs" / "studio.db"), data_dir=root / "data", runs_dir=root / "runs",
                 model="tiny-random", device="cpu", poll_s=0.5, gallery_dir=None)
    return replace(s, **overrides)


@contextlib.contextmanager
def running_app(root: Path, settings: Settings | None = None, **overrides: Any) -> Iterator[Served]:
    """Storage + job supervisor (fast timings) + the app on a free local port; all stopped on exit,
    running jobs cancelled. ``settings`` (e.g. from ``settings.from_args``) replaces the tiny defaults."""
    from storage import JobSettings

    from .main import build_app, close_context, create_context, serve

    settings = replace(settings, **overrides) if settings is not None else tiny_settings(root, **overrides)
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


def gallery_script() -> Any:
    """``bench/gallery.py`` (the ``bench`` package)."""
    import importlib

    return importlib.import_module("bench.gallery")


def make_tiny_gallery(out: Path, steps: int = 2, eval_examples: int = 2) -> Path:
    """The gallery as ``python -m bench.gallery`` makes it, on the tiny random model (seconds, not minutes)."""
    code = gallery_script().main(["--model", "tiny-random", "--device", "cpu", "--steps", str(steps),
                                  "--eval-examples", str(eval_examples), "--out", str(out)])
    if code != 0:
        raise RuntimeError(f"python -m bench.gallery failed with exit code {code}")
    return out
