"""Several studios on one database: a job's host is recorded with its pid and another host's job is
judged by its heartbeat alone (two job managers, two host names, one database); run ids are never
reused, even after the newest run is deleted."""

from __future__ import annotations

import os
import signal
import time

import pytest

import storage.jobs
from storage import JobManager, JobSettings, RunStatus, Storage
from tests.jobs_fixtures import TARGET, config, wait_for

FAST = dict(slots=1, poll_interval_s=0.05, heartbeat_interval_s=0.2, heartbeat_grace_s=2.0, start_grace_s=60.0,
            cancel_grace_s=0.5, kill_grace_s=0.5, target=TARGET, extra_env={"PTMOE_TEST_STEP_S": "0.02"})


@pytest.fixture
def shared(tmp_path):
    with Storage(str(tmp_path / "shared.db"), runs_dir=tmp_path / "runs") as s:
        yield s


@pytest.fixture
def managers():
    made: list[JobManager] = []

    def make(st: Storage, host: str, **overrides) -> JobManager:
        m = JobManager(st, JobSettings(**{**FAST, **overrides, "host": host}))
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop(kill=True, timeout=10)


@pytest.fixture
def elsewhere(monkeypatch):
    """This test process plays two machines: a pid check sees none of the other machine's processes."""
    monkeypatch.setattr(storage.jobs, "is_worker_alive", lambda pid, run_id: False)


def test_another_hosts_live_job_is_left_alone(shared, managers, elsewhere):
    alpha, beta = managers(shared, "alpha"), managers(shared, "beta")
    alpha.start()
    run_id = alpha.submit(config("ok-on-alpha", steps=150))
    wait_for(lambda: shared.get_run(run_id).step >= 2, timeout=60, what="alpha's job to start")
    run = shared.get_run(run_id)
    assert run.host == "alpha" and run.pid
    beta.start()
    for _ in range(10):  # beta supervises for a while: its /proc has no such pid, the heartbeat is fresh
        beta.tick()
        time.sleep(0.1)
    assert shared.get_run(run_id).status is RunStatus.RUNNING, shared.get_run(run_id).error_message
    assert beta.running() == [], "beta does not adopt a job of another machine"
    done = alpha.wait(run_id, timeout=90)
    assert done.status is RunStatus.FINISHED and done.step == 150


def test_another_hosts_silent_job_is_failed_by_its_heartbeat(shared, managers, elsewhere):
    alpha = managers(shared, "alpha")
    alpha.start()
    run_id = alpha.submit(config("ok-on-alpha", steps=100_000))
    wait_for(lambda: shared.get_run(run_id).step >= 2, timeout=60, what="alpha's job to start")
    alpha.stop()  # machine alpha goes away with its job
    os.killpg(shared.get_run(run_id).pid, signal.SIGKILL)
    beta = managers(shared, "beta", heartbeat_grace_s=1.0)
    beta.tick()
    assert shared.get_run(run_id).status is RunStatus.RUNNING, "not failed before its heartbeat grace"
    time.sleep(1.3)
    beta.tick()
    run = shared.get_run(run_id)
    assert run.status is RunStatus.FAILED and run.reason == "stale"
    assert "no heartbeat" in run.error_message and "alpha" in run.error_message


def test_run_ids_are_never_reused_after_deleting_the_newest(tmp_path):
    db = str(tmp_path / "ids.db")
    with Storage(db, runs_dir=tmp_path / "runs") as st:
        first = [st.submit(config(f"ok-{i}")) for i in range(3)]
        assert first == [1, 2, 3]
        st.delete_run(3)
        assert st.submit(config("ok-next")) == 4
        st.delete_run(4)
    with Storage(db, runs_dir=tmp_path / "runs") as st:  # a restarted studio remembers
        assert st.submit(config("ok-after-restart")) == 5
        assert [r.id for r in st.list_runs()] == [5, 2, 1]
