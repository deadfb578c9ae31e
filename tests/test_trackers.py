"""train.report_to: a real job process writes a tiny PT-MoE run to TensorBoard, MLflow and trackio
offline; each tracker's own reader gets back the numbers the studio's database holds for that run."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from ptmoe_core import trackers
from ptmoe_core.config import RunConfig
from ptmoe_core.errors import ConfigError
from ptmoe_core.routing_summary import RoutingSummary
from storage import JobManager, JobSettings, RunStatus, Storage

ALL = ["tensorboard", "mlflow", "trackio"]
needs_all = pytest.mark.skipif(not all(trackers.installed().values()),
                               reason="pip install -r requirements-trackers.txt")


def _config(name: str, steps: int, report_to: list[str]) -> dict:
    return {
        "name": name,
        "model": {"name": "tiny-random", "device": "cpu", "dtype": "float32"},
        "method": {"method": "ptmoe", "prompt_len": 4, "n_experts": 2, "rank": 2},
        "data": {"train": ["builtin:all"], "max_train_examples": 32, "max_eval_examples": 4},
        "train": {"steps": steps, "batch_size": 2, "warmup_steps": 0, "max_new_tokens": 4, "eval_batch_size": 4,
                  "eval_every": 2, "report_to": report_to},
    }


def test_report_to_is_a_list_of_known_trackers():
    assert RunConfig.from_dict({}).train.report_to == []
    assert RunConfig.from_dict({"train": {"report_to": "tensorboard, mlflow"}}).train.report_to == ["tensorboard", "mlflow"]
    with pytest.raises(ConfigError, match="train.report_to"):
        RunConfig.from_dict({"train": {"report_to": ["wandb"]}}).validate()
    with pytest.raises(ConfigError, match="twice"):
        RunConfig.from_dict({"train": {"report_to": ["mlflow", "mlflow"]}}).validate()


def test_missing_note_names_what_is_not_installed():
    assert trackers.missing_note({"tensorboard": True, "mlflow": True, "trackio": True}) == ""
    note = trackers.missing_note({"tensorboard": True, "mlflow": False, "trackio": False})
    assert "mlflow, trackio" in note and "tensorboard" not in note


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-5 * max(1.0, abs(y)) for x, y in zip(a, b, strict=True))


@needs_all
def test_a_studio_run_reaches_every_tracker_with_the_databases_numbers(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": mlflow_uri, "TRACKIO_DIR": str(tmp_path / "trackio")}
    with Storage(str(tmp_path / "studio.db")) as storage:
        jobs = JobManager(storage, JobSettings(slots=1, poll_interval_s=0.1, heartbeat_interval_s=1.0, extra_env=env))
        jobs.start()
        try:
            run_id = jobs.submit(_config("tracked", steps=4, report_to=ALL), experiment="trackers-exp")
            run = jobs.wait(run_id, timeout=300)
        finally:
            jobs.stop(kill=True)
        assert run.status is RunStatus.FINISHED, f"{run.error_message}\n{run.error_detail}"
        assert " failed (" not in storage.log_tail(run_id, 400)  # no tracker warned
        hist = storage.metric_history(run_id)
        params = storage.params(run_id)
        evals = storage.evaluations(run_id)
        final = storage.routing_records(run_id, step=4)
    # what the database says, as the trackers name it
    want = {k: hist[k] for k in ("loss", "lr", "grad_norm", "router_entropy", "expert_load/0", "eval/macro/f1")}
    assert want["loss"].steps == [1, 2, 3, 4] and want["eval/macro/f1"].steps == [2, 4]
    macro_f1 = {e.step: e.f1 for e in evals if e.dataset == "macro"}
    assert want["eval/macro/f1"].values == [macro_f1[2], macro_f1[4]]
    summary = RoutingSummary.of(final, 2)
    assert summary is not None

    # TensorBoard: the event files under the run's own folder
    acc = EventAccumulator(str(Path(run.output_dir) / trackers.TENSORBOARD_DIR))
    acc.Reload()
    for k, s in want.items():
        ev = acc.Scalars(k)
        assert [e.step for e in ev] == s.steps and _close([e.value for e in ev], s.values), k
    assert _close([acc.Scalars("routing/mi_bits")[-1].value], [summary.mi_bits])
    assert _close([acc.Scalars(f"routing/load/{e}")[-1].value for e in (0, 1)], summary.load)

    # MLflow: the store MLFLOW_TRACKING_URI names, experiment = the run's experiment
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("trackers-exp")
    (mrun,) = client.search_runs([exp.experiment_id])
    assert mrun.info.run_name == "tracked" and mrun.info.status == "FINISHED"
    for k, s in want.items():
        h = sorted(client.get_metric_history(mrun.info.run_id, k), key=lambda m: m.step)
        assert [m.step for m in h] == s.steps and _close([m.value for m in h], s.values), k
    assert mrun.data.params["train.steps"] == params["train.steps"] == "4"
    assert mrun.data.params["info.trainable_params"] == params["info.trainable_params"]
    assert _close([mrun.data.metrics["routing/mi_bits"]], [summary.mi_bits])

    # trackio: its local store (TRACKIO_DIR), project = the run's experiment, run = the run's folder
    from trackio import sqlite_storage

    monkeypatch.setattr(sqlite_storage, "TRACKIO_DIR", tmp_path / "trackio")
    rows = sqlite_storage.SQLiteStorage.get_logs("trackers-exp", Path(run.output_dir).name)
    for k, s in want.items():
        got = [(r["step"], r[k]) for r in rows if k in r]
        assert [st for st, _ in got] == s.steps and _close([v for _, v in got], s.values), k
    conf = sqlite_storage.SQLiteStorage.get_run_config("trackers-exp", Path(run.output_dir).name)
    assert conf["train.steps"] == params["train.steps"]


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed")
def test_a_failing_tracker_warns_once_and_the_run_finishes(tmp_path, tiny_base, monkeypatch, caplog):
    from ptmoe_core.trainer import train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus-scheme://nowhere")  # MLflow has no store for it
    cfg = RunConfig.from_dict({**_config("broken", steps=2, report_to=["mlflow"]), "output_dir": str(tmp_path / "r")})
    cfg.train.eval_every = 0
    with caplog.at_level(logging.WARNING, logger="ptmoe_core.trackers"):
        res = train(cfg, base=tiny_base)
    assert res.status == "finished" and res.step == 2 and res.adapter_dir is not None
    lines = [r for r in caplog.records if r.name == "ptmoe_core.trackers"]
    assert len(lines) == 1 and "tracker mlflow failed" in lines[0].getMessage()


def test_the_train_form_carries_report_to():
    from app import forms

    cfg = RunConfig.from_dict({"train": {"report_to": ["tensorboard"]}})
    values = forms.values_from_config(cfg)
    assert values["report_to"] == ["tensorboard"]
    assert forms.config_from_values({**values, "report_to": ["mlflow", "trackio"]}).train.report_to == ["mlflow", "trackio"]


def test_the_cli_refuses_a_tracker_that_is_not_installed(monkeypatch, capsys):
    from ptmoe_core.cli import main

    monkeypatch.setattr(trackers, "installed", lambda: {"tensorboard": True, "mlflow": False, "trackio": True})
    assert main(["train", "--report-to", "mlflow", "--set", "model.name=tiny-random"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mlflow not installed" in err[0] and "requirements-trackers.txt" in err[0]
