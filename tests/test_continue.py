"""Continuing a run as the same run: what the engine allows, the lifecycle step out of FINISHED/KILLED,
the curves going on from the checkpoint's step (equal to an uninterrupted run's), and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.run_actions import continue_message, copy_message
from app.settings import Settings
from app.studio import Studio, continued_note, parse_changes
from ptmoe_core.config import RunConfig
from ptmoe_core.errors import ConfigError
from ptmoe_core.resume import continue_config
from storage import JobManager, JobSettings, RunStatus, Storage, continuation
from storage.errors import StorageError


def _config(name: str, steps: int) -> dict:
    return {
        "name": name,
        "model": {"name": "tiny-random", "device": "cpu", "dtype": "float32"},
        "method": {"method": "ptmoe", "prompt_len": 4, "n_experts": 2, "rank": 2},
        "data": {"train": ["builtin:all"], "max_train_examples": 32, "max_eval_examples": 4},
        # a constant schedule: continuing 4 -> 7 then follows exactly the trajectory of 7 steps at once
        "train": {"steps": steps, "batch_size": 2, "warmup_steps": 0, "schedule": "constant", "max_new_tokens": 4,
                  "eval_batch_size": 4},
    }


def test_only_what_the_engine_resumes_may_change():
    cfg = RunConfig.from_dict(_config("c", 4))
    new = continue_config(cfg, 4, 3, ["train.eval_every=2", "train.save_every=1", "train.report_to=tensorboard"])
    assert new.train.steps == 7 and new.train.eval_every == 2 and new.train.report_to == ["tensorboard"]
    with pytest.raises(ConfigError, match=r"cannot change train\.lr.*copy it to a new run"):
        continue_config(cfg, 4, 3, ["train.lr=0.5"])
    with pytest.raises(ConfigError, match="method.rank"):
        continue_config(cfg, 4, 3, ["method.rank=3"])
    with pytest.raises(ConfigError, match="give more steps"):
        continue_config(cfg, 4, 0)  # finished at its own end: 0 more is nothing to do
    assert continue_config(cfg, 2, 0).train.steps == 4  # a stopped run finishes the steps it had left
    assert parse_changes("train.eval_every=2,\ntrain.save_every=1") == ["train.eval_every=2", "train.save_every=1"]
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_changes("eval_every 2")


def test_a_finished_run_continues_as_the_same_run(tmp_path):
    with Storage(str(tmp_path / "studio.db")) as st:
        jobs = JobManager(st, JobSettings(slots=1, poll_interval_s=0.1, heartbeat_interval_s=1.0))
        studio = Studio(Settings(), st, jobs)
        jobs.start()
        try:
            rid = jobs.submit(_config("cont", 4))
            ref = jobs.submit(_config("straight", 7))
            assert jobs.wait(rid, timeout=300).status is RunStatus.FINISHED
            assert jobs.wait(ref, timeout=300).status is RunStatus.FINISHED
            # refused in one line, the run left as it was
            msg = continue_message(studio, rid, 3, "train.lr=0.5")
            assert msg.startswith("✗ Not continued: continue: cannot change train.lr") and "\n" not in msg
            assert st.get_run(rid).status is RunStatus.FINISHED
            msg = continue_message(studio, rid, 3, "train.eval_every=2")
            assert msg.startswith("✓ Run #") and "from step 4 to step 7" in msg
            # queued again; the running job manager (polling every 0.1 s) may have claimed it already
            assert st.get_run(rid).status in (RunStatus.QUEUED, RunStatus.RUNNING)
            run = jobs.wait(rid, timeout=300)
        finally:
            jobs.stop(kill=True)
        assert run.status is RunStatus.FINISHED and run.step == 7 and run.total_steps == 7, run.error_detail
        hist, straight = st.metric_history(rid), st.metric_history(ref)
        assert hist["loss"].steps == [1, 2, 3, 4, 5, 6, 7]
        # the continued curve is the uninterrupted run's (the trainer's resume is exact)
        assert hist["loss"].values == pytest.approx(straight["loss"].values, rel=1e-5, abs=1e-6)
        assert {e.step for e in st.evaluations(rid)} == {4, 6, 7}  # the first evaluation kept, new ones added
        params = st.params(rid)
        assert params["continued.1.from_step"] == "4" and params["continued.1.steps"] == "7"
        assert params["continued.1.from_status"] == "FINISHED"
        assert params["train.steps"] == "7" and params["continued.1.was.train.steps"] == "4"
        assert params["continued.1.was.train.eval_every"] == "0"
        assert continued_note(params) == "continued 1 time: from step 4 to 7"
        assert st.latest_checkpoint(rid).step == 7 and Path(run.adapter_path).is_dir()
        # copy to a new run: any change, a fresh run in the same experiment
        msg = copy_message(studio, rid, "train.lr=0.5")
        new = max(r.id for r in st.list_runs())
        assert msg.startswith(f"✓ Queued run #{new}") and new != rid
        copy = st.get_run(new)
        assert copy.config["train"]["lr"] == 0.5 and copy.name == "cont (copy)" and copy.status is RunStatus.QUEUED
        assert copy.output_dir != run.output_dir


def test_runs_that_cannot_continue_are_refused(tmp_path):
    with Storage(str(tmp_path / "studio.db")) as st:
        rid = st.submit(_config("queued", 4))
        with pytest.raises(StorageError, match="only a finished or stopped"):
            continuation.continue_point(st, rid)
        st.transition(rid, RunStatus.RUNNING)
        st.update_progress(rid, step=3)
        ckpt = Path(st.get_run(rid).output_dir) / "checkpoints" / "step-000002"
        ckpt.mkdir(parents=True)
        st.add_artifact(rid, "checkpoint", ckpt, 2)
        st.transition(rid, RunStatus.KILLED, reason="stale")
        # it died after its last checkpoint: its curves run past step 2
        with pytest.raises(StorageError, match="recorded step 3 but its last checkpoint is step 2"):
            continuation.continue_point(st, rid)
        cfg = RunConfig.from_dict(st.get_run(rid).config)
        # the generic lifecycle still forbids leaving a final state: only continue_run does
        with pytest.raises(StorageError):
            st.transition(rid, RunStatus.QUEUED)
        fail = st.submit(_config("failed", 4))
        st.transition(fail, RunStatus.FAILED, reason="error")
        with pytest.raises(StorageError, match="FAILED"):
            continuation.continue_run(st, fail, cfg, 2)
        assert st.get_run(fail).status is RunStatus.FAILED


def test_cli_train_resume_continues_a_run_folder(tmp_path, capsys):
    from ptmoe_core.cli import main

    out = tmp_path / "run"
    sets = ["--set", "model.name=tiny-random", "--set", "model.dtype=float32", "--set", "method.prompt_len=4",
            "--set", "method.rank=2", "--set", "data.max_train_examples=16", "--set", "data.eval=[]",
            "--set", "data.max_eval_examples=2", "--set", "train.batch_size=2", "--set", "train.warmup_steps=0",
            "--set", "train.max_new_tokens=2"]
    assert main(["train", "--output-dir", str(out), "--set", "train.steps=2", *sets]) == 0
    capsys.readouterr()  # the first run's progress
    assert main(["train", "--resume", str(out), "--more-steps", "2", "--set", "train.lr=0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot change train.lr" in err[0]
    for saved in [*out.rglob("trainer_state.json"), out / "run_config.json"]:  # as saved before mi_loss existed
        d = json.loads(saved.read_text())
        del (d.get("config") or d)["method"]["mi_loss"]
        saved.write_text(json.dumps(d))
    assert main(["train", "--resume", str(out), "--more-steps", "2"]) == 0
    assert "finished at step 4" in capsys.readouterr().out
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
