"""bench/runner.py: a benchmark's planned runs through the job layer on the tiny random model (the real
trainer in a worker process), the result file the worker saves, reuse of a finished run, and a run that
fails ending the benchmark with one line."""

from __future__ import annotations

import pytest

from bench.runner import TARGET_TRAIN_ONLY, config_key, dict_key, find_finished, load_result, plan_sweep, run_planned
from ptmoe_core.config import MethodConfig, RunConfig
from storage import Storage
from storage.sweep_spec import SweepSpec


def _without(d: dict, *keys: str) -> dict:
    return {**d, "method": {k: v for k, v in d["method"].items() if k not in keys}}


def test_a_method_key_added_later_at_its_former_behaviour_keeps_the_cache_key():
    """A config stored before ``router_anchor`` (or ``router_init``) existed and today's config of the
    same run get one key, so a new option does not make every cached run train again; a value that
    changes the run changes the key."""
    paper = RunConfig.from_dict({"method": {"method": "ptmoe", "preset": "paper"}}).to_dict()
    assert (paper["method"]["router_init"], paper["method"]["router_anchor"]) == ("orthogonal", 0.0)
    assert dict_key(paper) == dict_key(_without(paper, "router_anchor"))
    assert dict_key(paper) == dict_key(_without(paper, "router_anchor", "router_init", "router_init_confidence"))
    anchored = {**paper, "method": {**paper["method"], "router_anchor": 1.0}}
    assert dict_key(anchored) != dict_key(paper)
    # the group is left out only whole: a changed confidence is a different run even with the old init
    confident = {**paper, "method": {**paper["method"], "router_init_confidence": 0.85}}
    assert dict_key(confident) != dict_key(paper)
    assert dict_key(confident) != dict_key(_without(confident, "router_init", "router_init_confidence"))
    studio = RunConfig.from_dict({"method": {"method": "ptmoe", "preset": "studio"}}).to_dict()
    assert dict_key(studio) == dict_key(_without(studio, "router_anchor")) != dict_key(paper)
    # name and folder are not part of a run's outcome; the stored config is not changed
    cfg = RunConfig.from_dict({"name": "a", "method": MethodConfig.for_preset("ptmoe", "paper").__dict__})
    renamed = RunConfig.from_dict({**cfg.to_dict(), "name": "b", "output_dir": "elsewhere"})
    assert config_key(cfg) == config_key(renamed) and "router_anchor" in cfg.to_dict()["method"]


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
