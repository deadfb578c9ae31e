"""Sweeps in the studio: the Train tab's "Sweep" section (up to three configuration keys with
comma-separated values, seeds, the run count before launch, one Launch) and the Runs tab's sweep view
(grid points with seeds aggregated, the swept parameters against score and I(domain; expert), a
parallel-coordinates view, a paired comparison of two grid points; live while the sweep runs).

What a sweep does (launch with its checks, summary, paired comparison, cancel, resume, delete) is the
studio service's (``Studio.sweep_*`` in app/studio.py, over ``storage.sweeps``); this module holds the
widgets, their wiring and pure renderers (HTML, figures) of a ``SweepSummary``. Everything user-supplied (sweep and experiment names, keys, values, data-set
names) is escaped before it reaches HTML or a Plotly label.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from ptmoe_core.config import RunConfig
from storage.sweep_spec import config_keys, parse_seeds, split_values
from storage.sweeps import PairedComparison, SweepSummary

from . import plots
from .escaping import esc
from .state import AppContext
from .ui import friendly

log = logging.getLogger(__name__)
N_KEYS = 3
COMMON_KEYS = ["method.n_experts", "method.preset", "method.method", "train.lr", "method.prompt_len", "method.rank",
               "method.balance_loss", "train.steps"]


# ---- Train tab: the launcher ---------------------------------------------------------------------


def grid_from_fields(pairs: Sequence[tuple[str | None, str | None]]) -> dict[str, list[str]]:
    """The form's (key, "v1, v2") rows as a grid; rows without a key or values are left out."""
    grid: dict[str, list[str]] = {}
    for key, values in pairs:
        key = (key or "").strip()
        if key:
            grid[key] = split_values(values or "")
    return grid


def run_count_text(grid: dict[str, list[str]], seeds_text: str) -> str:
    try:
        seeds = parse_seeds(seeds_text or "")
    except Exception as e:  # shown, not raised: the count updates as the user types
        return f"Seeds: {esc(str(e))}"
    if not grid:
        return "Pick at least one key and give its values, e.g. `1, 2, 4`."
    n = len(seeds)
    for v in grid.values():
        n *= len(v)
    shape = " × ".join(f"{len(v)} {esc(k)}" for k, v in grid.items())
    return f"**{n} runs** = {shape} × {len(seeds)} seed(s)"


def build_launcher(ctx: AppContext) -> SimpleNamespace:
    """The Sweep section of the Train tab, placed where it is called; ``.wire(fields, form_config)``
    connects it once the form exists (``form_config(*field values)`` returns the validated form
    configuration, or raises a readable error)."""
    keys = config_keys()
    choices = [*COMMON_KEYS, *[k for k in keys if k not in COMMON_KEYS]]
    with gr.Accordion("Sweep: the settings above over a grid of values and several seeds", open=False,
                      elem_id="pt-sweep"):
        rows = []
        for i in range(N_KEYS):
            with gr.Row():
                key = gr.Dropdown(choices, value=None, label=f"Key {i + 1}", allow_custom_value=False, scale=2,
                                  elem_id=f"pt-sweep-key{i}")
                vals = gr.Textbox(label="Values (comma-separated)", placeholder="e.g. 1, 2, 4", scale=3,
                                  elem_id=f"pt-sweep-values{i}")
            rows += [key, vals]
        with gr.Row():
            seeds = gr.Textbox("0, 1, 2", label="Seeds", scale=2, elem_id="pt-sweep-seeds")
            experiment = gr.Textbox("sweeps", label="Experiment", scale=2, elem_id="pt-sweep-experiment")
        count = gr.Markdown(run_count_text({}, "0, 1, 2"), elem_id="pt-sweep-count")
        launch_btn = gr.Button("Launch sweep", variant="primary", elem_id="pt-sweep-launch")
        result = gr.Markdown("", elem_id="pt-sweep-result")

    def _grid(row_values: Sequence[Any]) -> dict[str, list[str]]:
        return grid_from_fields(list(zip(row_values[0::2], row_values[1::2], strict=True)))

    def show_count(*args: Any) -> str:
        return run_count_text(_grid(args[:-1]), args[-1])

    for comp in [*rows, seeds]:
        comp.change(show_count, [*rows, seeds], [count], api_visibility="private")
    holder: dict[str, Callable[..., RunConfig]] = {}

    def wire(fields: list[Any], form_config: Callable[..., RunConfig]) -> None:
        holder["form_config"] = form_config
        launch_btn.click(launch, [*rows, seeds, experiment, *fields], [result], api_name="launch_sweep")

    @friendly
    def launch(*args: Any) -> str:
        row_values, seed_text, exp = args[:2 * N_KEYS], args[2 * N_KEYS], args[2 * N_KEYS + 1]
        grid = _grid(row_values)
        cfg = holder["form_config"](*args[2 * N_KEYS + 2:])
        res = ctx.studio.sweep_launch(cfg, grid, seed_text or "", exp or "sweeps")
        return (f"✓ Queued sweep **#{res.sweep_id} {esc(cfg.name)}**: {len(res.run_ids)} runs "
                f"(#{res.run_ids[0]}–#{res.run_ids[-1]}). Follow it in the Runs tab's sweep view.")

    return SimpleNamespace(rows=rows, seeds=seeds, experiment=experiment, count=count, launch=launch_btn,
                           result=result, wire=wire)


