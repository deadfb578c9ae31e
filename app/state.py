"""What the app holds in memory: a bounded cache of loaded models/adapters and the bounded-concurrency
queue that inspection generation goes through. Everything else (runs, metrics, logs) lives in storage,
so a page refresh or a second tab sees the same state.

``AppContext`` is the one object handed to ``build_app``; there is no module-level mutable state.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .settings import Settings

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
    """Settings + storage + caches: everything the event handlers need."""

    settings: Settings
    storage: Any  # storage.Storage
    queue: Any = None  # storage job queue / supervisor (started by launch, stopped on exit)
    base_models: LRUCache = field(default_factory=lambda: LRUCache(2))
    adapters: LRUCache = field(default_factory=lambda: LRUCache(3))
    shapes: LRUCache = field(default_factory=lambda: LRUCache(16))
    inspect_queue: InspectQueue = field(default_factory=lambda: InspectQueue(1))
    started_at: float = field(default_factory=time.time)
    # Files built for the browser to download (adapter zips, saved configs): a private folder (mode 0700,
    # unpredictable name) of this studio only, so no planted link redirects a write and no other
    # studio's files are cleaned up; removed by close_context.
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ptmoe-studio-")))

    @classmethod
    def create(cls, settings: Settings, storage: Any, queue: Any = None) -> AppContext:
        return cls(
            settings=settings,
            storage=storage,
            queue=queue,
            base_models=LRUCache(settings.model_cache_size),
            adapters=LRUCache(settings.model_cache_size + 1),
            inspect_queue=InspectQueue(settings.inspect_concurrency),
        )

    def base_model(self, name: str) -> Any:
        """The frozen base model ``name`` on the inspection device, loaded once (LRU cache)."""
        device = self.settings.device

        def load() -> Any:
            from ptmoe_core.config import ModelConfig
            from ptmoe_core.models import load_base_model

            return load_base_model(ModelConfig(name=name, device=device))

        return self.base_models.get_or_load((name, device), load)

    def scratch_dir(self, max_age_s: float = 3600.0) -> Path:
        """A new empty folder in ``scratch`` for one download (two at once never share a file); folders
        older than ``max_age_s`` go first (downloads are one-off: Gradio has copied them to its cache)."""
        self.scratch.mkdir(mode=0o700, exist_ok=True)
        now = time.time()
        for old in self.scratch.iterdir():
            if now - old.lstat().st_mtime <= max_age_s:
                continue
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        return Path(tempfile.mkdtemp(dir=self.scratch))

    @property
    def runs_dir(self) -> Path:
        return Path(self.storage.runs_dir)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir
