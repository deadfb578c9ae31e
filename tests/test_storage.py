"""The run repository and the schema: lifecycle, params, metrics, evaluations, routing, artifacts,
deletion, migrations, and refusing databases it must not touch. Runs on SQLite, and on PostgreSQL
when PTMOE_TEST_DATABASE_URL is set."""

from __future__ import annotations

import ctypes
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ptmoe_core.config import RunConfig
from ptmoe_core.errors import ConfigError
from storage import (
    DbSettings,
    InvalidTransition,
    ParamConflict,
    RunNotFound,
    RunStatus,
    Storage,
    StorageError,
    resolve_db_url,
)
from storage.db import Database
from storage.repo import CHUNK_POINTS
from storage.schema import downgrade_to, head_revision, known_revisions, upgrade_to
from tests.jobs_fixtures import config, db_url

ROOT = Path(__file__).resolve().parents[1]
FAST = DbSettings(busy_timeout_s=2.0, lock_retries=3, retry_delay_s=0.05)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    with db_url(request.param, tmp_path) as u:
        yield u


@pytest.fixture
def storage(url, tmp_path):
    s = Storage(url, runs_dir=tmp_path / "runs", settings=FAST)
    yield s
    s.close()


def _finish(storage: Storage, run_id: int, to: RunStatus = RunStatus.FINISHED) -> None:
    storage.transition(run_id, RunStatus.RUNNING)
    storage.transition(run_id, to)


# ---- runs ------------------------------------------------------------------------------------


def test_submit_records_the_run_and_gives_it_its_own_directory(storage, tmp_path):
    cfg = RunConfig.from_dict(config("ok-a"))
    a = storage.submit(cfg, experiment="exp1")
    b = storage.submit(config("ok-a"), experiment="exp1")
    ra, rb = storage.get_run(a), storage.get_run(b)
    assert ra.status is RunStatus.QUEUED and ra.experiment == "exp1" and ra.name == "ok-a"
    assert (ra.method, ra.base_model, ra.data_specs, ra.total_steps) == ("ptmoe", "tiny-random", ["builtin:all"], 10)
    # Same requested output_dir, yet each run gets its own directory under runs_dir (no shared resume).
    assert ra.output_dir != rb.output_dir
    assert Path(ra.output_dir).parent == tmp_path / "runs"
    assert ra.config["output_dir"] == ra.output_dir and ra.log_path == str(Path(ra.output_dir) / "job.log")
    assert cfg.output_dir == "runs/run", "the caller's config object is not modified"
    assert RunConfig.from_dict(ra.config).method.n_experts == 2
    params = storage.params(a)
    assert params["method.method"] == "ptmoe" and params["train.steps"] == "10" and "name" not in params
    assert [(e.name, e.run_count) for e in storage.list_experiments()] == [("exp1", 2)]


def test_submit_refuses_an_invalid_config_and_queues_nothing(storage):
    bad = config("ok-bad")
    bad["method"] = {"rank": 99, "prompt_len": 10}
    with pytest.raises(ConfigError, match="rank"):
        storage.submit(bad)
    with pytest.raises(ConfigError):
        storage.submit({"nonsense": 1})
    with pytest.raises(StorageError, match="empty"):
        storage.submit(config("ok"), name="   ")
    assert storage.list_runs() == []


def test_lifecycle_allows_only_forward_moves_and_final_states_never_change(storage):
    run = storage.submit(config("ok"))
    with pytest.raises(InvalidTransition):
        storage.transition(run, RunStatus.FINISHED)  # QUEUED cannot finish without running
    info = storage.transition(run, RunStatus.RUNNING, pid=4242, device="cpu")
    assert info.status is RunStatus.RUNNING and info.started_at and info.heartbeat_at and info.pid == 4242
    with pytest.raises(InvalidTransition):
        storage.transition(run, RunStatus.QUEUED)
    with pytest.raises(InvalidTransition):
        storage.transition(run, RunStatus.RUNNING)
    info = storage.transition(run, RunStatus.FINISHED, reason="finished", exit_code=0)
    assert info.is_final and info.ended_at >= info.started_at and info.exit_code == 0

    others = [storage.submit(config("ok")) for _ in range(2)]
    _finish(storage, others[0], RunStatus.FAILED)
    storage.request_cancel(others[1])  # queued: KILLED at once
    for rid, final in [(run, RunStatus.FINISHED), (others[0], RunStatus.FAILED), (others[1], RunStatus.KILLED)]:
        for target in RunStatus:
            with pytest.raises(InvalidTransition):
                storage.transition(rid, target)
        assert storage.get_run(rid).status is final
        assert storage.request_cancel(rid).status is final  # cancelling an ended run changes nothing
    with pytest.raises(RunNotFound):
        storage.transition(999, RunStatus.RUNNING)


