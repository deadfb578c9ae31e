"""The Ray executor on a local Ray head (``.ci/ray.sh`` starts one and sets PTMOE_TEST_RAY_ADDRESS)
with the PostgreSQL server of ``.ci/postgres.sh``: a 2 × 2 sweep of the tiny model finishes with its
metrics in the database; a cancelled sweep ends KILLED with its Ray jobs stopped; a Ray job killed
from outside ends FAILED with a reason; a restarted studio finds its running Ray jobs again. The last
three use the stand-in trainer of tests/jobs_fixtures.py behind the same worker entry point."""

from __future__ import annotations

import os
import signal
import warnings

import pytest

from storage import JobManager, JobSettings, RunStatus, Storage
from storage.executors import ExecutorError
from storage.sweep_spec import SweepSpec
from storage.sweeps import cancel_sweep, launch_sweep, summarize, wait_sweep
from tests.jobs_fixtures import PG_ENV, TARGET, config, db_url, wait_for

RAY_ENV = "PTMOE_TEST_RAY_ADDRESS"
ADDRESS = os.environ.get(RAY_ENV)
if not ADDRESS or not os.environ.get(PG_ENV):
    _why = f"{RAY_ENV} and {PG_ENV} must be set (CI: eval \"$(bash .ci/ray.sh)\" and .ci/postgres.sh)"
    warnings.warn(f"the Ray executor tests are skipped: {_why}", stacklevel=1)
    pytestmark = pytest.mark.skip(reason=_why)
else:
    pytestmark = []

FAST = dict(poll_interval_s=0.1, heartbeat_interval_s=0.3, heartbeat_grace_s=10.0, start_grace_s=120.0,
            cancel_grace_s=2.0, kill_grace_s=2.0)
FIXTURE = dict(FAST, target=TARGET, extra_env={"PTMOE_TEST_STEP_S": "0.05"})


def _ray(**kw):
    from storage.ray_executor import RayExecutor

    return RayExecutor(ADDRESS, max_running=2, **kw)


@pytest.fixture
def pg(tmp_path):
    with db_url("postgresql", tmp_path) as url, Storage(url, runs_dir=tmp_path / "runs") as s:
        yield s


@pytest.fixture
def managers():
    made: list[JobManager] = []

    def make(storage: Storage, **settings) -> JobManager:
        m = JobManager(storage, JobSettings(**settings), executor=_ray())
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop(cancel_running=True, timeout=30)


def _status(executor, sid: str) -> str:
    return str(executor.client.get_job_status(sid)).rsplit(".", 1)[-1]


def test_a_two_by_two_sweep_on_ray_finishes_with_metrics(pg, managers):
    base = {
        "model": {"name": "tiny-random", "device": "cpu"},
        "method": {"method": "ptmoe", "prompt_len": 4, "rank": 2},
        "data": {"train": ["builtin:all"], "max_train_examples": 16, "max_eval_examples": 4},
        "train": {"steps": 2, "batch_size": 2, "warmup_steps": 0, "max_new_tokens": 2, "eval_batch_size": 4},
    }
    jobs = managers(pg, **FAST)
    jobs.start()
    launch = launch_sweep(pg, SweepSpec(base, {"method.n_experts": ["1", "2"]}, [0, 1], "ray", "tiny"), jobs)
    runs = wait_sweep(pg, launch.sweep_id, timeout=420, poll_s=0.5)
    assert [r.status for r in runs] == [RunStatus.FINISHED] * 4, [(r.error_message, r.error_detail) for r in runs]
    wait_for(lambda: jobs.running() == [], timeout=60, what="the Ray jobs to end")
    for r in runs:
        assert r.submission_id and _status(jobs.executor, r.submission_id) == "SUCCEEDED"
        assert pg.metric_history(r.id)["loss"].steps == [1, 2] and pg.evaluations(r.id)
    summary = summarize(pg, launch.sweep_id)
    assert [p.n_finished for p in summary.points] == [2, 2] and all(p.macro_mean is not None for p in summary.points)
    assert "step 2/2" in pg.log_tail(runs[0].id, 200), "the run's log comes from Ray"


def _two_stepping(pg, managers, steps: int):
    """A started Ray manager and a sweep of two stand-in runs, both past their second step."""
    jobs = managers(pg, **FIXTURE)
    jobs.start()
    spec = SweepSpec(config("ok", steps=steps), {"train.lr": ["0.01", "0.02"]}, [0], "ray", "ok")
    launch = launch_sweep(pg, spec, jobs)
    wait_for(lambda: all(pg.get_run(i).step >= 2 for i in launch.run_ids), timeout=120, what="both jobs to step")
    return jobs, launch


def test_cancelling_a_sweep_on_ray_stops_its_jobs(pg, managers):
    jobs, launch = _two_stepping(pg, managers, 5000)
    cancel_sweep(pg, launch.sweep_id, jobs)
    runs = wait_sweep(pg, launch.sweep_id, timeout=60, poll_s=0.2)
    assert {(r.status, r.reason) for r in runs} == {(RunStatus.KILLED, "cancelled")}
    wait_for(lambda: all(_status(jobs.executor, r.submission_id) in ("FAILED", "STOPPED", "SUCCEEDED") for r in runs),
             timeout=60, what="the Ray jobs to end")


def test_a_ray_job_killed_from_outside_ends_failed_with_a_reason(pg, managers):
    jobs = managers(pg, **FIXTURE)
    jobs.start()
    run_id = jobs.submit(config("ok-victim", steps=5000), experiment="ray")
    run = wait_for(lambda: (r := pg.get_run(run_id)).step >= 2 and r.pid and r, timeout=120, what="the job to step")
    os.kill(run.pid, signal.SIGKILL)  # the worker process Ray started, on this (the only) node
    done = jobs.wait(run_id, timeout=60)
    assert (done.status, done.reason) == (RunStatus.FAILED, "stale")
    assert "Ray" in done.error_message, done.error_message


def test_a_restarted_studio_finds_its_running_ray_jobs(pg, managers):
    first, launch = _two_stepping(pg, managers, 120)
    first.stop()  # the studio goes away; its Ray jobs keep running
    second = managers(pg, **FIXTURE)
    second.start()
    assert second.running() == sorted(launch.run_ids)
    runs = wait_sweep(pg, launch.sweep_id, timeout=120, poll_s=0.2)
    assert [r.status for r in runs] == [RunStatus.FINISHED] * 2, [r.error_message for r in runs]


def test_cluster_mode_refuses_a_sqlite_database_in_one_line(tmp_path):
    with Storage(str(tmp_path / "studio.db")) as s:
        jobs = JobManager(s, JobSettings(), executor=_ray())
        with pytest.raises(ExecutorError, match="needs a server database .*not the SQLite file") as e:
            jobs.submit(config("ok-x"))
        assert "\n" not in str(e.value) and s.list_runs() == []
