"""Process checks and signals for job processes (each one leads its own process group)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

WORKER_MODULE = "storage.worker"


def is_worker_alive(pid: int | None, run_id: int) -> bool:
    """True if ``pid`` is a live (not zombie) worker process for ``run_id``.

    Checking the command line guards against a recycled pid after a reboot or a long downtime; a
    zombie is a worker that died and waits to be reaped, so it counts as gone."""
    if not pid or pid <= 0:
        return False
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            return False
        except OSError:
            return _kill0(pid)
        state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else ""
        if state in ("Z", "X"):
            return False
        args = [a.decode(errors="replace") for a in cmdline]
        return WORKER_MODULE in args and _arg(args, "--run-id") == str(run_id)
    return _kill0(pid)


def _arg(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args[:-1]):
        if a == flag:
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _kill0(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal a job's whole process group (its data loaders, its own children). False if none is left.

    A pid is never reused while a process group with that id still exists, so a group named after a
    worker that has already exited can only hold that worker's descendants."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
