"""Sweeps: expansion and one-line refusals (pure), the sweep recorded with its runs, and a sweep run
as a whole through the local executor with the stand-in trainers of tests/jobs_fixtures.py:
launched, summarised, resumed, cancelled and deleted."""

from __future__ import annotations

import pytest

from storage import JobManager, JobSettings, RunStatus, Storage, StorageError
from storage.sweep_spec import MAX_RUNS, SweepError, SweepSpec, expand, parse_grid_arg, parse_seeds
from storage.sweeps import (
    cancel_sweep,
    compare_points,
    delete_sweep,
    format_table,
    launch_sweep,
    mean_interval,
    resume_sweep,
    summarize,
    wait_sweep,
)
from tests.jobs_fixtures import TARGET, config, db_url

FAST = JobSettings(slots=2, poll_interval_s=0.05, heartbeat_interval_s=0.2, heartbeat_grace_s=5.0,
                   start_grace_s=60.0, cancel_grace_s=0.5, kill_grace_s=0.5, target=TARGET,
                   extra_env={"PTMOE_TEST_STEP_S": "0.02"})


def _spec(grid=None, seeds=(0, 1), name="ok", steps=3) -> SweepSpec:
    grid = {"method.n_experts": ["1", "2"], "train.lr": ["0.01", "0.1"]} if grid is None else grid
    return SweepSpec(base=config("base", steps=steps), grid=grid, seeds=list(seeds), experiment="sw", name=name)


def test_expansion_is_grid_times_seeds_with_typed_points():
    runs = expand(_spec())
    assert len(runs) == 8 == _spec().run_count
    assert [(r.grid_point, r.seed) for r in runs[:3]] == [
        ({"method.n_experts": 1, "train.lr": 0.01}, 0),
        ({"method.n_experts": 1, "train.lr": 0.01}, 1),
        ({"method.n_experts": 1, "train.lr": 0.1}, 0),
    ]
    last = runs[-1].config
    assert (last.method.n_experts, last.train.lr, last.train.seed, last.name) == (2, 0.1, 1, "ok-n_experts=2-lr=0.1-s1")
    assert len({r.config.name for r in runs}) == 8


def test_a_preset_in_the_grid_fills_the_keys_the_base_leaves_out():
    from ptmoe_core.presets import preset_values

    runs = expand(_spec({"method.preset": ["paper", "studio", "routed"]}, seeds=[0]))
    assert [r.config.method.preset for r in runs] == ["paper", "studio", "routed"]
    for r in runs:  # every key the base leaves out has its run's preset's value
        m = r.config.method
        assert all(getattr(m, k) == v for k, v in preset_values(m.preset, "ptmoe").items()), m.preset
    assert len({(r.config.method.router_init, r.config.method.router_init_confidence, r.config.method.top_k)
                for r in runs}) == 3


@pytest.mark.parametrize(("grid", "seeds", "message"), [
    ({}, [0], "the grid is empty"),
    ({"method.n_experts": []}, [0], "'method.n_experts' has no values"),
    ({"method.n_expert": ["2"]}, [0], "unknown configuration key 'method.n_expert'.*did you mean method.n_experts"),
    ({"bogus": ["1"]}, [0], "unknown configuration key 'bogus'"),
    ({"train.seed": ["1"]}, [0], "'train.seed' cannot be swept: give seeds instead"),
    ({"method.n_experts": ["2", "x"]}, [0], r"grid method.n_experts=x: method.n_experts: expected an integer"),
    ({"train.lr": ["0.1", "-1"]}, [0], r"grid train.lr=-1: train.lr: learning rate must be in \(0, 10\]"),
    ({"method.method": ["ptmoe", "nope"]}, [0], "grid method.method=nope: method.method"),
    ({"method.n_experts": ["2", "2"]}, [0], "lists the value '2' twice"),
    ({"method.n_experts": ["2", "2.0"]}, [0], "grid point method.n_experts=2 appears twice"),
    ({"method.n_experts": ["2"]}, [], "give at least one seed"),
    ({"method.n_experts": ["2"]}, [1, 1], "seed 1 is listed twice"),
    ({"train.lr": [str(i / 1000) for i in range(1, 101)]}, [0, 1, 2], rf"300 runs .*at most {MAX_RUNS}"),
])
def test_invalid_sweeps_are_refused_in_one_line_naming_key_and_value(grid, seeds, message):
    with pytest.raises(SweepError, match=message) as e:
        expand(_spec(grid, seeds))
    assert "\n" not in str(e.value)


def test_a_combination_the_config_refuses_names_the_whole_point():
    base = config("ok", steps=3)
    base["method"] = {"method": "ptmoe", "prompt_len": 4, "rank": 2}
    spec = SweepSpec(base, {"method.prompt_len": ["4", "8"], "method.rank": ["2", "6"]}, [0])
    with pytest.raises(SweepError, match=r"grid method.prompt_len=4, method.rank=6: method.rank"):
        expand(spec)