def test_transition_with_expect_lets_only_one_of_two_racers_win(storage):
    run = storage.submit(config("ok"))
    storage.transition(run, RunStatus.RUNNING)
    storage.transition(run, RunStatus.FINISHED, expect=RunStatus.RUNNING)
    with pytest.raises(InvalidTransition):  # e.g. the supervisor marking it stale a moment later
        storage.transition(run, RunStatus.FAILED, expect=RunStatus.RUNNING, reason="stale")
    assert storage.get_run(run).status is RunStatus.FINISHED


def test_claim_takes_queued_runs_oldest_first_exactly_once(storage):
    ids = [storage.submit(config(f"ok-{i}")) for i in range(3)]
    storage.request_cancel(ids[0])
    claimed = storage.claim_next("cpu")
    assert claimed.id == ids[1] and claimed.status is RunStatus.RUNNING and claimed.device == "cpu"
    assert storage.claim_next("cpu").id == ids[2]
    assert storage.claim_next("cpu") is None


def test_cancel_flag_and_heartbeat(storage):
    run = storage.submit(config("ok"))
    storage.claim_next("cpu")
    assert storage.heartbeat(run) == (True, False)
    assert not storage.is_cancel_requested(run)
    info = storage.request_cancel(run)
    assert info.status is RunStatus.RUNNING and info.cancel_requested
    assert storage.is_cancel_requested(run)
    assert storage.heartbeat(run) == (True, True)
    storage.transition(run, RunStatus.KILLED)
    assert storage.heartbeat(run)[0] is False


def test_params_are_write_once(storage):
    run = storage.submit(config("ok"))
    storage.log_params(run, {"info.device": "cpu", "info.trainable": 123})
    storage.log_params(run, {"info.device": "cpu"})  # same value again: fine
    with pytest.raises(ParamConflict, match="info.device"):
        storage.log_params(run, {"info.device": "cuda", "info.new": 1})
    params = storage.params(run)
    assert params["info.device"] == "cpu" and params["info.trainable"] == "123"
    assert "info.new" not in params, "a refused write changes nothing"
    with pytest.raises(ParamConflict):
        storage.log_params(run, {"train.steps": 11})


def test_list_filters_rename_and_search(storage):
    a = storage.submit(config("ok-alpha"), experiment="e1")
    lora = config("ok-beta")
    lora["method"] = {"method": "lora"}
    b = storage.submit(lora, experiment="e2")
    c = storage.submit(config("ok-gamma_%"), experiment="e1")
    _finish(storage, a)
    assert [r.id for r in storage.list_runs()] == [c, b, a]
    assert [r.id for r in storage.list_runs(newest_first=False, limit=2)] == [a, b]
    assert [r.id for r in storage.list_runs(experiment="e1")] == [c, a]
    assert [r.id for r in storage.list_runs(status="FINISHED")] == [a]
    assert [r.id for r in storage.list_runs(status=[RunStatus.QUEUED])] == [c, b]
    assert [r.id for r in storage.list_runs(method="lora")] == [b]
    assert [r.id for r in storage.list_runs(search="a_%")] == [c], "search is a literal substring"
    renamed = storage.rename_run(a, "  best run ")
    assert renamed.name == "best run" and renamed.status is RunStatus.FINISHED
    assert [r.id for r in storage.list_runs(search="best")] == [a]
    with pytest.raises(RunNotFound):
        storage.rename_run(12345, "x")


# ---- metrics ---------------------------------------------------------------------------------


