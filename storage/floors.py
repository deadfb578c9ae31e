"""The floor cache: the frozen base model's evaluation, computed once per (model, evaluation sets).

One JSON file per ``ptmoe_core.floor.floor_key`` in ``<runs folder>/floors/``. Runs that differ only
in their method share a floor; a bundle may carry its floor, which an import puts here. A file that
cannot be read is treated as missing (and rewritten by the next computation), never trusted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ptmoe_core.bundle import BundleLimits, Evaluation, json_safe
from ptmoe_core.callbacks import EvalReport
from ptmoe_core.errors import BundleError

log = logging.getLogger(__name__)
FLOORS = "floors"
FORMAT_VERSION = 1
MAX_BYTES = BundleLimits().manifest_bytes
_KEY = re.compile(r"^[A-Za-z0-9._-]{1,120}$")


class FloorCache:
    """Floors under ``root / "floors"`` (``root`` is the studio's runs folder)."""

    def __init__(self, root: str | Path):
        self.dir = Path(root) / FLOORS

    def path(self, key: str) -> Path:
        if not _KEY.match(key) or key.startswith("."):
            raise ValueError(f"invalid floor key {key!r}")
        return self.dir / f"{key}.json"

    def get(self, key: str) -> Evaluation | None:
        p = self.path(key)
        try:
            if not p.is_file() or p.stat().st_size > MAX_BYTES:
                return None
            d = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(d, dict) or d.get("format_version") != FORMAT_VERSION or d.get("key") != key:
                raise ValueError("not a floor file of this version")
            return Evaluation.from_dict(d.get("evaluation"), str(p))
        except (OSError, ValueError, BundleError) as e:
            log.warning("ignoring the unreadable floor %s: %s", p, e)
            return None

    def put(self, key: str, evaluation: Evaluation, inputs: Mapping[str, Any] | None = None) -> Path:
        """Write atomically (a temporary file renamed into place)."""
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        doc = {"format_version": FORMAT_VERSION, "key": key, "inputs": dict(inputs or {}), "created_at": time.time(),
               "evaluation": evaluation.to_dict()}
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_text(json.dumps(json_safe(doc), allow_nan=False), encoding="utf-8")
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)
        return p

    def get_or_compute(self, key: str, compute: Callable[[], EvalReport],
                       inputs: Mapping[str, Any] | None = None) -> Evaluation:
        hit = self.get(key)
        if hit is not None:
            return hit
        ev = Evaluation.from_report(compute())
        self.put(key, ev, inputs)
        return ev
