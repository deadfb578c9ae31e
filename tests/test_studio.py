"""The studio service (app/studio.py) without a server or Gradio: launch, stop, inspect, compare,
bundles, rename / delete (with the demo rules), continue / copy, config files and data sources, on the
tiny random model."""

from __future__ import annotations

import sys

import pytest

from app import forms
from app.main import close_context, create_context
from app.studio import DRAWN, STORED, TYPED, InspectRequest
from app.testing import tiny_settings
from storage import JobSettings


@pytest.fixture
def studio(tmp_path):
    ctx = create_context(tiny_settings(tmp_path), start_jobs=False)
    try:
        yield ctx.studio
    finally:
        close_context(ctx)


def tiny_values(**kw):
    v = forms.default_values("tiny-random")
    v.update(name="tiny-ptmoe", steps=2, batch_size=2, warmup_steps=0, eval_every=0, save_every=0, max_new_tokens=2,
             max_train_examples=16, max_eval_examples=2, max_source_tokens=64, max_answer_tokens=4,
             train_specs="builtin:arith", eval_specs="builtin:arith, builtin:qa")
    v.update(kw)
    return v


def test_the_studio_imports_no_gradio():
    import subprocess

    code = "import sys, app.studio; sys.exit('gradio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_launch_and_stop_have_one_path(studio):
    bad = studio.launch(tiny_values(steps=0))
    assert bad.run_id is None and "steps" in bad.checked.errors
    ok = studio.launch(tiny_values())
    assert ok.run_id is not None and not ok.checked.errors
    r = studio.storage.get_run(ok.run_id)
    assert str(r.status) == "QUEUED" and r.name == "tiny-ptmoe"
    info = studio.stop(ok.run_id)
    assert info.is_final or info.cancel_requested


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A studio with its job supervisor and one finished tiny PT-MoE run (a real job)."""
    ctx = create_context(tiny_settings(tmp_path_factory.mktemp("studio")),
                         job_settings=JobSettings(poll_interval_s=0.2, heartbeat_interval_s=1.0))
    studio = ctx.studio
    try:
        rid = studio.launch(tiny_values(save_every=1)).run_id
        info = ctx.queue.wait(rid, timeout=300)
        assert str(info.status) == "FINISHED", info.error_message
        yield studio, rid
    finally:
        ctx.queue.stop(cancel_running=True, timeout=30)
        close_context(ctx)


def test_evaluation_sets_come_from_the_engine(finished):
    studio, rid = finished
    run = studio.storage.get_run(rid)
    assert studio.eval_set_names(run) == ["builtin-arith", "builtin-qa"]
    drawn = studio.eval_examples(run, "builtin-qa", 3, seed=1)
    assert len(drawn) == 3 and {x["domain"] for x in drawn} == {"builtin-qa"}
    assert drawn == studio.eval_examples(run, "builtin-qa", 3, seed=1)  # seeded
    with pytest.raises(ValueError, match="no evaluation set 'nope'"):
        studio.eval_examples(run, "nope", 1, 0)


def test_inspect_stored_drawn_and_typed(finished):
    studio, rid = finished
    stored = studio.inspect(InspectRequest(run_id=rid, mode=STORED))
    records = studio.storage.routing_records(rid)
    assert [r["id"] for r in stored.rows] == [r.id for r in records] and stored.n_experts == 2
    assert "stored evaluation at step 2" in stored.label
    drawn = studio.inspect(InspectRequest(run_id=rid, mode=DRAWN, n=1, max_new_tokens=2, forced=True))
    assert [r["domain"] for r in drawn.rows] == ["builtin-arith", "builtin-qa"]
    assert all(len(r["forced"]) == 2 for r in drawn.rows)
    typed = studio.inspect(InspectRequest(run_id=rid, mode=TYPED, text="What is 2 plus 2? => 4", checkpoint="1",
                                          max_new_tokens=2, baseline_id=rid))
    assert typed.rows[0]["gold"] == ["4"] and typed.rows[0]["baseline"]["run"].startswith(f"#{rid} ")
    assert typed.label.endswith("@ step 1")
    with pytest.raises(ValueError, match="no checkpoint at step 7"):
        studio.inspect(InspectRequest(run_id=rid, text="x", checkpoint="7"))


def test_what_inspect_offers_for_a_run(finished):
    studio, rid = finished
    t = studio.inspect_target(rid)
    assert t.checkpoints == [("final adapter", "final"), ("checkpoint at step 2", "2"), ("checkpoint at step 1", "1")]
    assert t.eval_sets == ["builtin-arith", "builtin-qa"] and t.stored_steps[-1] == 2 and t.max_new_tokens == 2
    assert t.description.startswith(f"**#{rid} tiny-ptmoe** · ptmoe with N=2 experts")
    assert studio.first_request() is None  # the user's own run: no gallery first screen


def test_live_view_of_a_run(finished):
    studio, rid = finished
    v = studio.live(rid)
    assert v.run.id == rid and v.note == "" and v.signature[:3] == [rid, 2, "FINISHED"]
    assert v.signature[3] == len(studio.storage.evaluations(rid)) > 0
    assert v.curves is not None and v.curves.steps[-1] == 2 and v.n_experts == 2
    again = studio.live(rid, v.signature)
    assert again.curves is None and again.routing is None  # nothing changed: no redrawing
    assert studio.live(rid + 100) is None


def test_compare_export_and_import(finished, tmp_path):
    studio, rid = finished
    c = studio.compare([rid])
    assert len(c.body) >= 1 and list(c.losses) == [f"#{rid} tiny-ptmoe (ptmoe)"] and c.evals
    z = studio.adapter_zip(rid)
    assert z.suffix == ".zip" and z.stat().st_size > 0
    bundle = studio.export(rid)
    again = studio.import_bundle(bundle)
    assert not again.created and again.run_id == rid  # the studio knows its own bundle
    ctx = create_context(tiny_settings(tmp_path), start_jobs=False)
    try:
        res = ctx.studio.import_bundle(bundle)
        assert res.created and ctx.storage.routing_records(res.run_id) == studio.storage.routing_records(rid)
    finally:
        close_context(ctx)


# ---- what the tabs keep only as wiring: the context, runs, configs, data sources -----------------


def test_the_context_holds_only_settings_and_the_studio(studio, tmp_path):
    import dataclasses

    from app.state import AppContext

    assert [f.name for f in dataclasses.fields(AppContext)] == ["settings", "studio"]
    shape, note = studio.model_shape("tiny-random")
    assert shape.hidden == 64 and note == "" and studio.shapes.keys() == ["tiny-random"]  # the studio's cache
    assert studio.model_shape("  ") == (None, "name a base model")


def test_rename_refuses_empty_and_overlong_names(studio):
    from storage.errors import StorageError

    rid = studio.launch(tiny_values()).run_id
    with pytest.raises(StorageError, match="run name must not be empty"):
        studio.rename(rid, "   ")
    with pytest.raises(StorageError, match="too long .201 characters, at most 200"):
        studio.rename(rid, "x" * 201)
    assert studio.storage.get_run(rid).name == "tiny-ptmoe"
    assert studio.rename(rid, " <b>mine</b> ").name == "<b>mine</b>"
    details = studio.details(rid)
    assert f"#{rid} &lt;b&gt;mine&lt;/b&gt;" in details and "<b>" not in details  # user text escaped
    assert "step 0/2" in details and studio.details(None) == "_No run selected._"


def _runs(studio):
    from storage.bundles import GALLERY

    cfg = forms.config_from_values(tiny_values())
    return studio.storage.submit(cfg, experiment=GALLERY), studio.storage.submit(cfg)


def test_delete_keeps_the_demo_rules(tmp_path):
    from storage import RunStatus

    ctx = create_context(tiny_settings(tmp_path / "open", demo=True), start_jobs=False)
    try:  # a shared demo without a login: nobody deletes
        gallery, mine = _runs(ctx.studio)
        with pytest.raises(ValueError, match=f"Run #{mine}: runs cannot be deleted in this shared demo"):
            ctx.studio.delete(mine)
        assert {r.id for r in ctx.storage.list_runs()} == {gallery, mine}
    finally:
        close_context(ctx)
    ctx = create_context(tiny_settings(tmp_path / "login", demo=True, auth=(("u", "pw"),)), start_jobs=False)
    try:  # a demo with a login: its users delete their runs, never the gallery's
        studio = ctx.studio
        gallery, mine = _runs(studio)
        with pytest.raises(ValueError, match=f"Run #{gallery}: gallery runs cannot be deleted in demo mode"):
            studio.delete(gallery)
        assert studio.storage.get_run(gallery).experiment == "gallery"
        studio.storage.transition(mine, RunStatus.RUNNING)
        with pytest.raises(ValueError, match=f"Run #{mine} is running: stop it first"):
            studio.deletable(mine)
        studio.storage.transition(mine, RunStatus.KILLED, reason="stopped")
        assert studio.deletable(mine).id == mine
        studio.delete(mine)
        assert [r.id for r in studio.storage.list_runs()] == [gallery]
    finally:
        close_context(ctx)


def test_copy_and_continue_keep_the_demo_limits(tmp_path):
    from ptmoe_core.errors import ConfigError

    ctx = create_context(tiny_settings(tmp_path, demo=True), start_jobs=False)
    try:
        rid = ctx.studio.launch(tiny_values()).run_id
        with pytest.raises(ValueError, match="demo mode allows at most 300 steps"):
            ctx.studio.copy_run(rid, "train.steps=301")
        with pytest.raises(ValueError, match="expected KEY=VALUE"):
            ctx.studio.copy_run(rid, "steps 3")
        with pytest.raises(ConfigError, match="train.stepz: unknown configuration key; did you mean train.steps"):
            ctx.studio.copy_run(rid, "train.stepz=3")
        assert [r.id for r in ctx.storage.list_runs()] == [rid]  # nothing queued
        new, cfg = ctx.studio.copy_run(rid, "train.steps=3")
        assert cfg.name == "tiny-ptmoe (copy)" and ctx.storage.get_run(new).total_steps == 3
    finally:
        close_context(ctx)


def test_config_save_and_load(studio, tmp_path):
    from ptmoe_core.errors import ConfigError

    values = tiny_values(name="saved run", steps=7)
    path = studio.save_config(values)
    assert path.name == "saved-run.yaml" and path.parent.parent == studio.scratch
    loaded = studio.load_config(path)
    assert {k: loaded[k] for k in ("name", "steps", "train_specs", "method")} == {
        "name": "saved run", "steps": 7, "train_specs": "builtin:arith", "method": "ptmoe"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, line 2, column 1: not valid YAML"):
        studio.load_config(bad)
    bad.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) \['stepz'\]"):
        studio.load_config(bad)
    with pytest.raises(ConfigError, match="file not found"):
        studio.load_config(tmp_path / "missing.yaml")
    rid = studio.launch(values).run_id
    run, copied = studio.run_values(rid)
    assert run.id == rid and copied["name"] == "saved run-copy" and copied["steps"] == 7


def test_data_sources_upload_folder_and_preview(studio, tmp_path):
    from ptmoe_core.errors import DataError

    good = tmp_path / "qa.jsonl"
    good.write_text('{"question": "2+2?", "answer": "4"}\n{"question": "3+3?", "answer": "6"}\n')
    spec, rel = studio.upload(good, "auto")
    assert spec == f"jsonl:{rel}" and rel.parent.name == "uploads" and (studio.data_dir / rel).is_file()
    assert str(rel) in studio.data_files() and studio.folder_spec(str(rel), "jsonl") == spec
    rows, note = studio.preview(spec, 1)
    assert [r[2] for r in rows] == ["2+2?"] and "1 row" in note
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty.jsonl is empty"):
        studio.upload(tmp_path / "empty.jsonl", "auto")
    nameless = studio.data_dir / "nameless.jsonl"
    nameless.write_text('{"foo": 1, "answer": "x"}\n')
    with pytest.raises(DataError, match="no question column .* columns found: foo, answer"):
        studio.preview("jsonl:nameless.jsonl", 3)
    with pytest.raises(ValueError, match="Choose the data first"):
        studio.preview(" , ", 3)
    with pytest.raises(ValueError, match=r"jsonl:/etc/passwd: /etc/passwd is outside the data folder"):
        studio.preview("jsonl:/etc/passwd", 3)
    with pytest.raises(ValueError, match="not a file in the data folder"):
        studio.folder_spec("../qa.jsonl", "auto")


# ---- sweeps: launched, summarised, compared, cancelled, resumed and deleted through the service --------


def _form_config(studio, **kw):
    checked = studio.check(tiny_values(**kw))
    assert not checked.errors, checked.errors
    return studio.resolve(checked.cfg)


def test_a_sweep_is_refused_whole_before_anything_is_queued(studio):
    from storage.sweep_spec import SweepError

    cfg = _form_config(studio)
    with pytest.raises(SweepError, match=r"unknown configuration key 'method.n_expert' in the grid; did you mean "
                                         r"method.n_experts"):
        studio.sweep_launch(cfg, {"method.n_expert": ["1", "2"]}, "0")
    with pytest.raises(SweepError, match="grid method.n_experts=0: method.n_experts"):
        studio.sweep_launch(cfg, {"method.n_experts": ["1", "0"]}, "0, 1")
    with pytest.raises(SweepError, match="seed 'x' is not an integer"):
        studio.sweep_launch(cfg, {"method.n_experts": ["1"]}, "0, x")
    with pytest.raises(ValueError, match="grid point data.train=.*passwd.*outside the data folder"):
        studio.sweep_launch(cfg, {"data.train": ["builtin:arith", "jsonl:/etc/passwd"]}, "0")
    assert studio.sweep_list() == [] and studio.storage.list_runs() == []


def test_a_shared_studio_holds_each_sweep_run_to_its_limits(tmp_path):
    ctx = create_context(tiny_settings(tmp_path, demo=True), start_jobs=False)
    try:
        studio = ctx.studio
        cfg = _form_config(studio)
        with pytest.raises(ValueError, match="grid point train.steps=301: demo mode allows at most 300 steps"):
            studio.sweep_launch(cfg, {"train.steps": ["2", "301"]}, "0")
        with pytest.raises(ValueError, match="the sweep has 4 runs and 0 are already waiting; demo mode queues at "
                                             "most 3"):
            studio.sweep_launch(cfg, {"method.n_experts": ["1", "2"]}, "0, 1")
        assert studio.sweep_list() == [] and studio.storage.list_runs() == []
        launched = studio.sweep_launch(cfg, {"method.n_experts": ["1", "2"]}, "0")
        assert len(launched.run_ids) == 2
        with pytest.raises(ValueError, match=f"Sweep #{launched.sweep_id}: runs cannot be deleted in this shared demo"):
            studio.sweep_delete(launched.sweep_id)
        assert len(studio.storage.list_runs(sweep=launched.sweep_id)) == 2
    finally:
        close_context(ctx)


def test_a_sweep_through_the_service(finished):
    from storage.sweeps import wait_sweep

    studio, _ = finished
    cfg = _form_config(studio, name="sw", steps=1)
    launched = studio.sweep_launch(cfg, {"method.n_experts": ["1", "2"]}, "0", experiment="svc")
    assert [w.id for w in studio.sweep_list()] == [launched.sweep_id] and len(launched.run_ids) == 2
    runs = wait_sweep(studio.storage, launched.sweep_id, timeout=300, poll_s=0.2)
    assert [str(r.status) for r in runs] == ["FINISHED", "FINISHED"], [r.error_message for r in runs]
    s = studio.sweep_summary(launched.sweep_id)
    assert s.done and s.keys == ["method.n_experts"] and [p.n_finished for p in s.points] == [1, 1]
    assert [p.label for p in s.points] == ["method.n_experts=1", "method.n_experts=2"]
    cmp = studio.sweep_compare(launched.sweep_id, "method.n_experts=1", "method.n_experts=2")
    assert cmp is not None and cmp.seeds == [0] and cmp.n_pairs > 0 and cmp.low <= cmp.diff <= cmp.high
    assert studio.sweep_compare(launched.sweep_id, "method.n_experts=1", "nope") is None
    assert studio.sweep_cancel(launched.sweep_id) == [] and studio.sweep_resume(launched.sweep_id) == []
    assert len(studio.sweep_delete(launched.sweep_id)) >= 2
    assert studio.sweep_list() == [] and not set(launched.run_ids) & {r.id for r in studio.storage.list_runs()}
