"""Bundles in and out of the database (storage.bundles, ``python -m storage export/import``):
export -> import reproduces a run (its Inspect rows exactly); a malformed bundle changes nothing;
the gallery seeds an empty studio once and never touches a user's runs."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import func, select

from app.inspection import rows_from_records
from ptmoe_core.adapter import WEIGHTS_NAME, load_adapter
from ptmoe_core.bundle import read_bundle
from ptmoe_core.config import RunConfig
from ptmoe_core.errors import BundleError
from ptmoe_core.floor import evaluate_floor, floor_key
from ptmoe_core.trainer import train
from storage import RunStatus, Storage
from storage.bundles import (
    GALLERY,
    export_run,
    find_bundle,
    gallery_roles,
    import_bundle,
    run_bundle,
    seed_gallery,
)
from storage.floors import FloorCache
from storage.models import Metric, Param, RoutingRecord, Run
from storage.worker import StorageCallback, _record_result
from tests.jobs_fixtures import db_url
from tests.test_bundle import WEIGHTS_NAME as W
from tests.test_bundle import _patch_sizes, _set_base, rezip, tiny_config, with_manifest


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    with db_url(request.param, tmp_path) as u:
        yield u


def record_tiny_run(storage: Storage, cfg: RunConfig, base, experiment: str = "default") -> int:
    """Train ``cfg`` in-process the way a job does, reporting through the worker's callback."""
    rid = storage.submit(cfg, experiment=experiment)
    storage.transition(rid, RunStatus.RUNNING)
    cb = StorageCallback(storage, rid)
    res = train(RunConfig.from_dict(storage.get_run(rid).config), [cb], base=base)
    cb.flush()
    _record_result(storage, rid, res, SimpleNamespace(reason=None), cb.last_step)
    return rid


@pytest.fixture(scope="module")
def source(tiny_base, tmp_path_factory):
    """A studio with two finished tiny runs (PT-MoE with its floor cached, and PT), exported."""
    root = tmp_path_factory.mktemp("source")
    st = Storage(str(root / "runs" / "studio.db"), runs_dir=root / "runs")
    ids = [record_tiny_run(st, tiny_config(root / m, m), tiny_base) for m in ("ptmoe", "pt")]
    cfg = RunConfig.from_dict(st.get_run(ids[0]).config)
    from ptmoe_core.bundle import Evaluation

    FloorCache(st.runs_dir).put(floor_key(cfg), Evaluation.from_report(evaluate_floor(cfg, base=tiny_base)))
    files = [export_run(st, rid, root / "out" / f"run{rid}.ptmoe.zip") for rid in ids]
    yield SimpleNamespace(storage=st, ids=ids, files=files, root=root)
    st.close()


@pytest.fixture
def dest(url, tmp_path):
    s = Storage(url, runs_dir=tmp_path / "dest-runs")
    yield s
    s.close()


def snapshot(st: Storage) -> tuple:
    """Everything an import could leave behind: row counts and files."""
    def tx(s):
        return tuple(s.execute(select(func.count()).select_from(t)).scalar_one() for t in (Run, Param, Metric, RoutingRecord))

    files = sorted(str(p.relative_to(st.runs_dir)) for p in st.runs_dir.rglob("*")) if st.runs_dir.exists() else []
    return st.db.run(tx, write=False), [f for f in files if not f.startswith("studio.db")]


def without(obj, *fields):
    return {k: v for k, v in dataclasses.asdict(obj).items() if k not in fields}


# ---- export -> import ------------------------------------------------------------------------


