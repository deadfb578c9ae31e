"""Experiment trackers (``train.report_to``): TensorBoard, MLflow and trackio, one ``TrainerCallback`` each.

Every tracker gets the same things: the run's parameters (its resolved config and the trainer's
``info``), the training curves (``callbacks.step_points``), the evaluation scores per set
(``callbacks.eval_points``) and, for routed methods, the routing summary of each evaluation
(``routing/load/<expert>``, ``routing/mi_bits`` = I(domain; expert), ``routing/<set>/load/<expert>``).

A tracker that fails (not installed, unreachable store, bad URI) never fails the run: it logs one
warning line (the run's log, in the studio) and stays silent for the rest of the run.

Where each writes:
- ``tensorboard``: ``<output_dir>/tensorboard`` (event files);
- ``mlflow``: ``$MLFLOW_TRACKING_URI``, else a SQLite store beside the run folders
  (``<output_dir>/../mlflow.db``); experiment = the run's experiment, run name = the run's name;
- ``trackio``: the local store (``$TRACKIO_DIR``, default ``~/.cache/huggingface/trackio``), or the
  Space named by ``$TRACKIO_SPACE_ID``; project = the run's experiment, run = the run's folder name.

A continued run (``start_step > 0``) writes on into the same TensorBoard folder, MLflow run and
trackio run, so its curves continue.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .callbacks import EvalReport, StepMetrics, TrainerCallback, eval_points, step_points

log = logging.getLogger("ptmoe_core.trackers")

# tracker -> the module that must be importable for it
TRACKERS: dict[str, str] = {"tensorboard": "tensorboard", "mlflow": "mlflow", "trackio": "trackio"}
DEFAULT_EXPERIMENT = "default"  # the studio's default experiment, so CLI runs land beside studio runs
TENSORBOARD_DIR = "tensorboard"
MLFLOW_RUN_FILE = "mlflow_run_id"  # in the output folder: a continued run logs into the same MLflow run
MLFLOW_DB = "mlflow.db"


def installed() -> dict[str, bool]:
    """Which trackers can run here."""
    return {name: importlib.util.find_spec(mod) is not None for name, mod in TRACKERS.items()}


def missing_note(avail: Mapping[str, bool] | None = None) -> str:
    """One line naming the trackers that are not installed ('' when all are)."""
    avail = installed() if avail is None else avail
    gone = [k for k, ok in avail.items() if not ok]
    if not gone:
        return ""
    return (f"Not installed here: {', '.join(gone)} (pip install -r requirements-trackers.txt to offer "
            f"{'it' if len(gone) == 1 else 'them'}).")


def flat_params(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"train.steps": "200", ...}`` (lists as their string form)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_params(v, key + "."))
        else:
            out[key] = str(v)
    return out


def routing_points(report: EvalReport, n_experts: int) -> list[tuple[str, float]]:
    """The evaluation's routing summary as scalars; empty for methods without a router."""
    from .routing_summary import RoutingSummary

    r = RoutingSummary.of(report.records, n_experts) if n_experts else None
    if r is None:
        return []
    pts = [(f"routing/load/{e}", x) for e, x in enumerate(r.load)] + [("routing/mi_bits", r.mi_bits)]
    pts += [(f"routing/{s}/load/{e}", x) for s, load in r.per_set.items() for e, x in enumerate(load)]
    return [(k, float(v)) for k, v in pts]


class TrackerCallback(TrainerCallback):
    """Sends a run to one tracker. Subclasses implement ``_open``, ``_params``, ``_scalars`` and
    ``_close``; every call goes through ``_guard``, which turns the first failure into one warning."""

    name = ""

    def __init__(self, cfg: Any, experiment: str = DEFAULT_EXPERIMENT):
        self.cfg, self.experiment = cfg, experiment or DEFAULT_EXPERIMENT
        self.out = Path(cfg.output_dir)
        self.n_experts = cfg.method.n_experts if cfg.method.is_routed else 0
        self.failed = False

    def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        if self.failed:
            return
        try:
            fn(*args)
        except Exception as e:  # a tracker never fails the run
            self.failed = True
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            log.warning("tracker %s failed (%s: %s: %s); the run goes on without it",
                        self.name, what, type(e).__name__, first)

    def on_train_begin(self, total_steps: int, start_step: int, info: dict[str, Any]) -> None:
        params = flat_params(self.cfg.to_dict())
        params.update({f"info.{k}": str(v) for k, v in info.items() if isinstance(v, (str, int, float, bool))})
        self._guard("start", self._open, start_step, params)

    def on_step(self, m: StepMetrics) -> None:
        self._guard("step", self._scalars, step_points(m), m.step)

    def on_evaluate(self, report: EvalReport) -> None:
        # the points are built inside the guard too: a summary that fails must not fail the run either
        self._guard("evaluation", lambda: self._scalars(eval_points(report) + routing_points(report, self.n_experts),
                                                        report.step))

    def on_train_end(self, status: str, step: int, adapter_dir: Path | None) -> None:
        self._guard("end", self._close, status)

    # ---- what a tracker implements ----
    def _open(self, start_step: int, params: dict[str, str]) -> None: ...

    def _scalars(self, points: list[tuple[str, float]], step: int) -> None: ...

    def _close(self, status: str) -> None: ...


