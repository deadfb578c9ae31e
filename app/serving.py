"""The studio's HTTP front: Gradio mounted in a FastAPI app whose middleware guards the perimeter.

- **Hosts**: a request whose ``Host`` header is not a name the studio was bound for is refused (400).
  A loopback studio answers only ``localhost`` / ``127.0.0.1`` / ``::1``, so a web page whose own
  domain was re-pointed at 127.0.0.1 (DNS rebinding) cannot drive it. A studio bound to every
  address (``0.0.0.0``, a Space) cannot know its names: it accepts any, unless ``--allowed-hosts``
  lists them; a studio bound to one address or name accepts that one.
- **Logins, heartbeats, cross-site writes**: ``guards.Guard`` throttles failed logins, requires a
  login for the heartbeat route and refuses cross-site POSTs (a plain form upload needs no preflight).
- **Origins**: no cross-origin request is ever allowed: the parent app's ``CORSMiddleware`` with no
  allowed origin answers preflights with 400 and adds no ``Access-Control-Allow-*`` header, and
  Gradio, seeing it, leaves out its own CORS handling (which echoes any origin when the Host is not
  a loopback name). The studio's page is same-origin and needs none.

Served by uvicorn in a background thread, as ``Blocks.launch`` does (``Server``).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from .guards import Guard
from .settings import Settings, is_loopback

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def allowed_hosts(settings: Settings) -> list[str]:
    """The ``Host`` names requests may carry: the bind address's names plus ``settings.allowed_hosts``."""
    extra = list(settings.allowed_hosts)
    if is_loopback(settings.host):
        return [*LOOPBACK_NAMES, *extra]
    if settings.host in WILDCARD_BINDS:
        return [*LOOPBACK_NAMES, *extra] if extra else ["*"]
    return [settings.host.strip("[]"), *LOOPBACK_NAMES, *extra]


# Gradio's queue looks for new work every 1 ms and for progress to send every 10 ms, busy or not: that
# polling was nearly all of an idle studio's CPU (3.3 of its 4 % of a core, measured with psutil on the
# 2-core test machine; 0.25 % with these values). An event now waits at most 0.1 s to start.
QUEUE_POLL_S = 0.1
PROGRESS_POLL_S = 0.25


def calm_queue(demo: Any) -> None:
    """Slow the idle polling of ``demo``'s queue (call after ``demo.queue()``); a no-op if a Gradio
    release renames these attributes."""
    queue = getattr(demo, "_queue", None)
    if queue is not None and hasattr(queue, "sleep_when_free"):
        queue.sleep_when_free = max(queue.sleep_when_free, QUEUE_POLL_S)
    if queue is not None and hasattr(queue, "progress_update_sleep_when_free"):
        queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, PROGRESS_POLL_S)


def asgi_app(settings: Settings, demo: Any, gradio_kwargs: dict[str, Any]) -> Any:
    """FastAPI(host check, no-CORS) with the Blocks mounted at ``/``."""
    import gradio as gr
    from fastapi import FastAPI
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    app = FastAPI(
        docs_url=None, redoc_url=None, openapi_url=None,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings), www_redirect=False),
                    Middleware(CORSMiddleware, allow_origins=[])],
    )
    mounted = gr.mount_gradio_app(app, demo, path="/", **gradio_kwargs)
    guarded = Guard(mounted)
    guarded.gradio_app = next((r.app for r in mounted.routes if hasattr(getattr(r, "app", None), "tokens")), None)
    # Gradio checks that every file argument of every event is a file it received as an upload (its
    # cache) only once its Blocks "has launched"; ``Blocks.launch`` sets that flag, mounting does not,
    # so without this any request could name a server path (``{"path": "/etc/passwd"}``) as a file.
    demo.has_launched = True
    guarded.routes = mounted.routes  # Server.stop ends open heartbeat streams through them
    return guarded


class Server:
    """uvicorn serving ``app`` on ``host:port`` (port 0: a free one) in a background thread:
    ``start``, then ``wait`` or ``stop``. The socket is bound at construction, so a taken port is an
    ``OSError`` right away."""

    def __init__(self, app: Any, host: str, port: int | None):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host.strip("[]"), port or 0))
        self.port = self.sock.getsockname()[1]
        shown = "127.0.0.1" if host in ("127.0.0.1", *WILDCARD_BINDS) else f"[{host.strip('[]')}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3))
        self.thread: threading.Thread | None = None

    def run(self) -> None:
        self.server.run(sockets=[self.sock])

    def wait(self) -> None:
        """Until the server stops (a short join at a time, so Ctrl-C reaches the caller)."""
        while self.thread is not None and self.thread.is_alive():
            self.thread.join(0.5)

    def start(self, timeout_s: float = 30.0) -> Server:
        self.thread = threading.Thread(target=self.run, name="ptmoe-http", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the studio's HTTP server did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        # Open pages hold heartbeat streams; Gradio ends them when its app's stop_event is set (as
        # Blocks.close does), so the shutdown need not wait them out.
        for route in getattr(self.app, "routes", []):
            stop_event = getattr(getattr(route, "app", None), "stop_event", None)
            if stop_event is not None:
                stop_event.set()
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.sock.close()
