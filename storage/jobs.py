"""The job supervisor: takes queued runs from the database and runs each in its own process.

Why a process per run: a crash, a CUDA error or a memory blow-up in one run cannot take the app or
the other runs with it, and a stuck run can be killed with its whole process group. The queue lives
in the database, so it survives app restarts; running jobs are not children the app must keep alive
(their output goes to a log file, never to a pipe), so a restarted app finds them by pid + heartbeat
and supervises them again. Each job records its host with its pid: studios on other machines sharing
the database judge it by its heartbeat alone (its pid means nothing in their ``/proc``).

One background thread polls (``tick``): reap exited jobs, mark stale runs FAILED, escalate cancels
(flag → SIGTERM → SIGKILL of the process group), start queued runs while a device slot is free.
Where a job runs is the executor's business (``executors.py``): a local process by default, a Ray job
with ``RayExecutor``; the lifecycle above is the same for both.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptmoe_core.config import RunConfig

from .errors import InvalidTransition, RunNotFound, StorageError
from .executors import ENV_RAY_ADDRESS, Executor, Job, JobState
from .logs import tail_file
from .models import RunStatus
from .paths import ENV_DB
from .procs import WORKER_MODULE, is_worker_alive, signal_group
from .records import RunInfo
from .repo import Storage

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class JobSettings:
    """Timings are seconds. Tests shrink them; the defaults suit real training runs."""

    slots: int | Sequence[str] | None = None  # None: one job per device (each GPU, else one for the CPU)
    runs_per_device: int = 1  # jobs sharing each GPU slot (packing small runs); the CPU stays one slot
    poll_interval_s: float = 1.0
    idle_poll_interval_s: float | None = None  # with no job of ours running (None: 5 x poll_interval_s)
    heartbeat_interval_s: float = 5.0  # how often a job writes its heartbeat
    heartbeat_grace_s: float = 30.0  # a RUNNING run without a heartbeat for this long is stale
    start_grace_s: float = 180.0  # the same before the job's first heartbeat (imports, model download)
    cancel_grace_s: float = 30.0  # after a cancel request, how long the job may take to stop by itself
    kill_grace_s: float = 10.0  # after SIGTERM, how long before SIGKILL
    log_tail_lines: int = 40  # stored with a failure
    target: str | None = None  # tests and benchmarks only: "module:function" instead of the trainer
    extra_env: Mapping[str, str] = field(default_factory=dict)
    host: str | None = None  # this machine's name in the database (default: socket.gethostname())




def default_devices() -> list[str]:
    """One slot per CUDA device, else a single slot (CPU or MPS)."""
    try:
        import torch
    except ImportError:
        return ["cpu"]
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(n)] or ["cpu"]


def resolve_slots(slots: int | Sequence[str] | None, runs_per_device: int = 1) -> list[str]:
    """Device slots, one entry per job that may run at once: a GPU listed ``runs_per_device`` times
    holds that many runs (packing); the CPU stays one slot (its runs would only share the cores)."""
    if runs_per_device < 1:
        raise ValueError(f"runs_per_device must be >= 1, got {runs_per_device}")
    if slots is None:
        devices = default_devices()
    elif isinstance(slots, int):
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        return [f"slot{i}" for i in range(slots)]
    elif not slots:
        raise ValueError("give at least one device slot")
    else:
        devices = list(slots)
    return [d for d in devices for _ in range(runs_per_device if d.startswith("cuda") else 1)]


class LocalExecutor:
    """A process per run on this machine (``start_new_session``: its own process group)."""

    remote = False

    def __init__(self, slots: int | Sequence[str] | None = None, runs_per_device: int = 1):
        self._slots = resolve_slots(slots, runs_per_device)

    def slots(self) -> list[str]:
        return list(self._slots)

    def check_submit(self, storage: Storage) -> None:
        return None

    def owns(self, run: RunInfo, host: str) -> bool:
        return run.submission_id is None and run.host in (None, host)

    def launch(self, storage: Storage, run: RunInfo, device: str, cmd: list[str], env: dict[str, str]) -> Job:
        env = {**env, **_device_env(device, self._slots, env)}
        log_path = Path(run.log_path or Path(run.output_dir or ".") / "job.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            out.write(f"[studio] run {run.id} starting on {device}: {' '.join(cmd[1:])}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, env=env,
            )
        return Job(run.id, device, proc, pid=proc.pid, log_path=str(log_path))

    def poll(self, job: Job) -> JobState:
        proc: subprocess.Popen[bytes] | None = job.handle
        if proc is not None:
            state = _exit_state(proc)
            if state == "running":
                return JobState(True)
            if state == "zombie":
                # Until it is reaped, the dead worker keeps its pid (= its group id) from being reused,
                # so this can only reach what the job left behind in its group (e.g. data loaders).
                signal_group(proc.pid, signal.SIGKILL)
            return JobState(False, proc.wait())
        if is_worker_alive(job.pid, job.run_id):
            return JobState(True)
        return JobState(False)  # not our child: its pid may be reused by now, so no signal

    def adopt(self, run: RunInfo) -> tuple[Job | None, str | None]:
        if run.pid is None:
            return None, None  # claimed; its process is starting, or never started
        if not is_worker_alive(run.pid, run.id):
            return None, f"its process {run.pid} is gone"
        return Job(run.id, run.device, None, pid=run.pid, log_path=run.log_path), None

    def terminate(self, job: Job) -> None:
        if job.pid:
            signal_group(job.pid, signal.SIGTERM)

    def kill(self, job: Job) -> None:
        if job.pid and (job.handle is not None or is_worker_alive(job.pid, job.run_id)):
            signal_group(job.pid, signal.SIGKILL)

    def wait(self, job: Job, timeout: float) -> None:
        if job.handle is not None:
            try:
                job.handle.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("run %s (pid %s) did not die", job.run_id, job.pid)

    def log_tail(self, run: RunInfo, n: int) -> str:
        return tail_file(run.log_path, n)


def make_executor(
    ray_address: str | None = None,
    *,
    slots: int | Sequence[str] | None = None,
    runs_per_device: int = 1,
    gpus_per_run: float = 0.0,
    cpus_per_run: float = 1.0,
    env: Mapping[str, str] | None = None,
) -> Executor:
    """The Ray executor when an address is given (``--ray`` / ``PTMOE_RAY_ADDRESS``), else the local one."""
    address = ray_address or (os.environ if env is None else env).get(ENV_RAY_ADDRESS)
    if not address:
        return LocalExecutor(slots, runs_per_device)
    from .ray_executor import RayExecutor

    max_running = slots if isinstance(slots, int) else None
    return RayExecutor(address, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run, max_running=max_running)


_resolve_slots = resolve_slots  # its older name


class JobManager:
    """Starts, watches and cancels the jobs of one database. Call ``start()`` once; ``stop()`` leaves
    running jobs running (the next ``start()`` reconnects to them) unless told to cancel them."""

    def __init__(self, storage: Storage, settings: JobSettings | None = None, executor: Executor | None = None):
        self.storage = storage
        self.settings = settings or JobSettings()
        self.executor: Executor = executor or LocalExecutor(self.settings.slots, self.settings.runs_per_device)
        self.devices = self.executor.slots()
        self.host = self.settings.host or socket.gethostname()
        self._jobs: dict[int, Job] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None  # the last supervisor-loop failure, for the app to show

    # ---- the API the app calls ---------------------------------------------------------------

    def submit(self, config: RunConfig | Mapping[str, Any], experiment: str = "default", name: str | None = None) -> int:
        self.executor.check_submit(self.storage)  # e.g. cluster mode on a SQLite file: refused before queueing
        run_id = self.storage.submit(config, experiment, name)
        self._wake.set()
        return run_id

    def wake(self) -> None:
        """Poll now (after queueing runs through ``Storage`` directly, e.g. a sweep)."""
        self._wake.set()

    def cancel(self, run_id: int) -> RunInfo:
        info = self.storage.request_cancel(run_id)
        self._wake.set()
        return info

    def running(self) -> list[int]:
        with self._lock:
            return sorted(self._jobs)

    def wait(self, run_id: int, timeout: float | None = None, poll_s: float = 0.1) -> RunInfo:
        """Block until the run reaches a final state (for scripts and tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self.storage.get_run(run_id)
            if info.is_final:
                return info
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {info.status} after {timeout}s")
            time.sleep(poll_s)

    def start(self) -> None:
        """Reconnect (adopt live jobs, fail stale ones) now, then supervise in a background thread."""
        if self._thread is not None:
            return
        self.tick()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ptmoe-jobs", daemon=True)
        self._thread.start()

    def stop(self, *, cancel_running: bool = False, kill: bool = False, timeout: float = 60.0) -> None:
        """Stop supervising. ``cancel_running``: cancel this manager's jobs and wait for them;
        ``kill``: SIGKILL their process groups now (their runs end KILLED or FAILED "stale")."""
        if kill:
            with self._lock:
                for job in self._jobs.values():
                    self.executor.kill(job)
                for job in self._jobs.values():
                    self.executor.wait(job, timeout)
                self._reap()
        if cancel_running:
            for run_id in self.running():
                try:
                    self.storage.request_cancel(run_id)
                except StorageError:
                    log.exception("cannot cancel run %s", run_id)
            deadline = time.monotonic() + timeout
            while self.running() and time.monotonic() < deadline:
                if self._thread is None:
                    self.tick()
                time.sleep(min(0.1, self.settings.poll_interval_s))
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> JobManager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- supervision -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                self.last_error = None
            except Exception as e:  # the supervisor must outlive any single failure
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("job supervisor tick failed")
            # Idle (no job of ours, so nothing was queued either: _fill took it), poll less often; a submit
            # or cancel through this manager wakes it at once, another process's within the idle interval.
            s = self.settings
            idle = s.idle_poll_interval_s if s.idle_poll_interval_s is not None else 5 * s.poll_interval_s
            self._wake.wait(s.poll_interval_s if self._jobs else idle)
            self._wake.clear()

    def tick(self) -> None:
        """One round: reap, detect stale runs, escalate cancels, start queued runs."""
        with self._lock:
            self._reap()
            self._watch()
            self._fill()

    def _reap(self) -> None:
        for job in list(self._jobs.values()):
            state = self.executor.poll(job)
            if state.running:
                if job.pending and not state.pending:
                    job.running_since = time.time()
                job.pending = state.pending
                continue
            del self._jobs[job.run_id]
            self._on_exit(job, state.exit_code, state.detail)

    def _on_exit(self, job: Job, rc: int | None, detail: str | None = None) -> None:
        try:
            run = self.storage.get_run(job.run_id)
        except RunNotFound:
            return
        if run.status is not RunStatus.RUNNING:
            return
        how = detail or ("exited" if rc is None else _describe_exit(rc))
        self._end_unreported(run, f"the job process {how} without reporting an end", rc)

    def _end_unreported(self, run: RunInfo, why: str, rc: int | None = None) -> None:
        """A RUNNING run whose job is gone or hung: KILLED if the user asked to cancel, else FAILED "stale"."""
        tail = self.executor.log_tail(run, self.settings.log_tail_lines)
        try:
            if run.cancel_requested:
                self.storage.transition(
                    run.id, RunStatus.KILLED, expect=RunStatus.RUNNING, reason="cancelled",
                    error_message=f"cancelled: {why}", error_detail=tail or None, exit_code=rc,
                )
            else:
                self.storage.transition(
                    run.id, RunStatus.FAILED, expect=RunStatus.RUNNING, reason="stale",
                    error_message=f"stale: {why}", error_detail=tail or None, exit_code=rc,
                )
        except (InvalidTransition, RunNotFound):
            pass  # the job reported its end meanwhile, or the run was deleted

    def _watch(self) -> None:
        now = time.time()
        running = {r.id: r for r in self.storage.list_runs(status=RunStatus.RUNNING)}
        for run in running.values():
            job = self._jobs.get(run.id)
            stale = self._is_stale(run, now, job)
            if job is None and not self.executor.owns(run, self.host):
                # Another machine's (or another executor's) job: no signal; only its silence says it is gone.
                if stale:
                    self._end_unreported(run, f"no heartbeat for {now - (run.heartbeat_at or now):.0f}s from "
                                              f"its host {run.host}")
                continue
            if job is None:
                job, gone = self.executor.adopt(run)
                if job is None:
                    if gone:
                        self._end_unreported(run, gone)
                    elif stale:  # claimed, but its process never started
                        self._end_unreported(run, "the job was claimed but its process never started")
                    continue
                stale = self._is_stale(run, now, job)
                if stale:
                    self._end_unreported(run, f"no heartbeat for {now - (run.heartbeat_at or now):.0f}s")
                    self.executor.kill(job)
                    continue
                log.info("reconnected to run %s (%s)", run.id, run.submission_id or f"pid {run.pid}")
                self._jobs[run.id] = job
            if stale:
                # Alive but silent (hung, stopped, deadlocked): free its device.
                self._end_unreported(run, f"no heartbeat for {now - (run.heartbeat_at or now):.0f}s")
                self.executor.kill(job)
                continue
            if run.cancel_requested_at is not None:
                self._escalate(job, now - run.cancel_requested_at)
        for job in self._jobs.values():
            if job.run_id in running:
                continue
            # The run is final (or deleted) but its process lingers, e.g. stuck at interpreter exit.
            if job.final_seen_at is None:
                job.final_seen_at = time.monotonic()
            elif time.monotonic() - job.final_seen_at > self.settings.kill_grace_s and job.kill_at is None:
                job.kill_at = time.monotonic()
                self.executor.kill(job)

    def _is_stale(self, run: RunInfo, now: float, job: Job | None = None) -> bool:
        if job is not None and job.pending:
            return False  # waiting for a free GPU/CPU in the cluster: not started yet, so not silent
        if run.heartbeat_at is None:
            return True
        # The claim sets heartbeat_at = started_at; only the job's own beats move it on.
        beaten = run.started_at is None or run.heartbeat_at > run.started_at
        if beaten:
            return now - run.heartbeat_at > self.settings.heartbeat_grace_s
        since = max(run.heartbeat_at, job.running_since or 0.0) if job is not None else run.heartbeat_at
        return now - since > self.settings.start_grace_s

    def _escalate(self, job: Job, since_request: float) -> None:
        s = self.settings
        mono = time.monotonic()
        if job.term_at is None and since_request >= s.cancel_grace_s:
            log.info("run %s did not stop within %.0fs of the cancel; sending SIGTERM", job.run_id, s.cancel_grace_s)
            job.term_at = mono
            self.executor.terminate(job)
        elif job.term_at is not None and job.kill_at is None and mono - job.term_at >= s.kill_grace_s:
            log.info("run %s survived SIGTERM for %.0fs; sending SIGKILL", job.run_id, s.kill_grace_s)
            job.kill_at = mono
            self.executor.kill(job)

    def _fill(self) -> None:
        while len(self._jobs) < len(self.devices):
            used = [j.device for j in self._jobs.values()]
            # A device listed k times (runs_per_device) holds k jobs.
            device = next((d for d in dict.fromkeys(self.devices) if used.count(d) < self.devices.count(d)),
                          self.devices[0])
            run = self.storage.claim_next(device, self.host)
            if run is None:
                return
            self._spawn(run, device)

    def _spawn(self, run: RunInfo, device: str) -> None:
        s = self.settings
        cmd = [sys.executable, "-m", WORKER_MODULE, "--run-id", str(run.id), "--heartbeat", f"{s.heartbeat_interval_s:g}"]
        if s.target:
            cmd += ["--target", s.target]
        env = dict(os.environ)
        env[ENV_DB] = self.storage.url_string  # the URL may hold a password: not on the command line
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(s.extra_env)
        try:
            job = self.executor.launch(self.storage, run, device, cmd, env)
        except (OSError, StorageError) as e:
            log.exception("cannot start run %s", run.id)
            try:
                self.storage.transition(
                    run.id, RunStatus.FAILED, expect=RunStatus.RUNNING, reason="spawn",
                    error_message=f"could not start the job process: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                )
            except (InvalidTransition, RunNotFound):
                pass
            return
        self._jobs[run.id] = job
        if job.pid is not None:
            self.storage.set_pid(run.id, job.pid, self.host)
        log.info("started run %s as %s on %s", run.id, job.pid or job.handle, device)


def _device_env(device: str, devices: list[str], env: Mapping[str, str]) -> dict[str, str]:
    """With several GPUs, each job sees only its own (as cuda:0)."""
    if not device.startswith("cuda:") or len({d for d in devices if d.startswith("cuda:")}) < 2:
        return {}
    index = int(device.split(":", 1)[1])
    visible = [v for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return {"CUDA_VISIBLE_DEVICES": visible[index] if index < len(visible) else str(index)}


def _exit_state(proc: subprocess.Popen[bytes]) -> str:
    """running | zombie (exited, not reaped: its pid is still reserved) | reaped."""
    if proc.returncode is not None:
        return "reaped"
    try:
        exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return "reaped"
    except (AttributeError, OSError):  # no waitid on this platform
        return "running" if proc.poll() is None else "reaped"
    return "zombie" if exited else "running"


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with code {rc}"
