"""Where a claimed run's job runs: the seam between the job supervisor (``jobs.JobManager``) and
what actually executes ``python -m storage.worker --run-id N``.

``jobs.LocalExecutor`` is the studio's own behaviour: a process per run on this machine, in its own
process group, output to the run's ``job.log``; one slot per device (each GPU, else one for the
CPU), or ``runs_per_device`` slots per GPU so several small runs share one. ``RayExecutor``
(``storage/ray_executor.py``) submits the same command as a Ray job. The supervisor keeps the run
lifecycle (claims, heartbeats, cancel grace, stale runs); an executor only starts, polls, stops and
reads the log of a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .errors import StorageError
from .records import RunInfo

if TYPE_CHECKING:
    from .repo import Storage

ENV_RAY_ADDRESS = "PTMOE_RAY_ADDRESS"


@dataclass
class Job:
    """A job the supervisor watches. ``handle``: the executor's own (a Popen, a Ray submission id)."""

    run_id: int
    device: str | None
    handle: Any
    pid: int | None = None
    log_path: str | None = None
    term_at: float | None = None
    kill_at: float | None = None
    final_seen_at: float | None = None
    pending: bool = False  # waiting for resources (Ray): neither started nor stale
    running_since: float | None = None  # when it left ``pending`` (epoch seconds)


@dataclass(frozen=True)
class JobState:
    running: bool
    exit_code: int | None = None
    detail: str | None = None  # how it ended, when the executor knows better than an exit code
    pending: bool = False


class Executor(Protocol):
    remote: bool  # its jobs are not processes of this machine (the supervisor never signals them)

    def slots(self) -> list[str]: ...
    def check_submit(self, storage: Storage) -> None: ...
    def owns(self, run: RunInfo, host: str) -> bool: ...
    def launch(self, storage: Storage, run: RunInfo, device: str, cmd: list[str], env: dict[str, str]) -> Job: ...
    def poll(self, job: Job) -> JobState: ...
    def adopt(self, run: RunInfo) -> tuple[Job | None, str | None]: ...
    def terminate(self, job: Job) -> None: ...
    def kill(self, job: Job) -> None: ...
    def wait(self, job: Job, timeout: float) -> None: ...
    def log_tail(self, run: RunInfo, n: int) -> str: ...


class ExecutorError(StorageError):
    """An executor refused a submit (e.g. cluster mode with a SQLite database); one line."""
