"""Reading the end of a job's log without loading the whole file (logs of long runs get large)."""

from __future__ import annotations

import os
from pathlib import Path


def tail_file(path: str | os.PathLike[str] | None, n: int = 100, max_bytes: int = 1 << 20) -> str:
    """The last ``n`` lines of a text file ("" when it does not exist), reading at most ``max_bytes``."""
    if path is None or n <= 0:
        return ""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block, data = 8192, b""
            pos = size
            while pos > 0 and data.count(b"\n") <= n and size - pos < max_bytes:
                step = min(block, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
                block *= 2
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-n:])
