"""Perimeter checks the mounted Gradio app does not make itself (an ASGI middleware, ``Guard``):

- **Failed logins are throttled per client**: after ``FREE_TRIES`` wrong passwords from one client
  address, each further attempt must wait twice as long as the one before (1 s, 2 s, 4 s, … at most
  ``MAX_WAIT_S``); earlier ones are answered 429 with ``Retry-After`` without checking the password.
  A successful login clears the client's count.
- **The heartbeat route needs a login** when the studio has credentials (Gradio leaves it open).
- **No cross-origin writes**: a POST/PUT/PATCH/DELETE whose ``Origin`` (or ``Sec-Fetch-Site``) says it
  came from another site is refused (403) before it is read, so a page elsewhere cannot upload files
  or drive the studio with a plain form post (one that needs no CORS preflight).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

FREE_TRIES = 3
FIRST_WAIT_S = 1.0
MAX_WAIT_S = 300.0
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


class LoginThrottle:
    """Failed-login counts per client with an exponential wait; thread-safe, clock injectable."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000):
        self.clock = clock
        self.max_clients = max_clients
        self._failures: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """Seconds ``client`` must still wait before its next attempt (0: may try now)."""
        with self._lock:
            f = self._failures.get(client)
            if f is None or f.count < FREE_TRIES:
                return 0.0
            wait = min(FIRST_WAIT_S * 2 ** (f.count - FREE_TRIES), MAX_WAIT_S)
            return max(0.0, f.last + wait - self.clock())

    def failed(self, client: str) -> None:
        with self._lock:
            if client not in self._failures and len(self._failures) >= self.max_clients:
                self._failures.pop(next(iter(self._failures)))  # the oldest entry: memory stays bounded
            f = self._failures.setdefault(client, _Failures())
            f.count += 1
            f.last = self.clock()

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def is_cross_site(headers: dict[str, str]) -> bool:
    """The browser says the request came from another site: ``Sec-Fetch-Site`` other than same-origin
    (or none: a typed URL); without that header (older browsers), an ``Origin`` whose host is not the
    request's ``Host``. A page cannot set either header, and ``Sec-Fetch-Site`` stays right behind a
    reverse proxy that rewrites ``Host``."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False  # not a browser's cross-origin request (API clients send none)
    hosts = {headers.get("host", ""), headers.get("x-forwarded-host", "")} - {""}
    return origin == "null" or urlsplit(origin).netloc not in hosts


async def _answer(send: Callable, status: int, detail: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware around the studio's app; ``gradio_app`` (the mounted Gradio ``App``, set after
    mounting) answers whether a request carries a login."""

    def __init__(self, app: Any, throttle: LoginThrottle | None = None):
        self.app = app
        self.throttle = throttle or LoginThrottle()
        self.gradio_app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method, headers = scope.get("path", ""), scope.get("method", "GET"), _headers(scope)
        if method in UNSAFE_METHODS and is_cross_site(headers):
            await _answer(send, 403, "Cross-origin requests are refused.")
            return
        if "/heartbeat/" in path and not self._logged_in(headers):
            await _answer(send, 401, "Not authenticated")
            return
        if method == "POST" and path.rstrip("/").endswith("/login"):
            await self._login(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _logged_in(self, headers: dict[str, str]) -> bool:
        g = self.gradio_app
        if g is None or not getattr(g, "auth", None):
            return True  # no credentials: nothing to log in to
        cookies = {}
        for part in headers.get("cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            cookies[k] = v
        token = cookies.get(f"access-token-{g.cookie_id}") or cookies.get(f"access-token-unsecure-{g.cookie_id}")
        return token is not None and token in g.tokens

    async def _login(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        client = (scope.get("client") or ("?", 0))[0]
        wait = self.throttle.wait_s(client)
        if wait > 0:
            await _answer(send, 429, f"Too many failed logins; try again in {wait:.0f} s.",
                          [(b"retry-after", str(max(1, round(wait))).encode())])
            return
        status: list[int] = []

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] == 200:
            self.throttle.succeeded(client)
        elif status and status[0] in (400, 401, 403):
            self.throttle.failed(client)
