"""The Ray executor: one Ray job per run through Ray's job submission API.

The entry point is the studio's own worker (``python -m storage.worker --run-id N``), so the run
writes to the database exactly as a local job does; the database stays the source of truth. The
job asks for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs (0.25: four runs share a GPU) as
entrypoint resources. Its submission id is stored on the run before it is submitted, so a restarted
studio finds its jobs again. Cancel is the run's own (the cancel flag, then a checkpoint) and, after
the grace, ``stop_job``; liveness is Ray's job status plus the run's heartbeat; the log comes from
``get_job_logs`` (mirrored into the run's ``job.log`` for the app).

Cluster mode needs a server database and a runs folder every node sees at the same path: both are
checked before the first run is queued, each refusal one line saying what to set up. Token
authentication stays on: the client finds the token as ``ray start`` left it (``RAY_AUTH_MODE=token``
and ``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``).
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from .errors import StorageError
from .executors import ExecutorError, Job, JobState
from .logs import tail_file
from .paths import sqlite_path
from .records import RunInfo
from .repo import Storage

log = logging.getLogger(__name__)
INSTALL = "pip install 'ray[default]==2.60.0'"
LOG_MIRROR_S = 5.0  # how often a running job's Ray log is copied into its job.log
# What a job needs from the studio's environment: the database, the code, unbuffered output.
PASS_ENV = ("PTMOE_DB", "PYTHONPATH", "PYTHONUNBUFFERED", "PTMOE_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class RayExecutor:
    remote = True

    def __init__(self, address: str, *, gpus_per_run: float = 0.0, cpus_per_run: float = 1.0,
                 max_running: int | None = None, python: str | None = None, probe_timeout_s: float = 120.0):
        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError:
            raise ExecutorError(f"--ray needs Ray, which is not installed here: {INSTALL}") from None
        if gpus_per_run < 0 or cpus_per_run < 0:
            raise ExecutorError(f"gpus_per_run and cpus_per_run must be >= 0, got {gpus_per_run}, {cpus_per_run}")
        self.address = address
        try:
            self.client = JobSubmissionClient(address)
        except Exception as e:  # unreachable, refused token, not a Ray dashboard
            raise ExecutorError(f"cannot reach the Ray cluster at {address}: {_first_line(e)}") from None
        self.gpus_per_run, self.cpus_per_run = gpus_per_run, cpus_per_run
        self.python = python or sys.executable  # the same interpreter path on every node
        self.probe_timeout_s = probe_timeout_s
        self._slots = [f"ray{i}" for i in range(max_running or 8)]
        self._checked: set[str] = set()
        self._mirrored: dict[int, float] = {}

    def slots(self) -> list[str]:
        return list(self._slots)

    # ---- cluster checks ----------------------------------------------------------------------

    def check_submit(self, storage: Storage) -> None:
        if sqlite_path(storage.url) is not None or storage.url.get_backend_name() == "sqlite":
            raise ExecutorError(
                f"running on Ray needs a server database every node can reach, not the SQLite file {storage.label}: "
                "start the studio with --db postgresql+psycopg://USER:PASSWORD@HOST/DB"
            )
        key = str(storage.runs_dir)
        if key not in self._checked:
            self._probe_runs_dir(storage.runs_dir)
            self._checked.add(key)

    def _probe_runs_dir(self, runs_dir: Path) -> None:
        """A Ray job reads a token this process writes into the runs folder: the same folder, seen by
        the job at the same path (a node-local folder of the same name holds no such token)."""
        runs_dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        probe = runs_dir / f".ray-probe-{token[:12]}"
        probe.write_text(token)
        code = f"import pathlib,sys; p=pathlib.Path({str(probe)!r}); sys.exit(0 if p.is_file() and p.read_text()=={token!r} else 3)"
        sid = f"ptmoe-probe-{token[:12]}"
        try:
            self.client.submit_job(entrypoint=shlex.join([self.python, "-c", code]), submission_id=sid,
                                   entrypoint_num_cpus=0)
            deadline = time.monotonic() + self.probe_timeout_s
            status = None
            while time.monotonic() < deadline:
                status = str(self.client.get_job_status(sid))
                if status.endswith(("SUCCEEDED", "FAILED", "STOPPED")):
                    break
                time.sleep(0.2)
        except Exception as e:
            raise ExecutorError(f"cannot run a job on the Ray cluster at {self.address}: {_first_line(e)}") from None
        finally:
            probe.unlink(missing_ok=True)
        if status is None or not status.endswith("SUCCEEDED"):
            why = "did not start in time" if status is None or not status.endswith(("FAILED", "STOPPED")) else "failed"
            raise ExecutorError(
                f"the runs folder {runs_dir} is not visible to Ray jobs (a check job {why}): put it on storage "
                f"every node mounts at the same path and pass it with --runs-dir, with {self.python} on every node"
            )

    # ---- jobs --------------------------------------------------------------------------------

    def owns(self, run: RunInfo, host: str) -> bool:
        return run.submission_id is not None

    def launch(self, storage: Storage, run: RunInfo, device: str, cmd: list[str], env: dict[str, str]) -> Job:
        sid = f"ptmoe-run{run.id}-{uuid.uuid4().hex[:8]}"
        storage.set_submission_id(run.id, sid)  # first: a studio that dies right after still finds the job
        entry = shlex.join([self.python, *cmd[1:]])
        job_env = {k: v for k, v in env.items() if k in PASS_ENV or k.startswith("PTMOE_")}
        kwargs: dict[str, Any] = {"entrypoint_num_cpus": self.cpus_per_run}
        if self.gpus_per_run:
            kwargs["entrypoint_num_gpus"] = self.gpus_per_run
        try:
            self.client.submit_job(entrypoint=entry, submission_id=sid, runtime_env={"env_vars": job_env},
                                   metadata={"ptmoe_run_id": str(run.id)}, **kwargs)
        except Exception as e:
            raise StorageError(f"Ray refused the job: {_first_line(e)}") from None
        _append(run.log_path, f"[studio] run {run.id} submitted to Ray at {self.address} as {sid}: {entry}\n")
        return Job(run.id, device, sid, log_path=run.log_path, pending=True)

    def poll(self, job: Job) -> JobState:
        try:
            info = self.client.get_job_info(job.handle)
        except Exception as e:  # the dashboard restarting, a network blip: keep the job, the heartbeat decides
            log.warning("cannot read Ray job %s: %s", job.handle, _first_line(e))
            return JobState(True, pending=job.pending)
        status = str(info.status).rsplit(".", 1)[-1]
        now = time.monotonic()
        if status in ("SUCCEEDED", "FAILED", "STOPPED") or now - self._mirrored.get(job.run_id, 0) > LOG_MIRROR_S:
            self._mirror_log(job)
            self._mirrored[job.run_id] = now
        if status == "PENDING":
            return JobState(True, pending=True)
        if status == "RUNNING":
            return JobState(True)
        self._mirrored.pop(job.run_id, None)
        rc = getattr(info, "driver_exit_code", None)
        detail = f"ended on Ray as {status}" + (f" ({_first_line(info.message)})" if info.message else "")
        return JobState(False, rc, detail)

    def adopt(self, run: RunInfo) -> tuple[Job | None, str | None]:
        try:
            status = str(self.client.get_job_status(run.submission_id)).rsplit(".", 1)[-1]
        except Exception as e:
            if "does not exist" in str(e):
                return None, f"its Ray job {run.submission_id} is unknown to the cluster at {self.address}"
            log.warning("cannot read Ray job %s: %s", run.submission_id, _first_line(e))
            return None, None  # the cluster is unreachable for now: the heartbeat decides
        if status in ("PENDING", "RUNNING"):
            # Running since now at the latest: a job Ray held back gets its full start grace.
            return Job(run.id, run.device, run.submission_id, log_path=run.log_path, pending=status == "PENDING",
                       running_since=time.time() if status == "RUNNING" else None), None
        return None, f"its Ray job {run.submission_id} ended as {status}"

    def terminate(self, job: Job) -> None:
        self._stop(job)

    def kill(self, job: Job) -> None:
        self._stop(job)  # Ray's stop_job sends SIGTERM, then SIGKILL after its own timeout

    def _stop(self, job: Job) -> None:
        try:
            self.client.stop_job(job.handle)
        except Exception as e:
            log.warning("cannot stop Ray job %s: %s", job.handle, _first_line(e))

    def wait(self, job: Job, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.poll(job).running:
            time.sleep(0.2)

    def log_tail(self, run: RunInfo, n: int) -> str:
        if run.submission_id:
            try:
                return "\n".join(self.client.get_job_logs(run.submission_id).splitlines()[-n:])
            except Exception:
                pass
        return tail_file(run.log_path, n)

    def _mirror_log(self, job: Job) -> None:
        if not job.log_path:
            return
        try:
            text = self.client.get_job_logs(job.handle)
        except Exception:
            return
        path = Path(job.log_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        head = path.read_text(errors="replace").splitlines(keepends=True)[:1] if path.exists() else []
        path.write_text("".join(head) + text)


def _append(path: str | None, text: str) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(text)


def _first_line(e: object) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__
