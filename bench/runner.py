"""How a benchmark runs its plan: as sweeps through the studio's job layer, the lifecycle every run
has (``storage.jobs.JobManager``: a ``python -m storage.worker`` process per run, its heartbeat,
cancel and stale handling, everything recorded through ``Storage``), locally by default or as Ray jobs
with ``--ray ADDRESS``. No benchmark trains in its own process.

A benchmark describes its plan as ``SweepSpec``s (base config + grid + seeds) and gives each expanded
run its own name (``plan_sweep``). A FINISHED run of the experiment with that name and the same
configuration key (``config_key``) whose result file still exists is reused, not trained again: those
runs are left out before the sweep is submitted (``find_finished``). The worker trains through
``train_and_save`` (``JobSettings.target``), the engine's trainer plus one file: the trainer's result
as JSON in the run's folder (``RESULT_FILE``; ``load_result`` reads it back), which holds what a report
needs beyond the database (each step's elapsed time, the evaluation records as the engine returns them)
and how busy the machine was while the run trained.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptmoe_core.config import RunConfig, without_later_defaults
from storage.sweep_spec import SweepRun, SweepSpec, expand

RESULT_FILE = "train_result.json"
TARGET = "bench.runner:train_and_save"
ENV_THREADS = "PTMOE_BENCH_THREADS"  # torch CPU threads in the worker (a benchmark's --threads)


def config_key(cfg: RunConfig) -> str:
    """A hash of everything that changes a run's outcome (not its name or directory)."""
    d = cfg.to_dict()
    d["train"]["lr"] = cfg.train.resolved_lr(cfg.method.method)  # a changed engine default is a new run
    return dict_key(d)


def dict_key(d: dict[str, Any]) -> str:
    """``config_key`` of a config as a dict. Method keys added later and still at the behaviour before
    them are left out, so a new option at its neutral value keeps every cached run's key."""
    d = {k: v for k, v in d.items() if k not in ("output_dir", "name")}
    d["method"] = without_later_defaults(d["method"])
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PlannedRun:
    """One run of a benchmark's plan: its sweep, and the expanded run under the benchmark's name."""

    sweep: SweepSpec
    run: SweepRun  # ``run.config.name`` is the benchmark's name for it

    @property
    def name(self) -> str:
        return self.run.config.name

    @property
    def config(self) -> RunConfig:
        return self.run.config

    @property
    def key(self) -> str:
        return config_key(self.run.config)


def plan_sweep(spec: SweepSpec, name: Callable[[SweepRun], str]) -> list[PlannedRun]:
    """``spec`` expanded (``storage.sweep_spec.expand``: validated, refused in one line), each run
    named by ``name``."""
    out = []
    for r in expand(spec):
        cfg = copy.deepcopy(r.config)
        cfg.name = name(r)
        out.append(PlannedRun(spec, SweepRun(r.grid_point, r.seed, cfg)))
    return out


def find_finished(storage: Any, experiment: str, name: str, key: str, file: str = RESULT_FILE) -> Any | None:
    """The newest FINISHED run of ``experiment`` called ``name`` with configuration key ``key`` whose
    folder still holds ``file``; None when there is none (the run is trained)."""
    from storage.models import RunStatus

    for run in storage.list_runs(experiment=experiment, search=name, status=RunStatus.FINISHED):
        if run.name != name or not run.output_dir or not (Path(run.output_dir) / file).is_file():
            continue
        try:
            if config_key(RunConfig.from_dict(run.config)) == key:
                return run
        except Exception:  # a config an older engine wrote that this one refuses: not the same run
            continue
    return None


def run_planned(storage: Any, experiment: str, runs: Sequence[PlannedRun], *, ray: str | None = None,
                threads: int = 0, gpus_per_run: float = 0.0, log: Callable[[str], None] = print,
                poll_s: float = 1.0, target: str = TARGET) -> dict[str, Any]:
    """Submit ``runs`` (grouped by their sweep, one sweep record each) and run them through a
    ``JobManager`` until every one has ended; returns {name: RunInfo}. A run that does not finish ends
    the benchmark with one line naming it and why (SystemExit); Ctrl-C cancels the runs."""
    from storage.jobs import JobManager, JobSettings, make_executor
    from storage.sweeps import cancel_sweep, launch_sweep

    if not runs:
        return {}
    env = {ENV_THREADS: str(threads)} if threads else {}
    jobs = JobManager(storage, JobSettings(target=target, extra_env=env),
                      executor=make_executor(ray, gpus_per_run=gpus_per_run))
    groups: dict[int, list[PlannedRun]] = {}
    for r in runs:
        groups.setdefault(id(r.sweep), []).append(r)
    ids: dict[int, str] = {}
    sweeps = []
    for group in groups.values():
        launch = launch_sweep(storage, group[0].sweep, jobs, runs=[r.run for r in group])
        sweeps.append(launch.sweep_id)
        ids.update(zip(launch.run_ids, (r.name for r in group), strict=True))
    log(f"queued {len(ids)} run(s) in {len(sweeps)} sweep(s) of experiment {experiment!r}"
        + (f" on Ray at {ray}" if ray else "") + f": runs {min(ids)}..{max(ids)}")
    done: dict[str, Any] = {}
    jobs.start()
    try:
        while len(done) < len(ids):
            for run_id, name in ids.items():
                if name in done:
                    continue
                info = storage.get_run(run_id)
                if info.is_final:
                    done[name] = info
                    log(f"run {run_id} ({name}) {info.status.value}"
                        + (f": {info.error_message}" if info.error_message else ""))
            if len(done) < len(ids):
                time.sleep(poll_s)
    except KeyboardInterrupt:
        log(f"cancelling sweep(s) {', '.join(map(str, sweeps))}")
        for sweep_id in sweeps:
            cancel_sweep(storage, sweep_id, jobs)
        jobs.stop(cancel_running=True, timeout=120)
        raise SystemExit(130) from None
    jobs.stop()
    failed = [(name, info) for name, info in done.items() if info.status.value != "FINISHED"]
    if failed:
        name, info = failed[0]
        raise SystemExit(f"run {info.id} ({name}) ended {info.status.value}: {info.error_message or info.reason}"
                         + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
                         + f"; its log: {info.log_path}")
    return done