def test_export_import_reproduces_the_run(source, dest, tiny_base):
    src, rid = source.storage, source.ids[0]
    res = import_bundle(dest, source.files[0])
    assert res.created
    a, b = src.get_run(rid), dest.get_run(res.run_id)
    assert b.status is RunStatus.FINISHED and b.reason == "imported" and b.experiment == "imported"
    for f in ("name", "method", "base_model", "data_specs", "trainable_params", "step", "total_steps"):
        assert getattr(a, f) == getattr(b, f), f
    assert {**a.config, "output_dir": ""} == {**b.config, "output_dir": ""}
    assert Path(b.output_dir).is_relative_to(dest.runs_dir)
    # The Inspect table of the stored evaluation: the same rows, exactly.
    for step in src.routing_steps(rid):
        ra, rb = src.routing_records(rid, step=step), dest.routing_records(res.run_id, step=step)
        assert rows_from_records(ra) == rows_from_records(rb) and len(ra) > 0
        assert [without(x, "run_id") for x in ra] == [without(x, "run_id") for x in rb]
    assert dest.routing_steps(res.run_id) == src.routing_steps(rid)
    assert [without(e, "run_id", "created_at") for e in src.evaluations(rid)] == \
        [without(e, "run_id", "created_at") for e in dest.evaluations(res.run_id)]
    ha, hb = src.metric_history(rid), dest.metric_history(res.run_id)
    assert set(ha) == set(hb) and all(ha[k].steps == hb[k].steps and ha[k].values == hb[k].values for k in ha)
    assert [c.step for c in dest.checkpoints(res.run_id)] == [c.step for c in src.checkpoints(rid)]
    assert not any(c.exists for c in dest.checkpoints(res.run_id))  # the list travels, not the files
    # The adapter is the trained one and loads.
    ad = load_adapter(b.adapter_path, base=tiny_base)
    want = load_file(str(Path(a.adapter_path) / WEIGHTS_NAME))
    assert all(torch.equal(ad.state_dict()[k], want[k]) for k in want)
    # Its floor came along; re-exporting gives the same bundle.
    key = floor_key(RunConfig.from_dict(b.config))
    assert FloorCache(dest.runs_dir).get(key) is not None
    assert run_bundle(dest, res.run_id).bundle_id == read_bundle(source.files[0]).bundle_id
    assert dest.params(res.run_id)["info.device"] == "cpu"


def test_importing_twice_does_not_duplicate(source, dest):
    first = import_bundle(dest, source.files[0])
    before = snapshot(dest)
    again = import_bundle(dest, source.files[0], experiment="other")
    assert (again.run_id, again.created) == (first.run_id, False)
    assert snapshot(dest) == before
    assert find_bundle(dest, read_bundle(source.files[0]).bundle_id) == first.run_id


def test_imported_runs_take_ids_from_the_counter(source, dest):
    """import -> submit -> delete the newest -> import: the last run gets a new id (the deleted one's
    would show another run to a page still holding it); on PostgreSQL the sequence moves on too."""
    from tests.jobs_fixtures import config

    first = import_bundle(dest, source.files[0]).run_id
    submitted = dest.submit(config("after-import"))
    assert submitted > first
    dest.delete_run(submitted)
    again = import_bundle(dest, source.files[1]).run_id
    assert again > submitted
    assert dest.submit(config("last")) > again


def _malformed(good: Path, d: Path) -> dict[str, Path]:
    huge = d / "huge.zip"
    huge.write_bytes(_patch_sizes(good.read_bytes(), W, 1 << 30))
    cut = d / "cut.zip"
    cut.write_bytes(good.read_bytes()[:-200])
    out = d / "escape.zip"
    rezip(good, out)
    import zipfile

    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr("../x", b"x")
    pick = rezip(good, d / "pickle.zip")
    with zipfile.ZipFile(pick, "a") as zf:
        zf.writestr("adapter_model.bin", b"\x80\x04\x95" + b"\x00" * 20)
    return {
        "truncated": cut,
        "version": with_manifest(good, d / "v.zip", lambda m: m.update(format_version=99)),
        "../x": out,
        "pickle": pick,
        "other base": _set_base(good, d / "base.zip", hidden_size=2048),
        "1 GB member": huge,
    }


def test_malformed_bundles_change_nothing(source, dest, tmp_path):
    import_bundle(dest, source.files[1])  # a database with something in it
    before = snapshot(dest)
    for what, path in _malformed(source.files[0], tmp_path).items():
        with pytest.raises(BundleError) as e:
            import_bundle(dest, path)
        assert "\n" not in str(e.value), what
        assert snapshot(dest) == before, what


