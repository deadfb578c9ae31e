"""The sweep view's pure parts: the run count before launch, the form's grid and base, the summary
table (escaped), the figures and the paired comparison's sentence."""

from __future__ import annotations

from types import SimpleNamespace

from app.studio import sweep_base
from app.sweep_view import (
    comparison_md,
    grid_from_fields,
    parallel_figure,
    param_figure,
    run_count_text,
    summary_html,
)
from ptmoe_core.config import RunConfig
from storage.models import RunStatus
from storage.sweeps import PairedComparison, PointSummary, RunScore, SweepSummary

EVIL = "<img src=x onerror=alert(1)>"


def _run(seed: int, macro: float, status=RunStatus.FINISHED) -> RunScore:
    run = SimpleNamespace(status=status, is_final=status.is_final)
    return RunScore(run, seed, macro, {EVIL: macro}, 0.5, seed == 0)


def _summary() -> SweepSummary:
    pts = [PointSummary({"method.preset": EVIL}, f"method.preset={EVIL}", [_run(0, 0.4), _run(1, 0.6)], 2),
           PointSummary({"method.preset": "paper"}, "method.preset=paper",
                        [_run(0, 0.5), _run(1, 0.0, RunStatus.RUNNING)], 2)]
    return SweepSummary(3, EVIL, EVIL, ["method.preset"], [0, 1], pts)


def test_run_count_and_grid_from_the_form():
    grid = grid_from_fields([("method.n_experts", "1, 2,4"), (None, "5"), ("train.lr", "0.1,0.2")])
    assert grid == {"method.n_experts": ["1", "2", "4"], "train.lr": ["0.1", "0.2"]}
    assert "**12 runs** = 3 method.n&#95;experts × 2 train.lr × 2 seed(s)" == run_count_text(grid, "0,1")
    assert "not an integer" in run_count_text(grid, "0,a")
    assert "Pick at least one key" in run_count_text({}, "0")


def test_a_swept_preset_leaves_the_method_keys_to_the_preset():
    cfg = RunConfig.from_dict({"method": {"method": "ptmoe", "n_experts": 3}})
    assert sweep_base(cfg, {"method.preset": ["paper"], "method.n_experts": ["2"]})["method"] == {
        "method": "ptmoe", "n_experts": 3, "preset": "studio"}
    assert sweep_base(cfg, {"train.lr": ["0.1"]})["method"]["router_lr_mult"] == cfg.method.router_lr_mult


def test_the_summary_table_aggregates_seeds_and_escapes_everything():
    html = summary_html(_summary())
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "50.0" in html and "2/2" in html and "1/2" in html and "1 of 2" in html and "running (live)" in html
    assert "1 finished, 1 running" in html


def test_figures_escape_labels_and_show_each_grid_point():
    s = _summary()
    fig = param_figure(s, "method.preset", "score")
    assert list(fig.data[0].y) == [50.0, 50.0]
    assert all("<img" not in t for t in fig.layout.xaxis.ticktext)
    par = parallel_figure(s)
    assert [d.label for d in par.data[0].dimensions] == ["method.preset", "macro F1 (%)", "I(domain; expert)"]
    assert "<img" not in str(par.to_plotly_json())
    assert "Pick a sweep" in str(param_figure(None, "", "mi").layout.annotations[0].text)


def test_the_paired_comparison_sentence():
    cmp = PairedComparison("a", EVIL, 0.05, 0.01, 0.09, 40, [0, 1])
    text = comparison_md(cmp, "a", EVIL)
    assert "+5.0 F1 points" in text and "[+1.0, +9.0]" in text and "is better" in text and "<img" not in text
    assert "contains 0" in comparison_md(PairedComparison("a", "b", 0.0, -0.1, 0.1, 4, [0]), "a", "b")
    assert "Nothing to pair" in comparison_md(None, "a", "b")
