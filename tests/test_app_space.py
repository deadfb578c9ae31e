"""The first visit and the hosted Space, without a browser: where a Space keeps its runs, the page
saying when they are temporary, the gallery imported at first start, the first Inspect screen (a
gallery PT-MoE run next to the routed-preset run and the frozen model), the floor in tables."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from app import inspect_tab, queries, views
from app.main import build_app, close_context, create_context
from app.settings import GALLERY_DIR, from_args
from app.testing import make_tiny_gallery, tiny_settings

SPACE = {"SPACE_ID": "someone/pt-moe-studio"}


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    return make_tiny_gallery(tmp_path_factory.mktemp("gallery"))


def test_a_space_keeps_runs_under_its_persistent_storage(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    s = from_args([], env={**SPACE, "PTMOE_SPACE_STORAGE": str(data)}, gpu=False)
    home = data / "ptmoe-studio"
    assert s.demo and s.persistent and s.host == "0.0.0.0"
    assert s.db == str(home / "runs" / "studio.db") and s.runs_dir == home / "runs" and s.data_dir == home / "data"
    assert s.gallery_dir == GALLERY_DIR
    # Without persistent storage: the defaults, and the page will say runs are temporary.
    s = from_args([], env={**SPACE, "PTMOE_SPACE_STORAGE": str(tmp_path / "absent")}, gpu=False)
    assert not s.persistent and s.db is None and s.runs_dir is None
    # An explicit database wins; off a Space nothing changes.
    s = from_args([], env={**SPACE, "PTMOE_SPACE_STORAGE": str(data), "PTMOE_DB": str(tmp_path / "x.db")}, gpu=False)
    assert s.persistent and s.db is None
    s = from_args([], env={"PTMOE_SPACE_STORAGE": str(data)}, gpu=False)
    assert s.persistent and s.db is None and not s.demo
    assert from_args([], env={"PTMOE_GALLERY": ""}, gpu=False).gallery_dir is None
    assert from_args([], env={"PTMOE_GALLERY": str(tmp_path)}, gpu=False).gallery_dir == tmp_path


def _header(ctx) -> str:
    demo = build_app(ctx)
    return next(b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "pt-header")


def test_temporary_runs_are_announced(tmp_path):
    ctx = create_context(tiny_settings(tmp_path, persistent=False, demo=True), start_jobs=False)
    try:
        head = _header(ctx)
        assert "Runs here are temporary" in head and "Demo mode" in head
    finally:
        close_context(ctx)
    ctx = create_context(tiny_settings(tmp_path / "p"), start_jobs=False)
    try:
        assert "temporary" not in _header(ctx)
    finally:
        close_context(ctx)


def test_first_start_imports_the_gallery_and_opens_inspect_on_it(tmp_path, gallery):
    ctx = create_context(tiny_settings(tmp_path, gallery_dir=gallery), start_jobs=False)
    try:
        runs = ctx.storage.list_runs(newest_first=False)
        assert [r.experiment for r in runs] == ["gallery"] * 4
        with gr.Blocks():
            insp = inspect_tab.build(ctx)
        first = insp.first_screen()
        assert first is not None
        run_upd, base_upd, mode_upd, floor_upd, status, table = first[:6]
        by_key = {r.name: r.id for r in runs}
        studio, routed = by_key["gallery · PT-MoE · studio defaults"], by_key["gallery · PT-MoE · routed preset"]
        assert run_upd["value"] == studio and base_upd["value"] == routed
        assert mode_upd["value"] == inspect_tab.MODES[2] and floor_upd["value"] is True
        assert "stored evaluation at step 2" in status and table.count('<tr data-row="') == 8  # 2 per set × 4 sets
        assert f"Baseline: #{routed}" in table and views.FLOOR_HEADER in table
        # Hidden from the Runs table on request; a user's own run ends the first screen.
        assert queries.run_rows(ctx.storage, hide_experiments=("gallery",)) == []
        assert len(queries.run_rows(ctx.storage)) == 4
        ctx.storage.submit(runs[0].config, experiment="default", name="mine")
        assert insp.first_screen() is None
    finally:
        close_context(ctx)
    # The next start of the same studio imports nothing again.
    ctx = create_context(tiny_settings(tmp_path, gallery_dir=gallery), start_jobs=False)
    try:
        assert len(ctx.storage.list_runs()) == 5
    finally:
        close_context(ctx)


def test_floor_rows_and_column():
    header, body = queries.scores_table(_NoRuns(), [], [("m · frozen model (no adapter)", {"a": 0.25, "macro": 0.25})])
    assert header == ["Run", "Method", "Params", "a", "Macro"] and body == [["m · frozen model (no adapter)", "frozen",
                                                                             0, 0.25, 0.25]]
    rows = [{"question": "q", "gold": ["x"], "prediction": "x", "score": 1.0, "correct": True,
             "floor": {"text": "<b>y</b>", "score": 0.0, "correct": False}}]
    html = views.inspect_table(rows)
    assert views.FLOOR_HEADER in html and "&lt;b&gt;y&lt;/b&gt;" in html and "<b>y</b>" not in html
    assert views.FLOOR_HEADER in views.example_detail(rows[0], 0)


class _NoRuns:
    def get_run(self, rid):  # pragma: no cover - no run ids are given
        raise AssertionError(rid)
