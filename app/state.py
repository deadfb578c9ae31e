"""The app's in-memory building blocks: a bounded cache (models, adapters, shapes) and the
bounded-concurrency queue that inspection generation goes through, both owned by the studio service
(``studio.Studio``). Everything else (runs, metrics, logs) lives in storage, so a page refresh or a
second tab sees the same state.

``AppContext`` is the one object handed to ``build_app``: the settings and the service; there is no
module-level mutable state.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .settings import Settings

if TYPE_CHECKING:
    from .studio import Studio

T = TypeVar("T")


class LRUCache:
    """A thread-safe least-recently-used cache of at most ``size`` entries; ``get_or_load`` runs the
    loader outside the lock, and only one loader per key at a time."""

    def __init__(self, size: int):
        self.size = max(1, int(size))
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Any, threading.Lock] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def keys(self) -> list[Any]:
        with self._lock:
            return list(self._items)

    def get(self, key: Any) -> Any | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get_or_load(self, key: Any, loader: Callable[[], T]) -> T:
        hit = self.get(key)
        if hit is not None:
            return hit
        with self._lock:
            klock = self._key_locks.setdefault(key, threading.Lock())
        with klock:
            hit = self.get(key)
            if hit is not None:
                return hit
            value = loader()
            self.put(key, value)
        with self._lock:
            self._key_locks.pop(key, None)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class InspectQueue:
    """At most ``limit`` generations at once across every page and API client; the rest wait."""

    def __init__(self, limit: int):
        self.limit = max(1, int(limit))
        self._sem = threading.BoundedSemaphore(self.limit)
        self._lock = threading.Lock()
        self.waiting = 0
        self.running = 0

    def run(self, fn: Callable[[], T], timeout_s: float | None = None) -> T:
        with self._lock:
            self.waiting += 1
        try:
            if not self._sem.acquire(timeout=timeout_s):
                raise TimeoutError(f"inspection queue busy ({self.running} running); try again shortly")
        finally:
            with self._lock:
                self.waiting -= 1
        with self._lock:
            self.running += 1
        try:
            return fn()
        finally:
            with self._lock:
                self.running -= 1
            self._sem.release()


def gpu_wrap(fn: Callable[..., T], duration: int = 120) -> Callable[..., T]:
    """On a ZeroGPU Space, ``spaces.GPU`` attaches a GPU to each call; elsewhere ``fn`` as it is."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return fn
    try:
        return spaces.GPU(duration=duration)(fn)
    except Exception:  # an old or stub `spaces` package: run without the wrapper
        return fn


@dataclass
class AppContext:
    """What ``build_app`` and the tabs get: the serving settings (what the page shows and allows) and the
    studio service, which owns storage, the job manager and the caches (``storage`` and ``queue`` read
    through to the service's)."""

    settings: Settings
    studio: Studio

    @property
    def storage(self) -> Any:
        return self.studio.storage

    @property
    def queue(self) -> Any:
        """The job manager (``Studio.jobs``)."""
        return self.studio.jobs