def _retensored(good: Path, out: Path, edit) -> Path:
    """The bundle with its tensors edited (``edit(dict) -> dict``) and the manifest's checksum updated."""
    import hashlib
    import json

    from safetensors.torch import load, save

    from ptmoe_core.bundle import MANIFEST
    from tests.test_bundle import members

    m = members(good)
    weights = save(edit(load(m[W])))
    man = json.loads(m[MANIFEST])
    man["files"][W]["sha256"] = hashlib.sha256(weights).hexdigest()
    return rezip(good, out, {MANIFEST: json.dumps(man).encode(), W: weights})


def _bad_values(good: Path, d: Path) -> dict[str, Path]:
    """Bundles whose checksummed files are intact and whose values are not: one per kind of value."""
    def first_record(m):
        return next(e for e in m["evaluations"] if e["records"])["records"][0]

    edits = {
        "created_at 1e300": lambda m: m.update(created_at=1e300),
        "created_at negative": lambda m: m.update(created_at=-86400.0 * 365 * 300),
        "created_at text": lambda m: m.update(created_at="yesterday"),
        "ended_at huge": lambda m: m["run"]["info"].update(ended_at=9e18),
        "seed 2**70": lambda m: m["run"]["config"]["train"].update(seed=2**70),
        "eval step 2**64": lambda m: m["evaluations"][0].update(step=2**64),
        "eval step past the run": lambda m: m["evaluations"][0].update(step=10**6),
        "checkpoint 2**80": lambda m: m.update(checkpoints=[2**80]),
        "metric step -1": lambda m: next(iter(m["metrics"].values()))["steps"].__setitem__(0, -1),
        "null score": lambda m: next(iter(m["evaluations"][0]["scores"].values())).update(f1=None),
        "text score": lambda m: next(iter(m["evaluations"][0]["scores"].values())).update(em="high"),
        "null em": lambda m: first_record(m).update(em=None),
        "expert N": lambda m: first_record(m).update(expert=2),
        "expert -1": lambda m: first_record(m).update(expert=-1),
        "expert true": lambda m: first_record(m).update(expert=True),
        "probs of 3": lambda m: first_record(m).update(probs=[0.2, 0.3, 0.5]),
        "probs > 1": lambda m: first_record(m).update(probs=[1.5, -0.5]),
        "prediction null": lambda m: first_record(m).update(prediction=None),
        "input a number": lambda m: first_record(m).update(input=12),
        "metric name": lambda m: m["metrics"].update({"bogus": {"steps": [1], "values": [1.0]}}),
        "expert_load/7": lambda m: m["metrics"].update({"expert_load/7": {"steps": [1], "values": [0.5]}}),
        "floor expert": lambda m: m["floor"]["records"][0].update(expert=0),
        "info step 2**63": lambda m: m["run"]["info"].update(step=2**63),
    }
    out = {what: with_manifest(good, d / f"v{i}.zip", e) for i, (what, e) in enumerate(edits.items())}
    out["tensor renamed"] = _retensored(good, d / "t1.zip", lambda t: {("X" + k if k == "B" else k): v
                                                                      for k, v in t.items()})
    out["tensor reshaped"] = _retensored(good, d / "t2.zip", lambda t: {
        k: (torch.zeros(t[k].shape[0], t[k].shape[1] + 1) if k == "B" else v) for k, v in t.items()})
    out["tensor extra"] = _retensored(good, d / "t3.zip", lambda t: {**t, "router.extra": torch.zeros(2)})
    return out


def test_every_value_a_bundle_carries_is_checked_before_anything_is_written(source, dest, tmp_path):
    """Types, ranges (times, 64-bit integers, steps), nulls, expert indices, metric names and the
    tensors against the config: each refused in one line, the database and runs folder unchanged,
    and the Runs list still works."""
    from app import queries

    import_bundle(dest, source.files[1])
    before = snapshot(dest)
    for what, path in _bad_values(source.files[0], tmp_path).items():
        with pytest.raises(BundleError) as e:
            import_bundle(dest, path)
        assert "\n" not in str(e.value) and len(str(e.value)) < 400, what
        assert snapshot(dest) == before, what
    assert len(queries.run_rows(dest)) == 1


