"""A job process: ``python -m storage.worker --run-id N`` (the database URL comes from PTMOE_DB).

The supervisor has already marked the run RUNNING; this process trains it and writes everything the
trainer reports (metrics, evaluations, routing records, checkpoints) through ``Storage``, writes a
heartbeat from a thread, stops cooperatively when the run's cancel flag is set or on SIGTERM, and
records how it ended. Whatever it cannot record (it was SIGKILLed, the machine died) the supervisor
records from outside: the run becomes FAILED "stale".
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptmoe_core import trackers
from ptmoe_core.callbacks import EvalReport, StepMetrics, TrainerCallback, eval_points, step_points
from ptmoe_core.config import RunConfig
from ptmoe_core.errors import PTMoEError

from . import domain_routing
from .errors import ParamConflict, StorageError
from .logs import tail_file
from .models import RunStatus
from .paths import ENV_DB
from .repo import Storage

log = logging.getLogger("storage.worker")
DEFAULT_TARGET = "ptmoe_core.trainer:train"
EXIT_FINISHED, EXIT_FAILED, EXIT_KILLED, EXIT_REFUSED = 0, 1, 2, 3


class StopSignal:
    """The trainer's ``should_stop``: true once the run's cancel flag is set (read from the database
    at most every ``interval_s``, so polling it every step is cheap), on SIGTERM, or when the run
    stopped being RUNNING under us (e.g. marked stale)."""

    def __init__(self, storage: Storage, run_id: int, interval_s: float = 1.0):
        self.storage, self.run_id, self.interval_s = storage, run_id, interval_s
        self.reason: str | None = None  # cancel | signal | lost
        self._checked = -math.inf

    def __call__(self) -> bool:
        if self.reason is None and time.monotonic() - self._checked >= self.interval_s:
            self._checked = time.monotonic()
            try:
                if self.storage.is_cancel_requested(self.run_id):
                    self.reason = "cancel"
            except StorageError as e:  # a database hiccup is no reason to stop training
                log.warning("cannot read the cancel flag: %s", e)
        return self.reason is not None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.set("signal")


class Heartbeat(threading.Thread):
    def __init__(self, storage: Storage, run_id: int, interval_s: float, stop: StopSignal):
        super().__init__(name="heartbeat", daemon=True)
        self.storage, self.run_id, self.interval_s, self.stop_signal = storage, run_id, interval_s, stop
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            try:
                running, cancel = self.storage.heartbeat(self.run_id)
            except Exception as e:  # keep beating: the next one may get through
                log.warning("heartbeat failed: %s", e)
                running, cancel = True, False
            if cancel:
                self.stop_signal.set("cancel")
            if not running:
                self.stop_signal.set("lost")
            if self._done.wait(self.interval_s):
                return

    def close(self) -> None:
        self._done.set()


class StorageCallback(TrainerCallback):
    """Writes what the trainer reports. Step metrics are buffered and committed together at most
    every ``flush_interval_s`` (and before every evaluation, checkpoint and the end), so a crash
    loses at most that much and fast runs do not pay a commit per step."""

    def __init__(self, storage: Storage, run_id: int, flush_interval_s: float = 0.5, max_buffer: int = 5000):
        self.storage, self.run_id = storage, run_id
        self.flush_interval_s, self.max_buffer = flush_interval_s, max_buffer
        self._buffer: list[tuple[str, int, float, float]] = []
        self._step: int | None = None
        self._last_flush = time.monotonic()
        self.last_step = 0

    def flush(self) -> None:
        if self._buffer or self._step is not None:
            self.storage.log_metrics(self.run_id, self._buffer, step=self._step)
            self._buffer = []
            self._step = None
        self._last_flush = time.monotonic()

    def on_train_begin(self, total_steps: int, start_step: int, info: dict[str, Any]) -> None:
        trainable = info.get("trainable_params")
        self.storage.update_progress(
            self.run_id, step=start_step, total_steps=total_steps,
            trainable_params=int(trainable) if trainable is not None else None,
        )
        scalars = {f"info.{k}": v for k, v in info.items() if isinstance(v, (str, int, float, bool)) or v is None}
        try:
            self.storage.log_params(self.run_id, scalars)
        except ParamConflict as e:  # e.g. a resumed run on another device
            log.warning("%s", e)

    def on_step(self, m: StepMetrics) -> None:
        ts = time.time()
        pts = step_points(m) + domain_routing.points(m.domain_routing)
        self._buffer += [(k, m.step, float(v), ts) for k, v in pts]
        self._step = self.last_step = m.step
        load = " load " + "/".join(f"{x:.2f}" for x in m.expert_load) if m.expert_load else ""
        log.info("step %d/%d loss %.4f lr %.2e %.0f tok/s%s", m.step, m.total_steps, m.loss, m.lr, m.tokens_per_s, load)
        if len(self._buffer) >= self.max_buffer or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def on_evaluate(self, report: EvalReport) -> None:
        ts = time.time()
        self._buffer += [(k, report.step, v, ts) for k, v in eval_points(report)]
        macro = report.scores.get("macro", {})
        log.info("evaluation at step %d: %s", report.step,
                 ", ".join(f"{k} {v:.3f}" for k, v in macro.items() if k != "n") or "no scores")
        self.flush()
        self.storage.log_evaluation(self.run_id, report.step, report.scores, report.records, loss=report.loss)

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.flush()
        log.info("checkpoint at step %d: %s", step, path)
        self.storage.add_artifact(self.run_id, "checkpoint", path, step)

    def on_train_end(self, status: str, step: int, adapter_dir: Path | None) -> None:
        self._step = step
        self.flush()
        if adapter_dir is not None:
            self.storage.add_artifact(self.run_id, "adapter", adapter_dir, step)
            self.storage.set_adapter(self.run_id, adapter_dir)


def resolve_target(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--target must be module:function, got {spec!r}")
    return getattr(importlib.import_module(module), name)


def run_job(storage: Storage, run_id: int, target: str, heartbeat_s: float) -> int:
    """Train one RUNNING run to its end; returns the process exit code."""
    run = storage.get_run(run_id)
    if run.status is not RunStatus.RUNNING:
        log.error("run %s is %s, not RUNNING; nothing to do", run_id, run.status)
        return EXIT_REFUSED
    storage.set_pid(run_id, os.getpid())
    stop = StopSignal(storage, run_id)
    signal.signal(signal.SIGTERM, stop.on_signal)
    signal.signal(signal.SIGINT, stop.on_signal)
    beat = Heartbeat(storage, run_id, heartbeat_s, stop)
    beat.start()
    callback = StorageCallback(storage, run_id)
    log.info("run %s (%s) starting: target %s", run_id, run.name, target)
    try:
        train = resolve_target(target)
        cfg = RunConfig.from_dict(run.config)
        # train.report_to's trackers, named after the run's experiment (the trainer skips those given)
        result = train(cfg, [callback, *trackers.for_run(cfg, run.experiment)], stop, resume=True)
        callback.flush()
        return _record_result(storage, run_id, result, stop, callback.last_step)
    except BaseException as e:  # every failure, KeyboardInterrupt included, must end up in the database
        _flush_quietly(callback)
        traceback.print_exc()
        sys.stderr.flush()
        sys.stdout.flush()
        message = str(e) if isinstance(e, PTMoEError) else f"{type(e).__name__}: {e}"
        detail = tail_file(run.log_path, 60) or traceback.format_exc()
        _end(storage, run_id, RunStatus.FAILED, reason="error", error_message=message or type(e).__name__,
             error_detail=detail, exit_code=EXIT_FAILED)
        return EXIT_FAILED
    finally:
        beat.close()


def _record_result(storage: Storage, run_id: int, result: Any, stop: StopSignal, last_step: int) -> int:
    """The trainer's own status decides: a cancel that arrived after the last step still FINISHED."""
    status = str(getattr(result, "status", "finished"))
    step = getattr(result, "step", None)
    adapter_dir = getattr(result, "adapter_dir", None)
    trainable = getattr(result, "trainable_params", None)
    storage.update_progress(
        run_id, step=step if step is not None else last_step,
        trainable_params=int(trainable) if trainable is not None else None,
    )
    if adapter_dir is not None and status == "finished":
        storage.set_adapter(run_id, adapter_dir)
    if status == "finished":
        _end(storage, run_id, RunStatus.FINISHED, reason="finished", exit_code=EXIT_FINISHED)
        return EXIT_FINISHED
    if status == "cancelled":
        # A SIGTERM that follows the user's cancel request is still the user's cancel.
        reason = "stale" if stop.reason == "lost" else "cancelled"
        if stop.reason == "signal" and not _cancel_requested(storage, run_id):
            reason = "signal"
        msg = {"cancelled": "cancelled by request", "signal": "stopped by a signal (SIGTERM)"}.get(reason)
        _end(storage, run_id, RunStatus.KILLED, reason=reason, error_message=msg, exit_code=EXIT_KILLED)
        return EXIT_KILLED
    _end(storage, run_id, RunStatus.FAILED, reason="error",
         error_message=f"the trainer ended with status {status!r}", exit_code=EXIT_FAILED)
    return EXIT_FAILED


def _cancel_requested(storage: Storage, run_id: int) -> bool:
    try:
        return storage.is_cancel_requested(run_id)
    except StorageError:
        return False


def _end(storage: Storage, run_id: int, to: RunStatus, **fields: Any) -> None:
    try:
        storage.transition(run_id, to, expect=RunStatus.RUNNING, **fields)
    except StorageError as e:  # already ended from outside (stale, deleted): nothing more to record
        log.warning("could not record the end of run %s as %s: %s", run_id, to, e)


def _flush_quietly(callback: StorageCallback) -> None:
    try:
        callback.flush()
    except Exception as e:
        log.warning("could not save the last metrics: %s", e)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", type=int, required=True)
    parser.add_argument("--db", default=None, help=f"database URL or SQLite path (default: ${ENV_DB})")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="seconds between heartbeats")
    parser.add_argument("--target", default=DEFAULT_TARGET, help="module:function to train with (tests only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        storage = Storage(args.db, upgrade=False)
    except StorageError as e:
        log.error("%s", e)
        return EXIT_REFUSED
    try:
        return run_job(storage, args.run_id, args.target, args.heartbeat)
    finally:
        storage.close()


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: library threads (tokenizers, CUDA) can hang it after the run has ended.
    os._exit(code)