def test_command_line_pieces():
    assert parse_grid_arg("method.n_experts=1, 2,4") == ("method.n_experts", ["1", "2", "4"])
    assert parse_seeds("0,1, 2") == [0, 1, 2]
    for bad in ("method.n_experts", "=1,2"):
        with pytest.raises(SweepError, match="KEY=V1,V2"):
            parse_grid_arg(bad)
    with pytest.raises(SweepError, match="seed 'x' is not an integer"):
        parse_seeds("0,x")


def test_mean_interval_is_a_t_interval():
    assert mean_interval([0.5]) is None
    lo, hi = mean_interval([0.4, 0.6])
    assert lo == pytest.approx(0.5 - 12.706 * 0.1) and hi == pytest.approx(0.5 + 12.706 * 0.1)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    with db_url(request.param, tmp_path) as url, Storage(url, runs_dir=tmp_path / "runs") as s:
        yield s


def test_a_refused_sweep_queues_nothing(storage):
    with pytest.raises(SweepError):
        launch_sweep(storage, _spec({"method.n_experts": ["1", "0"]}))
    assert storage.list_runs() == [] and storage.list_sweeps() == []


def test_a_sweep_is_recorded_with_its_runs_and_grid_points(storage):
    launch = launch_sweep(storage, _spec())
    sweep = storage.get_sweep(launch.sweep_id)
    assert (sweep.name, sweep.experiment, sweep.run_count) == ("ok", "sw", 8)
    assert sweep.spec["grid"] == {"method.n_experts": ["1", "2"], "train.lr": ["0.01", "0.1"]}
    runs = storage.list_runs(sweep=launch.sweep_id, newest_first=False)
    assert [r.id for r in runs] == launch.run_ids
    assert all(r.sweep_id == launch.sweep_id and r.status is RunStatus.QUEUED for r in runs)
    assert runs[0].grid_point == {"method.n_experts": 1, "train.lr": 0.01}
    assert storage.params(runs[-1].id)["train.seed"] == "1"
    assert [w.id for w in storage.list_sweeps("sw")] == [launch.sweep_id] and storage.list_sweeps("other") == []
    # Cancel as a whole: queued runs end at once; then delete as a whole.
    assert {r.status for r in cancel_sweep(storage, launch.sweep_id)} == {RunStatus.KILLED}
    removed = delete_sweep(storage, launch.sweep_id)
    assert storage.list_runs() == [] and storage.list_sweeps() == [] and len(removed) >= 0
    with pytest.raises(StorageError, match="does not exist"):
        storage.get_sweep(launch.sweep_id)


def test_a_sweep_can_queue_some_of_its_runs_under_names_of_its_own(storage):
    """What the benchmarks do: leave out the runs they have finished, name the rest themselves."""
    import copy

    spec = _spec({"method.n_experts": ["1", "2"]})
    some = []
    for r in expand(spec)[1:3]:
        cfg = copy.deepcopy(r.config)
        cfg.name = f"mine-{r.grid_point['method.n_experts']}-{r.seed}"
        some.append(type(r)(r.grid_point, r.seed, cfg))
    launch = launch_sweep(storage, spec, runs=some)
    runs = storage.list_runs(sweep=launch.sweep_id, newest_first=False)
    assert [r.name for r in runs] == ["mine-1-1", "mine-2-0"]
    assert [r.grid_point for r in runs] == [{"method.n_experts": 1}, {"method.n_experts": 2}]
    with pytest.raises(SweepError):  # the whole spec is checked even when only some runs are queued
        launch_sweep(storage, _spec({"method.n_experts": ["1", "0"]}), runs=some)
    assert len(storage.list_runs()) == 2


def test_a_sweep_runs_through_the_job_layer_and_is_summarised(tmp_path):
    with Storage(str(tmp_path / "db" / "studio.db"), runs_dir=tmp_path / "runs") as storage:
        jobs = JobManager(storage, FAST)
        jobs.start()
        try:
            launch = launch_sweep(storage, _spec({"method.n_experts": ["1", "2"]}), jobs)
            runs = wait_sweep(storage, launch.sweep_id, timeout=120, poll_s=0.1)
            assert [r.status for r in runs] == [RunStatus.FINISHED] * 4, [r.error_message for r in runs]
            with pytest.raises(StorageError, match="still has 1 queued or running run"):
                _refuse_delete_while_active(storage, jobs)
            summary = summarize(storage, launch.sweep_id)
            assert summary.done and [p.label for p in summary.points] == ["method.n_experts=1", "method.n_experts=2"]
            p = summary.points[0]
            # The stand-in trainer reports macro F1 0.7 and routes builtin-arith to expert 1, builtin-copy to 0.
            assert (p.n_finished, p.n_seeds, p.macro_mean, p.macro_interval) == (2, 2, pytest.approx(0.7),
                                                                                  (pytest.approx(0.7),) * 2)
            assert p.per_set == {"builtin-arith": 1.0} and p.mi_bits == pytest.approx(0.9183, abs=1e-3)
            assert p.n_collapsed == 0
            table = format_table(summary)
            assert "method.n_experts=2" in table and "70.0" in table and "2/2" in table
            cmp = compare_points(storage, summary, "method.n_experts=1", "method.n_experts=2")
            assert (cmp.diff, cmp.n_pairs, cmp.seeds) == (0.0, 6, [0, 1])
            # Resume: nothing is missing; after one run is deleted, that grid point × seed is queued again.
            assert resume_sweep(storage, launch.sweep_id, jobs) == []
            storage.delete_run(launch.run_ids[1])
            (new,) = resume_sweep(storage, launch.sweep_id, jobs)
            assert storage.get_run(new).grid_point == {"method.n_experts": 1} and jobs.wait(new, 60).status is \
                RunStatus.FINISHED
            assert summarize(storage, launch.sweep_id).points[0].n_finished == 2
        finally:
            jobs.stop(kill=True, timeout=10)