# ---- in the worker -------------------------------------------------------------------------------


def train_and_save(cfg: RunConfig, callbacks: Sequence[Any] = (), should_stop: Callable[[], bool] = lambda: False,
                   resume: bool = True) -> Any:
    """The worker's target: ``ptmoe_core.trainer.train``, then the result saved as ``RESULT_FILE``."""
    return _train_saving(cfg, callbacks, should_stop, resume, evaluate=True)


def train_only_and_save(cfg: RunConfig, callbacks: Sequence[Any] = (),
                        should_stop: Callable[[], bool] = lambda: False, resume: bool = True) -> Any:
    """As ``train_and_save`` without the trainer's evaluation (``TARGET_TRAIN_ONLY``): for a benchmark
    that evaluates the adapter itself afterwards."""
    return _train_saving(cfg, callbacks, should_stop, resume, evaluate=False)


TARGET_TRAIN_ONLY = "bench.runner:train_only_and_save"


def _train_saving(cfg: RunConfig, callbacks: Sequence[Any], should_stop: Callable[[], bool], resume: bool,
                  evaluate: bool) -> Any:
    from ptmoe_core.trainer import train

    threads = int(os.environ.get(ENV_THREADS) or 0)
    if threads:
        import torch

        torch.set_num_threads(threads)
    data = None
    if not evaluate:
        from ptmoe_core.data import build_datasets

        data = (build_datasets(cfg.data)[0], {})
    load_before, before = loadavg(), cpu_snapshot()
    result = train(cfg, callbacks, should_stop, resume=resume, data=data)
    if result.status == "finished":
        doc = {"result": result_to_dict(result), "load_before": load_before,
               "other_cpu": other_cpu_share(before, cpu_snapshot())}
        path = Path(cfg.output_dir) / RESULT_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, default=_jsonable))
        tmp.replace(path)
    return result


def result_to_dict(result: Any) -> dict[str, Any]:
    d = dataclasses.asdict(dataclasses.replace(result, evaluation=None))
    ev = result.evaluation
    if ev is not None:  # its records in their own dict form (EvalRecord.to_dict), read back by from_dict
        d["evaluation"] = {**dataclasses.asdict(dataclasses.replace(ev, records=[])),
                           "records": [r.to_dict() for r in ev.records]}
    return d


def load_result(run: Any) -> tuple[Any, dict[str, Any]]:
    """(the run's ``TrainResult`` as the worker saved it, {load_before, other_cpu})."""
    from ptmoe_core.callbacks import EvalReport, StepMetrics
    from ptmoe_core.eval_record import EvalRecord
    from ptmoe_core.trainer import TrainResult

    doc = json.loads((Path(run.output_dir) / RESULT_FILE).read_text())
    d = doc["result"]
    ev = d.get("evaluation")
    result = TrainResult(
        status=d["status"], step=d["step"], adapter_dir=Path(d["adapter_dir"]) if d.get("adapter_dir") else None,
        trainable_params=d["trainable_params"], final_loss=d.get("final_loss"),
        evaluation=EvalReport(**{**ev, "records": [EvalRecord.from_dict(r) for r in ev["records"]]}) if ev else None, elapsed_s=d.get("elapsed_s", 0.0),
        history=[StepMetrics(**h) for h in d.get("history", [])])
    return result, {k: v for k, v in doc.items() if k != "result"}


def _jsonable(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item"):  # numpy / torch scalars
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"cannot save {type(x).__name__} in {RESULT_FILE}")


# ---- how busy the machine was --------------------------------------------------------------------


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall time, busy CPU seconds of the whole machine, CPU seconds of this process) on Linux, else None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = sum(ticks[:3]) + sum(ticks[5:8])  # user nice system, irq softirq steal (not idle, iowait)
    t = os.times()
    return time.time(), busy / hz, t.user + t.system


def other_cpu_share(before: tuple[float, float, float] | None, after: tuple[float, float, float] | None) -> float | None:
    """The share of the machine's CPU time that processes other than this one used between two snapshots."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    other = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, other / ((after[0] - before[0]) * (os.cpu_count() or 1)))


def loadavg() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"

