"""The studio service (app/studio.py) without a server or Gradio: launch, stop, inspect, compare and
bundles, on the tiny random model."""

from __future__ import annotations

import sys

import pytest

from app import forms
from app.main import close_context, create_context
from app.studio import DRAWN, STORED, TYPED, InspectRequest, Studio
from app.testing import tiny_settings
from storage import JobSettings


@pytest.fixture
def studio(tmp_path):
    ctx = create_context(tiny_settings(tmp_path), start_jobs=False)
    try:
        yield Studio(ctx)
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
    studio = Studio(ctx)
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
        res = Studio(ctx).import_bundle(bundle)
        assert res.created and ctx.storage.routing_records(res.run_id) == studio.storage.routing_records(rid)
    finally:
        close_context(ctx)
