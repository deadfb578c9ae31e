"""End to end: a queued run trains the tiny random model in a real job process with the real
trainer, and everything the app shows ends up in the database."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from storage import JobManager, JobSettings, RunStatus, Storage

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ptmoe_core.trainer") is None or importlib.util.find_spec("ptmoe_core.evaluate") is None,
    reason="the engine's trainer/evaluator is not there yet",
)


def _config(name: str, steps: int) -> dict:
    return {
        "name": name,
        "model": {"name": "tiny-random", "device": "cpu"},
        "method": {"method": "ptmoe", "prompt_len": 4, "n_experts": 2, "rank": 2},
        "data": {"train": ["builtin:all"], "max_train_examples": 32, "max_eval_examples": 4},
        "train": {"steps": steps, "batch_size": 2, "warmup_steps": 0, "max_new_tokens": 4, "eval_batch_size": 4},
    }


def test_tiny_random_ptmoe_run_through_the_queue(tmp_path):
    with Storage(str(tmp_path / "studio.db")) as storage:
        # One job only: each job process pays the engine's imports (several CPU seconds). Cancelling
        # is covered with stand-in trainers in test_jobs.py and by the trainer's own tests.
        jobs = JobManager(storage, JobSettings(slots=1, poll_interval_s=0.1, heartbeat_interval_s=1.0))
        jobs.start()
        try:
            run_id = jobs.submit(_config("e2e-tiny", steps=5), experiment="e2e")
            run = jobs.wait(run_id, timeout=240)
            assert run.status is RunStatus.FINISHED, f"{run.error_message}\n{run.error_detail}"
            assert run.step == 5 and run.trainable_params and run.trainable_params > 0
            hist = storage.metric_history(run_id)
            assert hist["loss"].steps == [1, 2, 3, 4, 5]
            assert {"lr", "tokens_per_s", "grad_norm", "router_entropy", "expert_load/0", "expert_load/1"} <= set(hist)
            evals = storage.evaluations(run_id)
            assert evals and {e.step for e in evals} == {5}
            records = storage.routing_records(run_id)
            assert records and all(r.expert in (0, 1) for r in records)
            assert all(r.probs and abs(sum(r.probs) - 1) < 1e-4 for r in records)
            assert Path(run.adapter_path).is_dir()
            assert storage.latest_checkpoint(run_id).step == 5
            assert storage.params(run_id)["info.trainable_params"] == str(run.trainable_params)
        finally:
            jobs.stop(kill=True)