# ---- Runs tab: the sweep view --------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def summary_html(summary: SweepSummary | None) -> str:
    """One row per grid point: macro F1 mean and 95 % interval over seeds, per-set F1, I(domain;
    expert), collapsed seeds, finished / asked seeds, and the runs' states."""
    if summary is None:
        return "<div class='pt-empty'>Pick a sweep.</div>"
    sets = sorted({k for p in summary.points for k in p.per_set})
    head = ["grid point", "macro F1", "95 % interval", *sets, "I(domain; expert)", "collapsed", "finished", "runs"]
    body = []
    for p in summary.points:
        ci = p.macro_interval
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(p.status_counts.items()))
        # Numbers as they are (esc would encode a leading digit); the label is the user's text.
        cells = [esc(p.label), _pct(p.macro_mean), f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "–",
                 *[_pct(p.per_set.get(k)) for k in sets],
                 "–" if p.mi_bits is None else f"{p.mi_bits:.3f} bits",
                 f"{p.n_collapsed} of {p.n_finished}" if p.n_finished else "–",
                 f"{p.n_finished}/{p.n_seeds}", esc(states)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    title = (f"Sweep #{summary.sweep_id} {esc(summary.name)} · experiment {esc(summary.experiment)} · seeds "
             f"{esc(', '.join(map(str, summary.seeds)))}" + ("" if summary.done else " · running (live)"))
    return (f"<div class='pt-sweep-title'><b>{title}</b></div><div class='pt-table-wrap'><table class='pt-table' "
            f"id='pt-sweep-table'><thead><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>"
            "<p class='pt-note'>Macro F1 per grid point is the mean over its finished seeds with a 95 % t interval; "
            "collapsed: seeds whose router sent more than 90 % of the evaluated inputs to one expert.</p>")


def _axis(values: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
    """Numbers stay numbers; anything else becomes category positions with its labels as ticks."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        ticks = sorted(set(values))  # the grid's own values, not 1.2, 1.4, ...
        return list(values), {"tickvals": ticks, "ticktext": [f"{v:g}" for v in ticks]}
    labels = list(dict.fromkeys(str(v) for v in values))
    return [labels.index(str(v)) for v in values], {"tickvals": list(range(len(labels))),
                                                     "ticktext": [esc(x) for x in labels]}


def param_figure(summary: SweepSummary | None, key: str, metric: str) -> go.Figure:
    """One swept parameter against the macro score (mean and 95 % interval per grid point, seeds as dots)
    or against I(domain; expert); the other keys' values as separate lines."""
    title = f"{esc(key)} vs {'macro F1' if metric == 'score' else 'I(domain; expert)'}"
    if summary is None or key not in summary.keys:
        return plots.empty(title, "Pick a sweep.")
    others = [k for k in summary.keys if k != key]
    groups: dict[str, list] = {}
    for p in summary.points:
        label = ", ".join(f"{k}={p.grid_point.get(k)}" for k in others) or "all"
        groups.setdefault(label, []).append(p)
    fig = go.Figure()
    for i, (label, pts) in enumerate(groups.items()):
        xs, ticks = _axis([p.grid_point.get(key) for p in pts])
        color = plots.RUN_COLORS[i % len(plots.RUN_COLORS)]
        if metric == "score":
            ys = [None if p.macro_mean is None else 100 * p.macro_mean for p in pts]
            ci = [p.macro_interval for p in pts]
            err = [0 if c is None or y is None else 100 * c[1] - y for c, y in zip(ci, ys, strict=True)]
            fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=esc(label), line={"color": color},
                            error_y={"type": "data", "array": err, "visible": True})
            dots = [(x, 100 * r.macro) for x, p in zip(xs, pts, strict=True) for r in p.finished]
        else:
            ys = [p.mi_bits for p in pts]
            fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=esc(label), line={"color": color})
            dots = [(x, r.mi_bits) for x, p in zip(xs, pts, strict=True) for r in p.finished if r.mi_bits is not None]
        if dots:
            fig.add_scatter(x=[d[0] for d in dots], y=[d[1] for d in dots], mode="markers", showlegend=False,
                            marker={"color": color, "size": 5, "opacity": 0.45}, hoverinfo="y")
        if ticks:
            fig.update_xaxes(**ticks)
    if not any(p.finished for p in summary.points):
        fig.add_annotation(text="No seed has finished yet.", showarrow=False, x=0.5, y=0.5, xref="paper",
                           yref="paper", font={"size": 13, "color": "#6b7280"})
    return plots._layout(fig, title, esc(key), "macro F1 (%)" if metric == "score" else "bits")


