"""Every string a user or a file supplies is escaped before it reaches the page: a script-carrying
name in each place the studio renders one (HTML fragments, Markdown, toasts, Plotly labels)."""

from __future__ import annotations

import gradio as gr
import pytest

from app import forms, inspection, plots, queries, views
from app.escaping import code, esc
from app.ui import friendly
from ptmoe_core.config import RunConfig
from ptmoe_core.params import ModelShape

PAYLOAD = '<img src=x onerror="alert(1)">*[link](javascript:alert(2))* `c` $x$ _u_'
SHAPE = ModelShape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128)


def assert_inert(text: str) -> None:
    """No tag, attribute quote, Markdown link/emphasis/code or LaTeX delimiter survives."""
    for raw in ("<img", '"alert', "[link]", "](", "*[", "`c`", "$x$", "_u_"):
        assert raw not in text, (raw, text)


def strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in strings(v)]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in strings(v)]
    return []


def test_esc_is_inert_everywhere_and_shows_the_text():
    out = esc(PAYLOAD + "\n# heading\n- item")
    assert_inert(out)
    assert "\n" not in out and "<" not in out
    import html

    assert html.unescape(out) == PAYLOAD + "\n# heading\n- item"  # the page shows exactly the text
    assert esc("# title").startswith("&#35;") and esc("1. x").startswith("&#49;") and esc("- x").startswith("&#45;")
    assert code(PAYLOAD).startswith("<code>") and "<img" not in code(PAYLOAD)


def test_parameter_box_escapes_a_model_name_from_a_config_file():
    cfg = RunConfig()
    cfg.model.name = PAYLOAD
    assert_inert(forms.params_html(cfg, SHAPE))
    assert_inert(forms.params_html(cfg, None, model_note=f"cannot read the configuration of {PAYLOAD!r}"))
    cfg.method.method = "lora"
    assert_inert(forms.params_html(cfg, SHAPE))


def test_views_escape_every_field():
    assert_inert(views.progress("FAILED", 1, 3, 1.0, None, name=PAYLOAD, run_id=1, note=PAYLOAD))
    row = {"question": PAYLOAD, "context": PAYLOAD, "domain": PAYLOAD, "gold": [PAYLOAD], "prediction": PAYLOAD,
           "expert": 0, "probs": [1.0], "confidence": 1.0, "score": 0.0, "correct": False,
           "forced": [{"expert": 0, "text": PAYLOAD, "score": 0.0, "correct": False}],
           "baseline": {"run": PAYLOAD, "text": PAYLOAD, "score": 0.0, "correct": False}}
    assert_inert(views.inspect_table([row], baseline_label=PAYLOAD))
    assert_inert(views.example_detail(row, 0))
    assert_inert(queries.scores_table_html(["Run", "Method", "Params", PAYLOAD, "Macro"],
                                           [[PAYLOAD, PAYLOAD, 10, 0.5, 0.5]]))
    res = inspection.InspectResult(rows=[row], n_experts=1, method="ptmoe", label=f"run #1 {PAYLOAD}")
    assert_inert(inspection.summary(res))


def test_plot_labels_titles_and_hover_text_are_escaped():
    figs = [
        plots.eval_curves({PAYLOAD: ([1, 2], [0.1, 0.2])}),
        plots.overlay_curves({PAYLOAD: ([1, 2], [0.1, 0.2])}, "Loss", "loss"),
        plots.prob_heatmap([[0.2, 0.8], [0.9, 0.1]], [1, 0], [PAYLOAD, PAYLOAD]),
        plots.usage_matrix([PAYLOAD, "b"], [0, 1], 2),
        plots.usage_bars([PAYLOAD, "b"], [0, 1], 2),
        plots.projection_scatter([[0, 1], [1, 0]], [0, 1], [PAYLOAD, PAYLOAD]),
    ]
    for fig in figs:
        for s in strings(fig.to_plotly_json()):
            assert_inert(s)


def test_error_toasts_are_escaped():
    @friendly
    def fails():
        raise ValueError(f"cannot read {PAYLOAD}")

    with pytest.raises(gr.Error) as e:
        fails()
    assert_inert(e.value.message)