def test_metric_history_returns_every_point_in_order(storage, url):
    run = storage.submit(config("ok"))
    n = CHUNK_POINTS * 2 + 37  # packed chunks plus an unpacked tail
    t0 = 1_700_000_000.0
    for start in range(0, n, 300):
        pts = [(k, s, s * 0.5 if k == "loss" else -s, t0 + s) for s in range(start, min(n, start + 300))
               for k in ("loss", "lr")]
        storage.log_metrics(run, pts, step=min(n, start + 300) - 1)
    storage.log_metrics(run, [("loss", n, float("nan"), t0 + n), ("eval/macro/em", n, 0.25)])
    hist = storage.metric_history(run)
    assert sorted(hist) == ["eval/macro/em", "loss", "lr"]
    loss = hist["loss"]
    assert len(loss) == n + 1 and loss.steps == list(range(n + 1))
    assert loss.values[:n] == [s * 0.5 for s in range(n)] and math.isnan(loss.values[-1])
    assert loss.timestamps[:3] == [t0, t0 + 1, t0 + 2]
    assert hist["lr"].values[-1] == -(n - 1) and hist["eval/macro/em"].values == [0.25]
    assert list(storage.metric_history(run, keys=["lr"])) == ["lr"]
    assert storage.get_run(run).step == n - 1
    latest = storage.latest_metrics(run)
    assert latest["lr"] == (n - 1, -(n - 1)) and latest["loss"][0] == n and math.isnan(latest["loss"][1])
    # Every point is also a row of its own in the metrics table.
    engine = create_engine(resolve_db_url(url))
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM metrics WHERE run_id = :r"), {"r": run}).scalar()
    engine.dispose()
    assert count == 2 * n + 2
    assert storage.metric_history(run + 1) == {}


# ---- evaluations, routing, artifacts, logs -----------------------------------------------------


def _records(n: int) -> list[dict]:
    return [
        {"id": f"q{i}", "dataset": "set-a" if i < 2 else "set-b", "domain": "squad" if i % 2 else "gsm8k",
         "ood": i == 3, "answer_type": "span", "input": f"in {i}", "context": f"ctx {i}", "gold": [f"g{i}"],
         "prediction": f"p{i}", "expert": i % 2, "probs": [0.25, 0.75] if i % 2 else [float("nan"), 0.5],
         "confidence": 0.75, "entropy": 0.56, "em": 1.0, "f1": 1.0, "correct": True, "score": 1.0}
        for i in range(n)
    ]


def test_evaluations_and_routing_records(storage):
    run = storage.submit(config("ok"))
    scores = {"squad": {"em": 0.5, "f1": 0.6, "n": 2}, "macro": {"em": 0.4, "accuracy": 0.3, "extra": "x"}}
    storage.log_evaluation(run, 10, scores, _records(4), loss=1.5)
    storage.log_evaluation(run, 20, {"macro": {"em": 0.9}}, _records(2), split="test")
    evals = storage.evaluations(run)
    assert [(e.step, e.dataset) for e in evals] == [(10, "squad"), (10, "macro"), (20, "macro")]
    assert (evals[0].em, evals[0].f1, evals[0].count, evals[0].loss) == (0.5, 0.6, 2, 1.5)
    assert evals[1].accuracy == 0.3 and evals[1].scores["extra"] == "x"
    assert [e.dataset for e in storage.evaluations(run, step=20)] == ["macro"]

    assert storage.routing_steps(run) == [10, 20]
    latest = storage.routing_records(run)
    assert [r.id for r in latest] == ["q0", "q1"] and {r.split for r in latest} == {"test"}
    at10 = storage.routing_records(run, step=10)
    assert len(at10) == 4 and at10[1].probs == [0.25, 0.75] and at10[0].probs == [None, 0.5]
    assert at10[1].gold == ["g1"] and at10[1].expert == 1 and at10[1].correct is True
    assert [r.id for r in storage.routing_records(run, step=10, expert=1)] == ["q1", "q3"]
    assert [r.id for r in storage.routing_records(run, step=10, domain="gsm8k")] == ["q0", "q2"]
    assert [r.id for r in storage.routing_records(run, step=10, dataset="set-b")] == ["q2", "q3"]
    assert (at10[2].context, at10[2].answer_type, at10[2].dataset) == ("ctx 2", "span", "set-b")
    assert [r.id for r in storage.routing_records(run, step=10, ood=True)] == ["q3"]
    assert [r.id for r in storage.routing_records(run, step=10, limit=2, offset=1)] == ["q1", "q2"]
    assert storage.routing_records(run, step=10, split="test") == []
    assert storage.routing_records(run + 1) == []