def parallel_figure(summary: SweepSummary | None) -> go.Figure:
    """Every grid point as a line through its swept values, its macro F1 and its I(domain; expert)."""
    title = "The whole grid (parallel coordinates)"
    if summary is None or not summary.points:
        return plots.empty(title, "Pick a sweep.")
    dims = []
    for key in summary.keys:
        vals, ticks = _axis([p.grid_point.get(key) for p in summary.points])
        dims.append({"label": esc(key), "values": vals, **ticks})
    score = [math.nan if p.macro_mean is None else 100 * p.macro_mean for p in summary.points]
    mi = [math.nan if p.mi_bits is None else p.mi_bits for p in summary.points]
    dims += [{"label": "macro F1 (%)", "values": score}, {"label": "I(domain; expert)", "values": mi}]
    finite = [s for s in score if not math.isnan(s)]
    line = {"color": [s if not math.isnan(s) else (min(finite) if finite else 0) for s in score],
            "colorscale": "Viridis", "showscale": True}
    fig = go.Figure(go.Parcoords(dimensions=dims, line=line))
    fig = plots._layout(fig, title, height=380, legend=False)
    fig.update_layout(margin={"l": 60, "r": 60, "t": 90, "b": 30})  # room for the axis titles under the title
    return fig


def comparison_md(cmp: PairedComparison | None, a: str | None, b: str | None) -> str:
    if not a or not b:
        return "Pick two grid points."
    if cmp is None:
        return (f"Nothing to pair between **{esc(a)}** and **{esc(b)}** yet: both need finished runs with the "
                "same seed and evaluated questions.")
    verdict = ("no difference shown (the interval contains 0)" if cmp.low <= 0 <= cmp.high
               else f"**{esc(b if cmp.diff > 0 else a)}** is better")
    return (f"**{esc(b)}** − **{esc(a)}**: {100 * cmp.diff:+.1f} F1 points, 95 % interval "
            f"[{100 * cmp.low:+.1f}, {100 * cmp.high:+.1f}] over {cmp.n_pairs} question pairs from seeds "
            f"{esc(', '.join(map(str, cmp.seeds)))} (paired bootstrap within each data set): {verdict}.")


def sweep_choices(ctx: AppContext) -> list[tuple[str, int]]:
    return [(f"#{w.id} {w.name} ({w.experiment}, {w.run_count} runs)", w.id) for w in ctx.studio.sweep_list()]


