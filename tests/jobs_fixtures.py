"""Helpers for the storage and job tests.

``dispatch`` is a stand-in trainer with ``ptmoe_core.trainer.train``'s signature, run by real job
processes through ``python -m storage.worker --target tests.jobs_fixtures:dispatch``. The run's name
picks the behaviour (``ok-...``, ``raise-...``); ``PTMOE_TEST_STEP_S`` (set through
``JobSettings.extra_env``) is the time one step takes.

``db_url`` gives each test its own database: a SQLite file, or a fresh schema on the PostgreSQL
server named by ``PTMOE_TEST_DATABASE_URL`` (skipped when that is unset).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptmoe_core.callbacks import EvalReport, StepMetrics, TrainerCallback
from ptmoe_core.config import RunConfig

PG_ENV = "PTMOE_TEST_DATABASE_URL"
TARGET = "tests.jobs_fixtures:dispatch"


@dataclass
class FakeResult:
    status: str
    step: int
    adapter_dir: Path | None
    trainable_params: int


def config(name: str, steps: int = 10, **train: Any) -> dict[str, Any]:
    """A valid RunConfig dict for a fixture job."""
    return {
        "name": name,
        "model": {"name": "tiny-random", "device": "cpu"},
        "data": {"train": ["builtin:all"], "max_eval_examples": 2},
        "train": {"steps": steps, "warmup_steps": 0, "batch_size": 2, **train},
    }


def _step_s() -> float:
    return float(os.environ.get("PTMOE_TEST_STEP_S", "0.02"))


def _metrics(step: int, total: int) -> StepMetrics:
    return StepMetrics(
        step=step, total_steps=total, loss=1.0 / step, lr=0.1, tokens_per_s=1000.0 + step, grad_norm=0.5,
        router_entropy=0.6, expert_load=[0.25, 0.75],
    )


def _save(dirpath: Path, step: int) -> Path:
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / "state.txt").write_text(f"step {step}\n")
    return dirpath


def _checkpoint(cfg: RunConfig, cbs: Sequence[TrainerCallback], step: int) -> Path:
    path = _save(Path(cfg.output_dir) / "checkpoints" / f"step-{step:06d}", step)
    for cb in cbs:
        cb.on_checkpoint(step, path)
    return path


def _stop_here(cfg: RunConfig, cbs: Sequence[TrainerCallback], step: int) -> FakeResult:
    _checkpoint(cfg, cbs, step)
    for cb in cbs:
        cb.on_train_end("cancelled", step, None)
    return FakeResult("cancelled", step, None, 123)


def _begin(cfg: RunConfig, cbs: Sequence[TrainerCallback]) -> None:
    for cb in cbs:
        cb.on_train_begin(cfg.train.steps, 0, {"trainable_params": 123, "device": "cpu", "shape": [1, 2]})


def run_ok(cfg: RunConfig, cbs: Sequence[TrainerCallback], should_stop: Callable[[], bool]) -> FakeResult:
    """Trains, evaluates at the end, saves a checkpoint and an adapter; honours should_stop."""
    _begin(cfg, cbs)
    total = cfg.train.steps
    for step in range(1, total + 1):
        time.sleep(_step_s())
        for cb in cbs:
            cb.on_step(_metrics(step, total))
        if should_stop():
            return _stop_here(cfg, cbs, step)
    records = [
        {"id": f"ex{i}", "domain": "builtin-arith" if i % 2 else "builtin-copy", "ood": i == 2,
         "input": f"question {i}", "gold": [str(i)], "prediction": str(i if i else 9), "expert": i % 2,
         "probs": [0.3, 0.7] if i % 2 else [0.8, 0.2], "confidence": 0.7, "entropy": 0.6,
         "em": float(i != 0), "f1": float(i != 0), "correct": i != 0, "score": float(i != 0)}
        for i in range(3)
    ]
    report = EvalReport(
        step=total,
        scores={"builtin-arith": {"em": 1.0, "f1": 1.0, "n": 2}, "macro": {"em": 2 / 3, "f1": 0.7, "accuracy": 0.5}},
        records=records,
        loss=0.42,
    )
    for cb in cbs:
        cb.on_evaluate(report)
    _checkpoint(cfg, cbs, total)
    adapter = _save(Path(cfg.output_dir) / "adapter", total)
    for cb in cbs:
        cb.on_train_end("finished", total, adapter)
    return FakeResult("finished", total, adapter, 123)


def run_raise(cfg: RunConfig, cbs: Sequence[TrainerCallback], should_stop: Callable[[], bool]) -> FakeResult:
    _begin(cfg, cbs)
    for step in range(1, 4):
        for cb in cbs:
            cb.on_step(_metrics(step, cfg.train.steps))
    print("fixture: about to fail", flush=True)
    raise ValueError("boom: the fixture failed on purpose")


def run_stubborn(cfg: RunConfig, cbs: Sequence[TrainerCallback], should_stop: Callable[[], bool]) -> FakeResult:
    """Ignores should_stop and SIGTERM, and leaves a grandchild in its process group."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "300"])
    (Path(cfg.output_dir) / "child.pid").write_text(str(child.pid))
    _begin(cfg, cbs)
    step = 0
    while True:
        step += 1
        time.sleep(_step_s())
        for cb in cbs:
            cb.on_step(_metrics(step, cfg.train.steps))


def run_hang(cfg: RunConfig, cbs: Sequence[TrainerCallback], should_stop: Callable[[], bool]) -> FakeResult:
    """Writes a few steps, then freezes the whole process (heartbeat thread included)."""
    _begin(cfg, cbs)
    for step in range(1, 6):
        for cb in cbs:
            cb.on_step(_metrics(step, cfg.train.steps))
    for cb in cbs:
        getattr(cb, "flush", lambda: None)()
    # Freeze only after the heartbeat thread has beaten at least once (a job that never beat gets
    # the longer start grace instead); on a loaded machine that thread may lag behind the steps.
    time.sleep(1.5)
    (Path(cfg.output_dir) / "hung").write_text("stopping\n")
    os.kill(os.getpid(), signal.SIGSTOP)
    return FakeResult("finished", 5, None, 123)


def run_flood(cfg: RunConfig, cbs: Sequence[TrainerCallback], should_stop: Callable[[], bool]) -> FakeResult:
    """Steps as fast as possible, committing every step: the worst case for concurrent readers."""
    _begin(cfg, cbs)
    total = cfg.train.steps
    for step in range(1, total + 1):
        for cb in cbs:
            cb.on_step(_metrics(step, total))
            getattr(cb, "flush", lambda: None)()
        if should_stop():
            return _stop_here(cfg, cbs, step)
    for cb in cbs:
        cb.on_train_end("finished", total, None)
    return FakeResult("finished", total, None, 123)


BEHAVIOURS = {"ok": run_ok, "raise": run_raise, "stubborn": run_stubborn, "hang": run_hang, "flood": run_flood}


def dispatch(
    cfg: RunConfig,
    callbacks: Sequence[TrainerCallback] = (),
    should_stop: Callable[[], bool] = lambda: False,
    resume: bool = True,
) -> FakeResult:
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    return BEHAVIOURS[cfg.name.split("-", 1)[0]](cfg, list(callbacks), should_stop)


# ---- databases for the tests -------------------------------------------------------------------


@contextmanager
def db_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file under ``tmp_path``, or a new PostgreSQL schema."""
    if kind == "sqlite":
        yield str(tmp_path / "db" / "studio.db")
        return
    import pytest
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (CI sets it with .ci/postgres.sh)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def wait_for(pred: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