def test_one_bad_row_never_breaks_the_runs_list(source, dest):
    """A row written before these checks (or by hand) with an absurd time still lists, with the others."""
    from sqlalchemy import update

    from app import queries

    rid = import_bundle(dest, source.files[0]).run_id
    other = import_bundle(dest, source.files[1]).run_id
    dest.db.run(lambda s: s.execute(update(Run).where(Run.id == rid).values(created_at=1e300, started_at=-1e300,
                                                                             ended_at=1e300)), write=True)
    rows = queries.run_rows(dest)
    assert sorted(r[0] for r in rows) == sorted([rid, other])
    assert queries.run_choices(dest)


def test_a_failure_inside_the_transaction_leaves_nothing(source, dest, monkeypatch):
    before = snapshot(dest)

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(dest, "insert_metrics", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        import_bundle(dest, source.files[0])
    assert snapshot(dest) == before


def test_only_a_finished_run_exports(source, tmp_path):
    st = source.storage
    rid = st.submit(tiny_config(tmp_path / "q"))
    with pytest.raises(BundleError, match=f"run {rid} has no final adapter"):
        export_run(st, rid, tmp_path / "q.ptmoe.zip")
    assert not (tmp_path / "q.ptmoe.zip").exists()
    st.delete_run(rid)


def test_cli_export_and_import(source, tmp_path, capsys):
    from storage.__main__ import main

    src_db = str(source.root / "runs" / "studio.db")
    out = tmp_path / "cli.ptmoe.zip"
    assert main(["export", str(source.ids[1]), str(out), "--db", src_db]) == 0
    assert "exported run" in capsys.readouterr().out
    db = str(tmp_path / "cli" / "studio.db")
    assert main(["import", str(out), "--db", db, "--experiment", "mine"]) == 0
    assert "as run 1" in capsys.readouterr().out
    assert main(["import", str(out), "--db", db]) == 0
    assert "already in this database as run 1" in capsys.readouterr().out
    for args, msg in ((["import", str(tmp_path / "nope.zip")], "no such file"),
                      (["export", "999", str(tmp_path / "x.zip")], "run 999 does not exist")):
        assert main([*args, "--db", db]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and err.count("\n") == 1, err


# ---- the gallery -----------------------------------------------------------------------------


def gallery_dir(source, d: Path) -> Path:
    g = d / "gallery"
    g.mkdir()
    for i, f in enumerate(source.files):
        shutil.copy(f, g / f"{i}-{f.name}")
    (g / "broken.ptmoe.zip").write_bytes(b"not a zip")
    return g


def test_gallery_seeds_an_empty_studio_once(source, dest, tmp_path):
    g = gallery_dir(source, tmp_path)
    got = seed_gallery(dest, g)
    assert len(got) == 2 and all(x.created for x in got)  # the broken file is skipped, not fatal
    runs = dest.list_runs()
    assert {r.experiment for r in runs} == {GALLERY} and len(runs) == 2
    assert seed_gallery(dest, g) == [] and len(dest.list_runs()) == 2
    # Deleted gallery runs do not come back at the next start.
    for r in runs:
        dest.delete_run(r.id)
    assert seed_gallery(dest, g) == [] and dest.list_runs() == []


def test_gallery_never_touches_a_users_studio(source, dest, tmp_path):
    mine = import_bundle(dest, source.files[0], experiment="default")
    before = snapshot(dest)
    assert seed_gallery(dest, gallery_dir(source, tmp_path)) == []
    assert snapshot(dest) == before and dest.get_run(mine.run_id).experiment == "default"


def test_gallery_roles(source, dest, tmp_path, monkeypatch):
    import storage.bundles as sb

    real = sb.read_bundle

    def with_key(path, **kw):  # what bench/gallery.py writes into each bundle's provenance
        b = real(path, **kw)
        b.provenance["gallery_key"] = b.method
        return b

    monkeypatch.setattr(sb, "read_bundle", with_key)
    seed_gallery(dest, gallery_dir(source, tmp_path))
    roles = gallery_roles(dest)
    assert set(roles) == {"ptmoe", "pt"} and dest.get_run(roles["pt"]).method == "pt"