def build_view(ctx: AppContext) -> SimpleNamespace:
    """The Runs tab's sweep view."""
    studio = ctx.studio
    with gr.Accordion("Sweeps: grid points with seeds aggregated", open=False, elem_id="pt-sweeps"):
        with gr.Row():
            pick = gr.Dropdown([], value=None, label="Sweep", scale=3, elem_id="pt-sweep-pick")
            refresh = gr.Button("↻", scale=0, min_width=60)
            cancel_btn = gr.Button("Cancel sweep", variant="stop", size="sm", scale=1)
            resume_btn = gr.Button("Resume", size="sm", scale=1)
            delete_btn = gr.Button("Delete sweep…", variant="stop", size="sm", scale=1, elem_id="pt-sweep-delete")
        with gr.Row(visible=False) as confirm_box:
            confirm_md = gr.Markdown("")
            confirm_btn = gr.Button("Yes, delete the sweep, its runs and their files", variant="stop", size="sm")
            keep_btn = gr.Button("Keep it", size="sm")
        action = gr.Markdown("", elem_id="pt-sweep-action")
        table = gr.HTML(summary_html(None), elem_id="pt-sweep-summary")
        with gr.Row():
            key = gr.Dropdown([], value=None, label="Swept parameter", scale=1)
        with gr.Row():
            score_plot = gr.Plot(param_figure(None, "", "score"), show_label=False)
            mi_plot = gr.Plot(param_figure(None, "", "mi"), show_label=False)
        parallel = gr.Plot(parallel_figure(None), show_label=False)
        with gr.Row():
            point_a = gr.Dropdown([], value=None, label="Grid point A", scale=2)
            point_b = gr.Dropdown([], value=None, label="Grid point B", scale=2)
            compare_btn = gr.Button("Compare (paired)", scale=1)
        compare_md = gr.Markdown("", elem_id="pt-sweep-compare")
        timer = gr.Timer(ctx.settings.poll_s * 2, active=False)

    def _summary(sweep_id: Any) -> SweepSummary | None:
        return None if sweep_id in (None, "") else studio.sweep_summary(int(sweep_id))

    @friendly
    def list_sweeps(current: Any):
        ch = sweep_choices(ctx)
        ids = {c[1] for c in ch}
        return gr.update(choices=ch, value=current if current in ids else (ch[0][1] if ch else None))

    @friendly
    def show(sweep_id: Any, k: Any):
        s = _summary(sweep_id)
        keys = s.keys if s else []
        k = k if k in keys else (keys[0] if keys else None)
        labels = [p.label for p in s.points] if s else []
        return (summary_html(s), gr.update(choices=keys, value=k), param_figure(s, k or "", "score"),
                param_figure(s, k or "", "mi"), parallel_figure(s), gr.update(choices=labels),
                gr.update(choices=labels), gr.update(active=s is not None and not s.done))

    @friendly
    def plot_key(sweep_id: Any, k: Any):
        s = _summary(sweep_id)
        return param_figure(s, k or "", "score"), param_figure(s, k or "", "mi")

    @friendly
    def compare(sweep_id: Any, a: Any, b: Any) -> str:
        if sweep_id in (None, ""):
            return "Pick a sweep."
        return comparison_md(studio.sweep_compare(int(sweep_id), a, b) if a and b else None, a, b)

    def _require(sweep_id: Any) -> int:
        if sweep_id in (None, ""):
            raise gr.Error("Pick a sweep first.")
        return int(sweep_id)

    @friendly
    def do_cancel(sweep_id: Any) -> str:
        sid = _require(sweep_id)
        return f"Cancel requested for {len(studio.sweep_cancel(sid))} run(s) of sweep #{sid}."

    @friendly
    def do_resume(sweep_id: Any) -> str:
        sid = _require(sweep_id)
        ids = studio.sweep_resume(sid)
        return f"Queued again: {len(ids)} run(s)." if ids else "Nothing to resume: every run finished or is queued."

    @friendly
    def ask_delete(sweep_id: Any):
        sid = _require(sweep_id)
        w = studio.sweep(sid)
        return gr.update(visible=True), (f"⚠ Delete sweep **#{sid} {esc(w.name)}** with its {w.run_count} runs and "
                                         "their folders? This cannot be undone.")

    @friendly
    def do_delete(sweep_id: Any):
        sid = _require(sweep_id)
        removed = studio.sweep_delete(sid)
        return f"Deleted sweep #{sid} with its runs ({len(removed)} path(s) on disk).", gr.update(visible=False)

    outputs = [table, key, score_plot, mi_plot, parallel, point_a, point_b, timer]
    refresh.click(list_sweeps, [pick], [pick], api_name="list_sweeps")
    pick.change(show, [pick, key], outputs, api_name="sweep_summary")
    timer.tick(show, [pick, key], outputs, api_visibility="private")
    key.change(plot_key, [pick, key], [score_plot, mi_plot], api_visibility="private")
    compare_btn.click(compare, [pick, point_a, point_b], [compare_md], api_name="compare_grid_points")
    for btn, fn, name in ((cancel_btn, do_cancel, "cancel_sweep"), (resume_btn, do_resume, "resume_sweep")):
        btn.click(fn, [pick], [action], api_name=name).then(show, [pick, key], outputs, api_visibility="private")
    delete_btn.click(ask_delete, [pick], [confirm_box, confirm_md], api_visibility="private")
    keep_btn.click(lambda: gr.update(visible=False), None, [confirm_box], api_visibility="private")
    confirm_btn.click(do_delete, [pick], [action, confirm_box], api_name="delete_sweep").then(
        list_sweeps, [pick], [pick], api_visibility="private")
    return SimpleNamespace(pick=pick, list_sweeps=list_sweeps, table=table)