def _refuse_delete_while_active(storage, jobs):
    launch = launch_sweep(storage, _spec({"method.n_experts": ["3"]}, seeds=[0], name="ok2", steps=400), jobs)
    try:
        storage.delete_sweep(launch.sweep_id)
    finally:
        cancel_sweep(storage, launch.sweep_id, jobs)
        wait_sweep(storage, launch.sweep_id, timeout=60, poll_s=0.1)


def test_without_ray_only_the_ray_option_says_so(monkeypatch):
    import sys

    from storage.executors import ExecutorError
    from storage.jobs import LocalExecutor, make_executor

    monkeypatch.setitem(sys.modules, "ray.job_submission", None)  # as if Ray were not installed
    monkeypatch.delenv("PTMOE_RAY_ADDRESS", raising=False)
    assert isinstance(make_executor(None), LocalExecutor)
    with pytest.raises(ExecutorError, match=r"--ray needs Ray, which is not installed here: pip install 'ray\[default\]"):
        make_executor("http://127.0.0.1:1")


def test_runs_per_device_packs_gpu_slots_but_not_the_cpu():
    from storage.jobs import resolve_slots

    assert resolve_slots(["cuda:0", "cuda:1"], 3) == ["cuda:0"] * 3 + ["cuda:1"] * 3
    assert resolve_slots(["cpu"], 4) == ["cpu"]


def test_the_command_line_queues_lists_shows_cancels_and_deletes(tmp_path, capsys):
    import json

    from storage.__main__ import main

    cfg = tmp_path / "base.json"
    cfg.write_text(json.dumps(config("base", steps=3)))
    db = str(tmp_path / "studio.db")
    args = ["sweep", "--db", db, "--config", str(cfg), "--seeds", "0,1", "--experiment", "cli"]
    assert main([*args, "--grid", "method.n_experts=1,x"]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main([*args, "--ray", "http://127.0.0.1:9", "--grid", "method.n_experts=1"]) == 1  # SQLite or no Ray
    assert "error:" in capsys.readouterr().err
    assert main([*args, "--grid", "method.n_experts=1,2", "--grid", "train.lr=0.01"]) == 0
    out = capsys.readouterr().out
    assert "4 runs queued: 1 2 3 4" in out
    assert main(["sweeps", "list", "--db", db]) == 0 and "method.n_experts=1,2" in capsys.readouterr().out
    assert main(["sweeps", "show", "1", "--db", db]) == 0 and "0/2" in capsys.readouterr().out
    assert main(["sweeps", "delete", "1", "--db", db]) == 1 and "cancel the sweep first" in capsys.readouterr().err
    assert main(["sweeps", "cancel", "1", "--db", db]) == 0 and "4 run(s)" in capsys.readouterr().out
    assert main(["sweeps", "delete", "1", "--db", db]) == 0
    with Storage(db) as s:
        assert s.list_runs() == [] and s.list_sweeps() == []


def test_the_command_line_waits_and_prints_the_summary_table(tmp_path, capsys):
    import json

    from storage.__main__ import main

    cfg = tmp_path / "base.json"
    cfg.write_text(json.dumps({
        "model": {"name": "tiny-random", "device": "cpu"},
        "method": {"method": "ptmoe", "prompt_len": 4, "rank": 2},
        "data": {"train": ["builtin:all"], "max_train_examples": 16, "max_eval_examples": 4},
        "train": {"steps": 2, "batch_size": 2, "warmup_steps": 0, "max_new_tokens": 2, "eval_batch_size": 4},
    }))
    rc = main(["sweep", "--db", str(tmp_path / "studio.db"), "--config", str(cfg), "--grid", "method.n_experts=2",
               "--seeds", "0", "--experiment", "cli", "--wait"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "sweep 1: 1 runs queued: 1" in out and "method.n_experts=2" in out and "1/1" in out
    assert "macro F1" in out and "I(dom;exp)" in out
