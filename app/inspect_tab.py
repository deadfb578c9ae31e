"""Inspect tab: choose a finished run (and checkpoint), type inputs or draw examples from its
evaluation sets, and see per input, side by side, what the router chose and what came out."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gradio as gr

from . import plots, queries, views
from .inspection import MAX_TYPED_CHARS, InspectResult, summary
from .state import AppContext
from .studio import DRAWN, FINAL, STORED, TYPED, InspectRequest
from .ui import friendly

MODES = ["Type inputs", "Draw from the run's evaluation sets", "The run's stored evaluation"]
MODE_OF = dict(zip(MODES, (TYPED, DRAWN, STORED), strict=True))
ALL_SETS = "all evaluation sets"
PLACEHOLDER = ("What is 17 plus 25? => 42\n"
               "Convert 3 kilometres to metres. => 3000\n"
               "What weekday comes two days after Friday? => Sunday")


def build(ctx: AppContext) -> SimpleNamespace:
    st = ctx.storage
    studio = ctx.studio

    with gr.Row(equal_height=True):
        run = gr.Dropdown([], value=None, allow_custom_value=True, label="Run", info="Finished runs, and stopped runs that saved a checkpoint.", scale=4,
                          elem_id="pt-inspect-run-select")
        ckpt = gr.Dropdown([("final adapter", FINAL)], value=FINAL, allow_custom_value=True, label="Checkpoint", scale=2,
                           elem_id="pt-inspect-ckpt")
        refresh = gr.Button("↻", scale=0, min_width=50)
    run_info = gr.Markdown("_Pick a finished run._", elem_id="pt-inspect-info")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            mode = gr.Radio(MODES, value=MODES[0], label="Inputs", elem_id="pt-inspect-mode")
            with gr.Group(visible=True) as g_type:
                text = gr.Textbox(label="Inputs, one per line", lines=5, placeholder=PLACEHOLDER,
                                  max_length=MAX_TYPED_CHARS,
                                  info="Optionally add the gold answer after “=>” to score the output "
                                       "(several golds separated by “|”).", elem_id="pt-inspect-text")
                with gr.Row():
                    context = gr.Textbox(label="Passage (optional, shared by all lines)", lines=2, scale=3,
                                         max_length=MAX_TYPED_CHARS)
                    answer_type = gr.Dropdown(["text", "number", "span"], value="text", label="Answer type",
                                              info="How gold answers are scored (number: final-number match).",
                                              scale=1)
            with gr.Group(visible=False) as g_draw:
                with gr.Row():
                    eval_set = gr.Dropdown([ALL_SETS], value=ALL_SETS, allow_custom_value=True, label="Evaluation set", scale=3)
                    n_draw = gr.Slider(1, 32, value=4, step=1, label="Examples per set", scale=2)
                    seed = gr.Number(0, label="Seed", precision=0, scale=1, min_width=80)
            with gr.Group(visible=False) as g_stored:
                stored_step = gr.Dropdown([], value=None, allow_custom_value=True, label="Evaluated at step",
                                          info="The routing the job recorded at that evaluation (no generation).")
        with gr.Column(scale=2):
            forced = gr.Checkbox(False, label="Also answer with each expert forced",
                                 info="One extra column per expert: what it generates when the router picks it, "
                                      "with the confidence the router gives its own choice.")
            baseline = gr.Dropdown([], value=None, allow_custom_value=True, label="Baseline run (optional)",
                                   info="Another run's answers in an extra column, e.g. PT or LoRA.")
            floor_cb = gr.Checkbox(False, label="Also show the frozen model's answers (no adapter)",
                                   info="The floor: the same prompts through the base model alone.",
                                   elem_id="pt-inspect-floor")
            max_new = gr.Slider(1, 64, value=24, step=1, label="Max new tokens")
            go_btn = gr.Button("Inspect", variant="primary", elem_id="pt-inspect-go")
    status = gr.Markdown("", elem_id="pt-inspect-status")
    table = gr.HTML(views.inspect_table([]), js_on_load=views.TABLE_JS, elem_id="pt-inspect-table-wrap")
    with gr.Row(equal_height=False):
        row_no = gr.Number(1, label="Input #", info="Click a row, or type its number.", precision=0, minimum=1,
                           scale=0, min_width=150, elem_id="pt-inspect-row")
        detail = gr.HTML(views.example_detail(None), elem_id="pt-inspect-detail", padding=True)
    with gr.Column(visible=False) as plots_box:
        gr.Markdown("#### What the router did across these inputs")
        with gr.Row():
            heat = gr.Plot(plots.prob_heatmap([], [], []), show_label=False)
            conf = gr.Plot(plots.confidence_hist([], []), show_label=False)
        with gr.Row():
            dom = gr.Plot(plots.usage_matrix([], [], 0), show_label=False)
            proj = gr.Plot(plots.projection_scatter([], [], []), show_label=False)
        with gr.Row():
            usage = gr.Plot(plots.usage_bars([], [], 0), show_label=False)
    result = gr.State(None)

    # ---- handlers ----------------------------------------------------------------------------

    @friendly
    def refresh_runs(current: Any, current_base: Any):
        ch = queries.inspectable_choices(st)
        ids = {c[1] for c in ch}
        cur = queries.parse_run_id(current)
        cb = queries.parse_run_id(current_base)
        return (gr.update(choices=ch, value=cur if cur in ids else (ch[0][1] if ch else None)),
                gr.update(choices=[("none", None), *ch], value=cb if cb in ids else None))

    @friendly
    def pick_run(run_v: Any):
        rid = queries.parse_run_id(run_v)
        if rid is None:
            return ("_Pick a finished run._", gr.update(choices=[("final adapter", FINAL)], value=FINAL),
                    gr.update(choices=[ALL_SETS], value=ALL_SETS), gr.update(choices=[], value=None), gr.update())
        t = studio.inspect_target(rid)
        ck, steps = t.checkpoints, t.stored_steps
        return (t.description, gr.update(choices=ck, value=ck[0][1] if ck else None),
                gr.update(choices=[ALL_SETS, *t.eval_sets], value=ALL_SETS),
                gr.update(choices=[str(x) for x in steps], value=str(steps[-1]) if steps else None),
                gr.update(value=min(64, int(t.max_new_tokens))) if t.max_new_tokens else gr.update())

    def _request(run_v, ckpt_v, mode_v, text_v, context_v, answer_type_v, eval_set_v, n_v, seed_v, stored_v,
                 forced_v, baseline_v, max_new_v, floor_v=False) -> InspectRequest:
        rid = queries.parse_run_id(run_v)
        if rid is None:
            raise ValueError("pick a finished run first")
        return InspectRequest(
            run_id=rid, checkpoint=ckpt_v or FINAL, mode=MODE_OF.get(mode_v, TYPED), text=text_v or "", context=context_v or "",
            answer_type=answer_type_v or "text", eval_set=None if eval_set_v in (None, "", ALL_SETS) else eval_set_v,
            n=int(n_v or 4), seed=int(seed_v or 0),
            stored_step=int(stored_v) if stored_v not in (None, "") else None, forced=bool(forced_v),
            baseline_id=queries.parse_run_id(baseline_v), max_new_tokens=int(max_new_v or 24), floor=bool(floor_v))

    def _outputs(res: InspectResult):
        rows = res.rows
        labels = [r.get("question", "") for r in rows]
        experts = [r.get("expert") for r in rows]
        groups = [r.get("domain") or "typed" for r in rows]
        n = res.n_experts
        return [
            summary(res),
            views.inspect_table(rows, res.baseline_label),
            1,
            views.example_detail(rows[0] if rows else None, 0),
            plots.prob_heatmap([r.get("probs") or [] for r in rows], experts, labels),
            plots.confidence_hist([r.get("confidence") for r in rows], [r.get("correct") for r in rows]),
            plots.usage_matrix(groups, experts, n, "Domain × expert usage"),
            plots.projection_scatter(res.points, experts, labels, res.explained) if res.points
            else plots.empty("Router inputs (PCA, 2-D)", "Generate with a routed adapter (not stored records) "
                                                        "on two or more inputs."),
            plots.usage_bars([r.get("domain") or "typed" for r in rows], experts, n),
            res.to_state(),
            gr.update(visible=True),
        ]

    @friendly
    def inspect(run_v, ckpt_v, mode_v, text_v, context_v, answer_type_v, eval_set_v, n_v, seed_v, stored_v,
                forced_v, baseline_v, max_new_v, floor_v=False, progress=gr.Progress()):  # noqa: B008 - the Gradio idiom
        """Generate for the inputs (through the bounded inspection queue) and lay out the rows and plots.
        The stored evaluation needs no generation (a missing floor is computed through the queue)."""
        req = _request(run_v, ckpt_v, mode_v, text_v, context_v, answer_type_v, eval_set_v, n_v, seed_v, stored_v,
                       forced_v, baseline_v, max_new_v, floor_v)
        if req.mode != STORED:
            progress(0.0, desc="waiting for a free generation slot")

        def report(fraction: float, what: str) -> None:
            progress(fraction, desc=f"generating: {what}")

        return _outputs(studio.inspect(req, report))

    def first_screen() -> list[Any] | None:
        """A first visit (gallery runs only): updates that open a gallery PT-MoE run's stored
        evaluation, the routed-preset run as the baseline and the frozen model's answers; None
        otherwise (the user has runs of their own, or no gallery)."""
        req = studio.first_request()
        if req is None:
            return None
        run_upd, base_upd = refresh_runs(req.run_id, req.baseline_id)
        res = studio.stored(req)
        return [run_upd, base_upd, gr.update(value=MODES[2]), gr.update(value=True), *_outputs(res)]

    @friendly
    def show_example(state: dict | None, index: Any):
        res = InspectResult.from_state(state)
        if res is None or index in (None, ""):
            return views.example_detail(None)
        i = int(index) - 1
        if not 0 <= i < len(res.rows):
            raise gr.Error(f"There are {len(res.rows)} rows; pick 1 to {len(res.rows)}.")
        return views.example_detail(res.rows[i], i)

    def row_clicked(state: dict | None, evt: gr.EventData):
        """A click on a table row (the HTML sends its index) shows that input in full."""
        data = getattr(evt, "_data", None) or {}
        row = data.get("row") if isinstance(data, dict) else None
        if row is None:
            return gr.skip(), gr.skip()
        return int(row) + 1, show_example(state, int(row) + 1)

    def mode_visibility(m: str):
        return [gr.update(visible=m == x) for x in MODES]

    # ---- wiring ------------------------------------------------------------------------------
    inputs = [run, ckpt, mode, text, context, answer_type, eval_set, n_draw, seed, stored_step, forced, baseline,
              max_new, floor_cb]
    outputs = [status, table, row_no, detail, heat, conf, dom, proj, usage, result, plots_box]
    refresh.click(refresh_runs, [run, baseline], [run, baseline], api_name="inspect_runs")
    run.change(pick_run, [run], [run_info, ckpt, eval_set, stored_step, max_new], api_name="inspect_run_info")
    mode.change(mode_visibility, [mode], [g_type, g_draw, g_stored], api_visibility="private")
    go_btn.click(inspect, inputs, outputs, api_name="inspect", concurrency_limit=ctx.settings.inspect_concurrency,
                 concurrency_id="inspect", show_progress_on=[table])
    table.click(row_clicked, [result], [row_no, detail], api_visibility="private", show_progress="hidden")
    row_no.submit(show_example, [result, row_no], [detail], api_name="show_example", show_progress="hidden")
    row_no.input(show_example, [result, row_no], [detail], api_visibility="private", show_progress="hidden")

    return SimpleNamespace(run=run, baseline=baseline, refresh_runs=refresh_runs, pick_run=pick_run,
                           run_info=run_info, ckpt=ckpt, eval_set=eval_set, stored_step=stored_step,
                           first_screen=first_screen, first_outputs=[run, baseline, mode, floor_cb, *outputs])