def test_artifacts_checkpoints_and_log_tail(storage, tmp_path):
    run = storage.submit(config("ok"))
    out = Path(storage.get_run(run).output_dir)
    for step in (5, 10):
        (out / f"checkpoints/step-{step:06d}").mkdir(parents=True)
        storage.add_artifact(run, "checkpoint", out / f"checkpoints/step-{step:06d}", step)
    storage.add_artifact(run, "checkpoint", out / "checkpoints/step-000015", 15)  # since removed from disk
    storage.add_artifact(run, "adapter", out / "adapter", 15)
    storage.set_adapter(run, out / "adapter")
    assert [(c.step, c.exists) for c in storage.checkpoints(run)] == [(5, True), (10, True), (15, False)]
    assert storage.latest_checkpoint(run).step == 10
    assert [a.kind for a in storage.artifacts(run)] == ["checkpoint"] * 3 + ["adapter"]
    assert storage.get_run(run).adapter_path == str(out / "adapter")

    assert storage.log_tail(run) == ""
    Path(storage.get_run(run).log_path).write_text("".join(f"line {i}\n" for i in range(5000)))
    assert storage.log_tail(run, 3) == "line 4997\nline 4998\nline 4999"


def test_delete_removes_records_and_only_the_runs_own_files(storage, url, tmp_path):
    run = storage.submit(config("ok"))
    keep = storage.submit(config("ok-keep"))
    out = Path(storage.get_run(run).output_dir)
    (out / "checkpoints/step-000001").mkdir(parents=True)
    Path(storage.get_run(run).log_path).write_text("log\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    storage.add_artifact(run, "checkpoint", outside, 1)
    storage.log_metrics(run, [("loss", i, 1.0) for i in range(CHUNK_POINTS + 5)])
    storage.log_evaluation(run, 1, {"macro": {"em": 1.0}}, _records(2))
    storage.claim_next("cpu")
    with pytest.raises(StorageError, match="running"):
        storage.delete_run(run)
    storage.transition(run, RunStatus.FAILED)
    removed = storage.delete_run(run)
    assert str(out) in removed and not out.exists()
    assert outside.exists(), "files outside the runs directory are never deleted"
    with pytest.raises(RunNotFound):
        storage.get_run(run)
    engine = create_engine(resolve_db_url(url))
    with engine.connect() as conn:
        for table in ("params", "metrics", "metric_series", "metric_chunks", "artifacts", "evaluation_results",
                      "routing_records"):
            assert conn.execute(text(f"SELECT count(*) FROM {table} WHERE run_id = :r"), {"r": run}).scalar() == 0
    engine.dispose()
    assert [r.id for r in storage.list_runs()] == [keep]
    with pytest.raises(RunNotFound):
        storage.delete_run(run)


# ---- schema versions -------------------------------------------------------------------------


def _version(url: str) -> str | None:
    engine = create_engine(resolve_db_url(url))
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def test_migration_from_an_empty_database_matches_the_models(url, tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from storage.models import Base

    assert len(known_revisions()) >= 2
    Storage(url, runs_dir=tmp_path).close()
    assert _version(url) == head_revision()
    engine = create_engine(resolve_db_url(url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == [], f"migrations and models differ: {diff}"


def test_migration_from_the_previous_schema_version_keeps_the_data(url, tmp_path):
    previous = known_revisions()[-2]
    db = Database(resolve_db_url(url))
    upgrade_to(db, previous)
    with db.write_engine.begin() as conn:
        conn.execute(text("INSERT INTO experiments (id, name, created_at) VALUES (1, 'old', 1.0)"))
        conn.execute(text(
            "INSERT INTO runs (id, experiment_id, name, method, base_model, data_specs, config, status, created_at, "
            "step, ended_at) VALUES (7, 1, 'legacy', 'pt', 'tiny-random', '[\"builtin:all\"]', '{}', 'FINISHED', "
            "1.0, 3, 2.0)"
        ))
        conn.execute(text("INSERT INTO params (run_id, key, value) VALUES (7, 'train.steps', '3')"))
        conn.execute(text(
            "INSERT INTO metrics (run_id, key, step, value, timestamp) VALUES (7, 'loss', 1, 2.5, 1.0), "
            "(7, 'loss', 2, 1.5, 2.0)"
        ))
        conn.execute(text(
            "INSERT INTO metric_series (run_id, key, count, packed_count, packed_last_id, last_step, last_value, "
            "last_timestamp) VALUES (7, 'loss', 2, 0, 0, 2, 1.5, 2.0)"
        ))
        if "postgresql" in url:  # rows a studio wrote itself would have advanced the id sequences
            for table, last in (("experiments", 1), ("runs", 7)):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {last})"))
    db.dispose()
    assert _version(url) == previous

    with pytest.raises(StorageError, match="python -m storage upgrade"):
        Storage(url, runs_dir=tmp_path, upgrade=False)  # what a job process does: refuse, say what to do
    assert _version(url) == previous

    with Storage(url, runs_dir=tmp_path) as s:
        assert _version(url) == head_revision()
        run = s.get_run(7)
        assert (run.name, run.status, run.experiment) == ("legacy", RunStatus.FINISHED, "old")
        assert s.metric_history(7)["loss"].values == [2.5, 1.5]
        assert s.params(7) == {"train.steps": "3"}
        s.log_evaluation(7, 3, {"macro": {"em": 1.0}}, _records(1))  # what revision 0002 added
        assert s.routing_records(7)[0].id == "q0"
        assert run.host is None and s.submit({"name": "next"}) == 8  # 0003: the id counter starts at the newest
    if "sqlite" in url:
        assert Path(url).with_name(f"studio.db.schema-{previous}.bak").is_file(), "a backup precedes the upgrade"
    # And back down, for completeness of the migration scripts.
    db = Database(resolve_db_url(url))
    downgrade_to(db, previous)
    db.dispose()
    assert _version(url) == previous


def test_refuses_newer_unknown_and_foreign_schemas(url, tmp_path):
    Storage(url, runs_dir=tmp_path).close()
    engine = create_engine(resolve_db_url(url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StorageError, match="newer than this PT-MoE Studio"):
        Storage(url, runs_dir=tmp_path)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()
    with pytest.raises(StorageError, match="not a studio database"):
        Storage(url, runs_dir=tmp_path)


# ---- files it must not touch (SQLite) ------------------------------------------------------------


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_corrupt_database_file_is_refused_and_left_untouched(tmp_path):
    garbage = tmp_path / "garbage" / "studio.db"
    garbage.parent.mkdir()
    garbage.write_bytes(os.urandom(8192))
    before = _snapshot(garbage.parent)
    with pytest.raises(StorageError, match="is not a SQLite database") as e:
        Storage(str(garbage))
    assert str(garbage) in str(e.value)
    assert _snapshot(garbage.parent) == before

    # A real studio database whose pages were damaged afterwards (the header is intact).
    damaged = tmp_path / "damaged" / "studio.db"
    with Storage(str(damaged)) as s:
        s.submit(config("ok"))
    data = bytearray(damaged.read_bytes())
    data[100:4096] = os.urandom(4096 - 100)
    damaged.write_bytes(bytes(data))
    before = _snapshot(damaged.parent)
    with pytest.raises(StorageError) as e:
        Storage(str(damaged))
    assert str(damaged) in str(e.value)
    assert _snapshot(damaged.parent)["studio.db"] == before["studio.db"]


def test_unwritable_database_gives_a_clear_error_and_is_left_untouched(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot create the directory") as e:
        Storage(str(blocker / "sub" / "studio.db"))
    assert str(blocker / "sub" / "studio.db") in str(e.value)

    # Root ignores file permissions, so then the check runs without the capabilities that allow that.
    base = tmp_path / "readonly"
    path = base / "studio.db"
    with Storage(str(path)) as s:
        s.submit(config("ok"))
    for p in base.iterdir():
        p.chmod(0o444)
    base.chmod(0o555)
    try:
        before = _snapshot(base)
        code = (
            "import sys\nfrom storage import Storage, StorageError\n"
            f"try:\n    Storage({str(path)!r})\nexcept StorageError as e:\n    print(e); sys.exit(7)\n"
        )
        try:
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)},
                                  preexec_fn=_drop_root_file_powers if os.geteuid() == 0 else None)
        except subprocess.SubprocessError as e:
            pytest.skip(f"cannot run without root's file capabilities here: {e}")
        assert proc.returncode == 7, proc.stdout + proc.stderr
        assert str(path) in proc.stdout and "not writable" in proc.stdout
        assert _snapshot(base) == before
    finally:
        base.chmod(0o755)


def _drop_root_file_powers() -> None:
    """In the child before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_locked_database_is_retried_then_reported(tmp_path):
    path = tmp_path / "studio.db"
    settings = DbSettings(busy_timeout_s=0.05, lock_retries=4, retry_delay_s=0.1)  # >= 0.75s of retries
    s = Storage(str(path), settings=settings)
    run = s.submit(config("ok"))
    other = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    threading.Timer(0.4, other.rollback).start()
    assert s.rename_run(run, "renamed").name == "renamed"  # waited out the lock without an error
    other.execute("BEGIN IMMEDIATE")
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="stayed locked") as e:
        s.rename_run(run, "again")
    assert str(path) in str(e.value) and time.monotonic() - t0 < 10
    assert s.get_run(run).name == "renamed", "reads are never blocked by a writer"
    other.rollback()
    other.close()
    s.close()


def test_in_memory_sqlite_is_refused():
    with pytest.raises(StorageError, match="in-memory"):
        Storage("sqlite://")


# ---- configuration ---------------------------------------------------------------------------


def test_database_location_precedence(tmp_path):
    env = {"PTMOE_HOME": str(tmp_path / "home")}
    assert resolve_db_url(None, env).database == str(tmp_path / "home" / "runs" / "studio.db")
    env["PTMOE_DB"] = str(tmp_path / "env.db")
    assert resolve_db_url(None, env).database == str(tmp_path / "env.db")
    assert resolve_db_url(str(tmp_path / "flag.db"), env).database == str(tmp_path / "flag.db")
    pg = resolve_db_url("postgresql+psycopg://u:secret@localhost:5432/studio", env)
    assert pg.get_backend_name() == "postgresql" and pg.password == "secret"
    with Storage(str(tmp_path / "x" / "studio.db")) as s:
        assert s.runs_dir == tmp_path / "x" and s.label == str(tmp_path / "x" / "studio.db")


def test_cli_upgrades_and_reports(tmp_path, capsys):
    from storage.__main__ import main

    db = tmp_path / "cli" / "studio.db"
    assert main(["status", "--db", str(db)]) == 2
    assert "schema none" in capsys.readouterr().out
    assert main(["upgrade", "--db", str(db)]) == 0
    assert f"schema {head_revision()}" in capsys.readouterr().out
    assert main(["status", "--db", str(db)]) == 0
    db.write_bytes(b"garbage" * 10)
    assert main(["status", "--db", str(db)]) == 1
    assert "is not a SQLite database" in capsys.readouterr().err


def test_a_database_damaged_past_its_header_is_refused_with_what_to_do(tmp_path):
    """Damage in a page the schema check never reads (the header and first page intact): refused at
    open by the integrity check, with what to do, and left untouched."""
    db = tmp_path / "deep" / "studio.db"
    with Storage(str(db)) as s:
        for i in range(40):
            s.submit(config(f"run-{i}"))
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    data[-3 * page:-2 * page] = os.urandom(page)
    db.write_bytes(bytes(data))
    before = _snapshot(db.parent)
    with pytest.raises(StorageError) as e:
        Storage(str(db))
    msg = str(e.value)
    assert str(db) in msg and "damaged" in msg and "backup" in msg and "\n" not in msg
    assert _snapshot(db.parent)["studio.db"] == before["studio.db"]