class TensorBoardTracker(TrackerCallback):
    name = "tensorboard"

    def _open(self, start_step: int, params: dict[str, str]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: events a killed run wrote after its last checkpoint are hidden on continuing
        self.writer = SummaryWriter(log_dir=str(self.out / TENSORBOARD_DIR),
                                    purge_step=start_step + 1 if start_step else None)
        rows = "\n".join(f"| {k} | {v.replace('|', '/')} |" for k, v in sorted(params.items()))
        self.writer.add_text("params", "| parameter | value |\n| --- | --- |\n" + rows, global_step=start_step)

    def _scalars(self, points: list[tuple[str, float]], step: int) -> None:
        for k, v in points:
            self.writer.add_scalar(k, v, global_step=step)

    def _close(self, status: str) -> None:
        self.writer.close()


class MLflowTracker(TrackerCallback):
    name = "mlflow"
    MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per call

    def tracking_uri(self) -> str:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        return uri or f"sqlite:///{(self.out.resolve().parent / MLFLOW_DB).as_posix()}"

    def _open(self, start_step: int, params: dict[str, str]) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(self.tracking_uri())
        saved = self.out / MLFLOW_RUN_FILE
        if start_step and saved.is_file():  # the same run continues
            self.run_id = saved.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self._create()
        self._params(params)

    def _create(self) -> None:
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment)
        run = self.client.create_run(exp_id, run_name=self.cfg.name, tags={"ptmoe.output_dir": str(self.out)})
        self.run_id = run.info.run_id
        (self.out / MLFLOW_RUN_FILE).write_text(self.run_id)

    def _params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        # MLflow params are write-once: a continued run keeps the values it started with (its steps
        # change; the new value goes in as a tag).
        have = self.client.get_run(self.run_id).data.params
        new = [Param(k, v[:6000]) for k, v in params.items() if k not in have]
        for i in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[i : i + 100])
        for k, v in params.items():
            if k in have and have[k] != v[:6000]:
                self.client.set_tag(self.run_id, f"continued.{k}", v[:5000])

    def _scalars(self, points: list[tuple[str, float]], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        metrics = [Metric(k, v, ts, step) for k, v in points]
        for i in range(0, len(metrics), self.MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + self.MAX_BATCH])

    def _close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if status == "finished" else "KILLED")


class TrackioTracker(TrackerCallback):
    name = "trackio"

    def _open(self, start_step: int, params: dict[str, str]) -> None:
        import trackio

        self.run = trackio.init(project=self.experiment, name=self.out.name, config=params,
                                resume="allow" if start_step else "never",
                                auto_log_cpu=False, auto_log_gpu=False, embed=False)

    def _scalars(self, points: list[tuple[str, float]], step: int) -> None:
        self.run.log(dict(points), step=step)

    def _close(self, status: str) -> None:
        self.run.finish()


CALLBACKS: dict[str, type[TrackerCallback]] = {
    "tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "trackio": TrackioTracker,
}


def for_run(cfg: Any, experiment: str = DEFAULT_EXPERIMENT,
            present: Sequence[TrainerCallback] = ()) -> list[TrackerCallback]:
    """The callbacks of ``cfg.train.report_to``, less those already in ``present`` (the studio's worker
    builds its own, named after the run's experiment)."""
    have = {cb.name for cb in present if isinstance(cb, TrackerCallback)}
    return [CALLBACKS[n](cfg, experiment) for n in cfg.train.report_to if n not in have]
