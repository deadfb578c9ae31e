"""Jobs in real subprocesses (``python -m storage.worker``) running the stand-in trainers of
tests/jobs_fixtures.py: finishing, failing, cancel (cooperative and by signals), SIGKILL and hangs
detected as stale, restarts reconnecting, and readers never seeing "database is locked".

Tests whose outcome depends on the database (what a job writes, concurrent access) also run on
PostgreSQL when configured; those about processes and signals run on SQLite only, to keep the suite
short."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from storage import DbSettings, JobManager, JobSettings, RunStatus, Storage
from tests.jobs_fixtures import TARGET, config, db_url, pid_alive, wait_for

FAST = JobSettings(
    slots=1,
    poll_interval_s=0.05,
    heartbeat_interval_s=0.2,
    heartbeat_grace_s=3.0,
    start_grace_s=60.0,  # a worker's start-up on a busy 2-core machine can take seconds
    cancel_grace_s=0.5,
    kill_grace_s=0.5,
    target=TARGET,
    extra_env={"PTMOE_TEST_STEP_S": "0.02"},
)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    with db_url(request.param, tmp_path) as url:
        s = Storage(url, runs_dir=tmp_path / "runs", settings=DbSettings(busy_timeout_s=5.0))
        yield s
        s.close()


@pytest.fixture
def sqlite_storage(tmp_path):
    with Storage(str(tmp_path / "db" / "studio.db"), runs_dir=tmp_path / "runs") as s:
        yield s


@pytest.fixture
def managers():
    """Makes JobManagers; kills whatever they still run at the end of the test."""
    made: list[JobManager] = []

    def make(storage: Storage, **overrides) -> JobManager:
        settings = JobSettings(**{**FAST.__dict__, **overrides})
        m = JobManager(storage, settings)
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop(kill=True, timeout=10)


def _points(storage: Storage, run_id: int) -> int:
    return sum(len(s) for s in storage.metric_history(run_id).values())


def test_job_runs_to_finished_and_records_everything(storage, managers):
    jobs = managers(storage)
    jobs.start()
    run_id = jobs.submit(config("ok-full", steps=8), experiment="e")
    run = jobs.wait(run_id, timeout=60)
    assert run.status is RunStatus.FINISHED, (run.error_message, storage.log_tail(run_id))
    assert (run.reason, run.exit_code, run.step, run.total_steps, run.trainable_params) == ("finished", 0, 8, 8, 123)
    assert run.pid and run.started_at and run.ended_at and run.device == "slot0"
    hist = storage.metric_history(run_id)
    expected = {"loss", "lr", "tokens_per_s", "grad_norm", "router_entropy", "expert_load/0", "expert_load/1"}
    assert expected <= set(hist)
    assert hist["loss"].steps == list(range(1, 9)) and hist["expert_load/1"].values == [0.75] * 8
    assert hist["eval/macro/em"].values == [pytest.approx(2 / 3)] and hist["eval/loss"].values == [0.42]
    assert [(e.dataset, e.em) for e in storage.evaluations(run_id)] == [("builtin-arith", 1.0), ("macro", pytest.approx(2 / 3))]
    records = storage.routing_records(run_id)
    assert [r.id for r in records] == ["ex0", "ex1", "ex2"] and records[1].probs == [0.3, 0.7]
    assert [c.step for c in storage.checkpoints(run_id) if c.exists] == [8]
    assert run.adapter_path and Path(run.adapter_path).is_dir()
    params = storage.params(run_id)
    assert params["info.trainable_params"] == "123" and params["info.device"] == "cpu"
    assert f"run {run_id} starting" in storage.log_tail(run_id)
    wait_for(lambda: not jobs.running(), what="the job to be reaped")


def test_job_that_raises_fails_with_its_message_and_the_queue_moves_on(storage, managers):
    jobs = managers(storage)
    bad = jobs.submit(config("raise-1"))
    good = jobs.submit(config("ok-after", steps=3))
    jobs.start()
    failed = jobs.wait(bad, timeout=60)
    assert failed.status is RunStatus.FAILED and failed.reason == "error" and failed.exit_code == 1
    assert failed.error_message == "ValueError: boom: the fixture failed on purpose"
    assert "fixture: about to fail" in failed.error_detail, "the log's tail is kept with the failure"
    assert "Traceback" in failed.error_detail and "run_raise" in failed.error_detail
    assert storage.metric_history(bad)["loss"].steps == [1, 2, 3], "metrics written before the crash are kept"
    assert jobs.wait(good, timeout=60).status is RunStatus.FINISHED


def test_cancel_stops_at_a_step_with_a_checkpoint_and_ends_killed(sqlite_storage, managers):
    storage = sqlite_storage
    jobs = managers(storage, cancel_grace_s=30.0)  # the job must stop by itself, long before any signal
    jobs.start()
    run_id = jobs.submit(config("ok-long", steps=100_000))
    wait_for(lambda: storage.get_run(run_id).step >= 3, what="a few steps")
    t0 = time.monotonic()
    assert jobs.cancel(run_id).cancel_requested
    run = jobs.wait(run_id, timeout=30)
    assert run.status is RunStatus.KILLED and run.reason == "cancelled" and run.exit_code == 2
    assert time.monotonic() - t0 < 10
    ckpt = storage.latest_checkpoint(run_id)
    assert ckpt is not None and ckpt.step == run.step and (Path(ckpt.path) / "state.txt").is_file()


def test_sigterm_from_outside_stops_the_job_cleanly_as_killed(sqlite_storage, managers):
    storage = sqlite_storage
    jobs = managers(storage)
    jobs.start()
    run_id = jobs.submit(config("ok-term", steps=100_000))
    wait_for(lambda: storage.get_run(run_id).step >= 3, what="a few steps")
    os.killpg(storage.get_run(run_id).pid, signal.SIGTERM)  # e.g. the machine shutting down
    run = jobs.wait(run_id, timeout=30)
    assert run.status is RunStatus.KILLED and run.reason == "signal" and run.exit_code == 2
    assert storage.latest_checkpoint(run_id).step == run.step


def test_cancel_of_a_queued_run_never_starts_it(sqlite_storage, managers):
    jobs = managers(sqlite_storage)
    run_id = jobs.submit(config("ok"))
    assert jobs.cancel(run_id).status is RunStatus.KILLED
    jobs.start()
    time.sleep(0.3)
    run = sqlite_storage.get_run(run_id)
    assert run.status is RunStatus.KILLED and run.pid is None and run.started_at is None


def test_cancel_escalates_to_sigterm_then_sigkill_of_the_process_group(sqlite_storage, managers):
    storage = sqlite_storage
    jobs = managers(storage)
    jobs.start()
    run_id = jobs.submit(config("stubborn-1"))
    child_file = Path(storage.get_run(run_id).output_dir) / "child.pid"
    wait_for(lambda: child_file.exists() and storage.get_run(run_id).step >= 2, what="the stubborn job")
    child = int(child_file.read_text())
    t0 = time.monotonic()
    jobs.cancel(run_id)
    run = jobs.wait(run_id, timeout=30)
    assert run.status is RunStatus.KILLED and run.reason == "cancelled"
    assert run.exit_code == -signal.SIGKILL
    assert time.monotonic() - t0 >= FAST.cancel_grace_s + FAST.kill_grace_s
    wait_for(lambda: not pid_alive(child), timeout=10, what="the job's own child to die with its group")


def test_sigkilled_job_is_marked_failed_stale_and_keeps_its_metrics(storage, managers):
    jobs = managers(storage)
    jobs.start()
    run_id = jobs.submit(config("ok-victim", steps=100_000))
    wait_for(lambda: storage.get_run(run_id).step >= 20, what="committed steps")
    pid = storage.get_run(run_id).pid
    os.killpg(pid, signal.SIGKILL)
    committed = _points(storage, run_id)  # everything committed before it died (it cannot write after)
    run = jobs.wait(run_id, timeout=30)
    assert run.status is RunStatus.FAILED and run.reason == "stale"
    assert run.error_message.startswith("stale:") and "SIGKILL" in run.error_message
    assert _points(storage, run_id) == committed >= 20 * 7


def test_hung_job_is_marked_stale_after_the_heartbeat_grace_and_killed(sqlite_storage, managers):
    storage = sqlite_storage
    jobs = managers(storage)
    jobs.start()
    run_id = jobs.submit(config("hang-1"))
    hung = Path(storage.get_run(run_id).output_dir) / "hung"
    wait_for(lambda: hung.exists(), what="the job to freeze")
    t0 = time.monotonic()
    pid = storage.get_run(run_id).pid
    time.sleep(1.0)
    assert storage.get_run(run_id).status is RunStatus.RUNNING, "not stale before the grace has passed"
    run = jobs.wait(run_id, timeout=90)
    assert run.status is RunStatus.FAILED and run.reason == "stale" and "no heartbeat" in run.error_message
    assert time.monotonic() - t0 >= FAST.heartbeat_grace_s - 0.3  # the last beat came <= 1 interval before
    wait_for(lambda: not pid_alive(pid), timeout=10, what="the hung process to be killed")
    assert storage.metric_history(run_id)["loss"].steps == [1, 2, 3, 4, 5]


def test_restarted_app_reconnects_to_running_jobs_and_the_queue(sqlite_storage, managers):
    storage = sqlite_storage
    first = managers(storage)
    first.start()
    run_id = first.submit(config("ok-survivor", steps=100))
    wait_for(lambda: storage.get_run(run_id).step >= 2, what="the job to start")
    first.stop()  # the app goes away; its job keeps running in its own session
    queued = storage.submit(config("ok-next", steps=2))
    assert storage.get_run(run_id).status is RunStatus.RUNNING

    second = managers(storage)
    second.start()
    assert second.running() == [run_id], "adopted, not marked stale"
    assert storage.get_run(queued).status is RunStatus.QUEUED, "the slot is still taken by the adopted job"
    run = second.wait(run_id, timeout=60)
    assert run.status is RunStatus.FINISHED and run.step == 100
    queued_run = second.wait(queued, timeout=60)
    assert queued_run.status is RunStatus.FINISHED, (queued_run.error_message, queued_run.error_detail)


def test_start_up_fails_runs_whose_job_died_while_the_app_was_away(sqlite_storage, managers):
    storage = sqlite_storage
    first = managers(storage)
    first.start()
    run_id = first.submit(config("ok-orphan", steps=100_000))
    wait_for(lambda: storage.get_run(run_id).step >= 2, what="the job to start")
    first.stop()
    os.killpg(storage.get_run(run_id).pid, signal.SIGKILL)
    time.sleep(0.2)
    # A run claimed by a supervisor that died before starting its process.
    never = storage.submit(config("ok-never"))
    storage.claim_next("slot0")

    second = managers(storage, heartbeat_grace_s=0.5, start_grace_s=0.5)
    time.sleep(0.6)
    second.start()  # the first tick runs before start() returns
    run = storage.get_run(run_id)
    assert run.status is RunStatus.FAILED and run.reason == "stale" and "is gone" in run.error_message
    assert storage.get_run(never).status is RunStatus.FAILED and storage.get_run(never).reason == "stale"


def test_reader_never_sees_database_is_locked_while_a_job_writes(storage, managers):
    jobs = managers(storage)
    jobs.start()
    steps = 300
    run_id = jobs.submit(config("flood-1", steps=steps))
    wait_for(lambda: storage.get_run(run_id).step >= 1, what="the writer to start")
    reads = 0
    errors: list[BaseException] = []

    def writer_too():  # the app writes while the job writes: renames go through the same lock
        try:
            for i in range(40):
                storage.rename_run(run_id, f"flood-{i}")
                time.sleep(0.01)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=writer_too)
    t.start()
    while not storage.get_run(run_id).is_final:
        storage.metric_history(run_id)
        storage.list_runs()
        storage.latest_metrics(run_id)
        reads += 1
    t.join()
    assert not errors, errors
    run = storage.get_run(run_id)
    assert run.status is RunStatus.FINISHED, (run.error_message, run.error_detail)
    assert reads >= 5 and _points(storage, run_id) == steps * 7


def test_two_slots_run_two_jobs_at_once_and_no_more(sqlite_storage, managers):
    storage = sqlite_storage
    jobs = managers(storage, slots=2)
    ids = [jobs.submit(config(f"ok-{i}", steps=40)) for i in range(3)]
    jobs.start()
    peak = 0
    while not all(storage.get_run(i).is_final for i in ids):
        peak = max(peak, len(storage.list_runs(status=RunStatus.RUNNING)))
        time.sleep(0.02)
    assert peak == 2
    runs = [storage.get_run(i) for i in ids]
    assert all(r.status is RunStatus.FINISHED for r in runs)
    assert {runs[0].device, runs[1].device} == {"slot0", "slot1"}
    assert runs[2].started_at >= min(runs[0].ended_at, runs[1].ended_at) - 0.05


def test_slots_and_gpu_visibility():
    from storage.jobs import _device_env, _resolve_slots

    assert _resolve_slots(2) == ["slot0", "slot1"] and _resolve_slots(["cuda:0"]) == ["cuda:0"]
    with pytest.raises(ValueError):
        _resolve_slots(0)
    two = ["cuda:0", "cuda:1"]
    assert _device_env("cuda:1", two, {}) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert _device_env("cuda:1", two, {"CUDA_VISIBLE_DEVICES": "4,6"}) == {"CUDA_VISIBLE_DEVICES": "6"}
    assert _device_env("cuda:0", ["cuda:0"], {}) == {}, "a single GPU is left as the job finds it"
    assert _device_env("slot1", ["slot0", "slot1"], {}) == {}
