"""bench/runner.py: a benchmark's planned runs through the job layer on the tiny random model (the real
trainer in a worker process), the result file the worker saves, reuse of a finished run, and a run that
fails ending the benchmark with one line."""

from __future__ import annotations

import pytest

from bench.runner import TARGET_TRAIN_ONLY, find_finished, load_result, plan_sweep, run_planned
from storage import Storage
from storage.sweep_spec import SweepSpec


def _spec(**train) -> SweepSpec:
    base = {"model": {"name": "tiny-random", "device": "cpu"},
            "data": {"train": ["builtin:all"], "eval": ["builtin:qa"], "max_eval_examples": 1},
            "train": {"steps": 1, "warmup_steps": 0, "batch_size": 2, "max_new_tokens": 2, **train}}
    return SweepSpec(base, {"method.method": ["ptmoe"]}, [0, 1], "bench-test", "mine")


def test_planned_runs_train_in_workers_save_their_result_and_are_found_again(tmp_path):
    planned = plan_sweep(_spec(), lambda r: f"mine-s{r.seed}")
    assert [p.name for p in planned] == ["mine-s0", "mine-s1"] and planned[0].key != planned[1].key
    with Storage(tmp_path / "studio.db") as st:
        assert find_finished(st, "bench-test", "mine-s0", planned[0].key) is None
        done = run_planned(st, "bench-test", planned[:1], log=lambda _m: None)
        assert list(done) == ["mine-s0"]
        info = done["mine-s0"]
        assert info.status.value == "FINISHED" and info.pid is not None and info.sweep_id is not None
        result, machine = load_result(info)
        assert result.status == "finished" and len(result.history) == 1 and result.evaluation.records
        assert set(machine) == {"load_before", "other_cpu"}
        assert find_finished(st, "bench-test", "mine-s0", planned[0].key).id == info.id
        assert find_finished(st, "bench-test", "mine-s0", planned[1].key) is None  # another configuration
        # the train-only target: no evaluation by the trainer (the benchmark evaluates itself)
        only = run_planned(st, "bench-test", planned[1:], target=TARGET_TRAIN_ONLY, log=lambda _m: None)
        assert load_result(only["mine-s1"])[0].evaluation is None


def test_a_run_that_fails_ends_the_benchmark_naming_it(tmp_path):
    planned = plan_sweep(_spec(), lambda r: f"bad-s{r.seed}")[:1]
    with Storage(tmp_path / "studio.db") as st, pytest.raises(SystemExit, match=r"run \d+ \(bad-s0\) ended FAILED"):
        run_planned(st, "bench-test", planned, target="bench.no_such_module:train", log=lambda _m: None)
