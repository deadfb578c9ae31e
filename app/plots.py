"""Plotly figures as pure functions of plain data (lists, dicts); no I/O, no state.

Every builder returns a figure even for empty input (with a note saying what will appear), so a
page never shows a broken plot. Expert ``i`` has the same colour in every figure. Names that come from
users or files (runs, data sets, inputs) are escaped: Plotly renders its labels as a subset of HTML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from ptmoe_core.routing_summary import routing_counts

from .escaping import esc

EXPERT_COLORS = ["#4f46e5", "#e11d48", "#059669", "#d97706", "#0891b2", "#7c3aed", "#65a30d", "#db2777",
                 "#2563eb", "#ea580c", "#0d9488", "#9333ea"]
RUN_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf"]
HEIGHT = 300


def expert_color(i: int) -> str:
    return EXPERT_COLORS[i % len(EXPERT_COLORS)]


def expert_name(i: int | None) -> str:
    return "no router" if i is None else f"expert {i}"


def _layout(fig: go.Figure, title: str, x: str = "", y: str = "", height: int = HEIGHT, legend: bool = True) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 14}},
        height=height,
        margin={"l": 50, "r": 15, "t": 40, "b": 40},
        template="plotly_white",
        showlegend=legend,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
        xaxis_title=x,
        yaxis_title=y,
    )
    return fig


def empty(title: str, note: str, height: int = HEIGHT) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=note, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 13, "color": "#6b7280"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=height, legend=False)


# ---------------------------------------------------------------------------------------------
# Training (Train tab: one run; Runs tab: several overlaid)


def loss_curve(steps: Sequence[int], losses: Sequence[float], eval_steps: Sequence[int] = (),
               eval_losses: Sequence[float] = (), title: str = "Loss") -> go.Figure:
    """Training loss per step, with a lightly smoothed line, and evaluation loss if any."""
    if not steps:
        return empty(title, "Appears after the first step.")
    fig = go.Figure()
    fig.add_scatter(x=list(steps), y=list(losses), mode="lines", name="train loss",
                    line={"color": "#93c5fd", "width": 1})
    if len(losses) >= 5:
        fig.add_scatter(x=list(steps), y=ema(losses), mode="lines", name="smoothed",
                        line={"color": "#1d4ed8", "width": 2})
    if eval_steps:
        fig.add_scatter(x=list(eval_steps), y=list(eval_losses), mode="lines+markers", name="eval loss",
                        line={"color": "#dc2626", "width": 2})
    return _layout(fig, title, "step", "loss")


def ema(values: Sequence[float], alpha: float = 0.2) -> list[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None else alpha * v + (1 - alpha) * acc
        out.append(acc)
    return out


def eval_curves(series: Mapping[str, tuple[Sequence[int], Sequence[float]]], metric: str = "score",
                title: str = "Evaluation") -> go.Figure:
    """One line per data set (``name -> (steps, values)``), e.g. F1 or accuracy at each evaluation."""
    series = {k: v for k, v in series.items() if v[0]}
    if not series:
        return empty(title, "Appears after the first evaluation.")
    fig = go.Figure()
    for i, (name, (x, y)) in enumerate(sorted(series.items())):
        fig.add_scatter(x=list(x), y=list(y), mode="lines+markers", name=esc(name),
                        line={"color": RUN_COLORS[i % len(RUN_COLORS)], "width": 3 if name == "macro" else 1.5})
    fig.update_yaxes(rangemode="tozero")
    return _layout(fig, title, "step", metric)


def expert_load_area(steps: Sequence[int], loads: Sequence[Sequence[float]], title: str = "Expert load") -> go.Figure:
    """Stacked area: the fraction of each batch routed to each expert, step by step."""
    if not steps or not loads or not any(loads):
        return empty(title, "For routed methods (PT-MoE, SMoP).")
    n = max(len(r) for r in loads)
    fig = go.Figure()
    for e in range(n):
        y = [r[e] if e < len(r) else 0.0 for r in loads]
        fig.add_scatter(x=list(steps), y=y, mode="lines", stackgroup="load", name=expert_name(e),
                        line={"color": expert_color(e), "width": 0.5}, fillcolor=expert_color(e))
    fig.update_yaxes(range=[0, 1])
    fig = _layout(fig, title, "step", "share of batch")
    fig.update_layout(legend={"traceorder": "normal"})
    return fig


def router_entropy(steps: Sequence[int], entropy: Sequence[float], n_experts: int | None = None,
                   title: str = "Router entropy") -> go.Figure:
    """Batch-mean entropy of the router distribution; the dashed line is the uniform maximum ln N."""
    if not steps:
        return empty(title, "For routed methods (PT-MoE, SMoP).")
    fig = go.Figure()
    fig.add_scatter(x=list(steps), y=list(entropy), mode="lines", name="entropy", line={"color": "#7c3aed"})
    if n_experts and n_experts > 1:
        fig.add_hline(y=math.log(n_experts), line_dash="dash", line_color="#9ca3af",
                      annotation_text=f"uniform (ln {n_experts})", annotation_position="bottom right")
    fig.update_yaxes(rangemode="tozero")
    return _layout(fig, title, "step", "nats", legend=False)


def overlay_curves(runs: Mapping[str, tuple[Sequence[int], Sequence[float]]], title: str, y: str,
                   smooth: bool = True) -> go.Figure:
    """The same metric of several runs on one plot (``label -> (steps, values)``)."""
    runs = {k: v for k, v in runs.items() if v[0]}
    if not runs:
        return empty(title, "Select runs above to overlay their curves.")
    fig = go.Figure()
    for i, (label, (x, vals)) in enumerate(runs.items()):
        ys = ema(vals) if smooth and len(vals) >= 5 else list(vals)
        fig.add_scatter(x=list(x), y=ys, mode="lines" if len(x) > 1 else "markers", name=esc(label),
                        line={"color": RUN_COLORS[i % len(RUN_COLORS)]})
    if not smooth:  # scores: start the axis at 0 so a flat 0 is not drawn mid-plot
        fig.update_yaxes(rangemode="tozero")
    return _layout(fig, title, "step", y)


# ---------------------------------------------------------------------------------------------
# Inspection (rows = inputs)


def prob_heatmap(probs: Sequence[Sequence[float]], chosen: Sequence[int | None], labels: Sequence[str],
                 title: str = "Router probabilities") -> go.Figure:
    """Inputs × experts; rows grouped by the chosen expert (then by confidence), so the blocks show
    which inputs each expert took and how sure the router was."""
    rows = [(c if c is not None else -1, -max(p), i) for i, (p, c) in enumerate(zip(probs, chosen, strict=True)) if p]
    if not rows:
        return empty(title, "Run an inspection of a routed adapter (PT-MoE, SMoP) to see its router.")
    rows.sort()
    order = [i for _, _, i in rows]
    n = max(len(probs[i]) for i in order)
    z = [list(probs[i]) + [0.0] * (n - len(probs[i])) for i in order]
    ylab = [f"#{i + 1} → e{chosen[i]} · {esc(_short(labels[i], 40))}" for i in order]
    fig = go.Figure(go.Heatmap(
        z=z, x=[expert_name(e) for e in range(n)], y=ylab, zmin=0, zmax=1, colorscale="Blues",
        colorbar={"title": "p", "thickness": 12},
        hovertemplate="%{y}<br>%{x}: p=%{z:.3f}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", tickfont={"size": 10})
    height = max(HEIGHT, min(900, 60 + 18 * len(order)))
    return _layout(fig, title, "expert", "", height=height, legend=False)


def confidence_hist(confidence: Sequence[float | None], correct: Sequence[bool | None],
                    title: str = "Router confidence: correct vs wrong") -> go.Figure:
    """Histogram of the chosen expert's probability, split by whether the answer scored as correct."""
    pairs = [(c, ok) for c, ok in zip(confidence, correct, strict=True) if c is not None]
    if not pairs:
        return empty(title, "Needs a routed adapter; correctness needs gold answers.")
    fig = go.Figure()
    groups = [("correct", True, "#059669"), ("wrong", False, "#dc2626"), ("no gold answer", None, "#9ca3af")]
    for name, flag, color in groups:
        xs = [c for c, ok in pairs if ok is flag]
        if xs:
            fig.add_histogram(x=xs, name=f"{name} ({len(xs)})", marker_color=color, opacity=0.75,
                              xbins={"start": 0, "end": 1.0001, "size": 0.05})
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(range=[0, 1])
    return _layout(fig, title, "confidence (p of chosen expert)", "inputs")


def usage_matrix(groups: Sequence[str], experts: Sequence[int | None], n_experts: int,
                 title: str = "Domain × expert usage") -> go.Figure:
    """Share of each group's inputs (a domain, or an evaluation set) routed to each expert."""
    counts = routing_counts([str(g) for g in groups], experts, n_experts)
    return usage_heatmap(counts, n_experts, title, "Needs a routed adapter (PT-MoE, SMoP).")


def usage_heatmap(counts: Mapping[str, Sequence[int]], n_experts: int, title: str, note: str,
                  subtitle: str = "") -> go.Figure:
    """Groups × experts from a count table (``group -> count per expert``): each row's shares, with
    the counts written in the cells. Group names come from data files, so they are escaped."""
    names = sorted(g for g, row in counts.items() if sum(row))
    if not names or n_experts < 1:
        return empty(title, note)
    rows = [list(counts[g]) + [0] * (n_experts - len(counts[g])) for g in names]
    z = [[c / sum(r) for c in r] for r in rows]
    text = [[f"{c}/{sum(r)}" for c in r] for r in rows]
    fig = go.Figure(go.Heatmap(
        z=z, x=[expert_name(e) for e in range(n_experts)], y=[esc(g) for g in names], zmin=0, zmax=1,
        colorscale="Purples", text=text, texttemplate="%{text}", colorbar={"title": "share", "thickness": 12},
        hovertemplate="%{y} → %{x}: %{z:.0%} (%{text})<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    fig = _layout(fig, title, "expert", "", height=max(HEIGHT, 80 + 40 * len(names)), legend=False)
    if subtitle:
        fig.add_annotation(text=subtitle, showarrow=False, x=0, y=1.0, xref="paper", yref="paper", xanchor="left",
                           yanchor="bottom", font={"size": 12, "color": "#374151"})
        fig.update_layout(margin={"t": 60})
    return fig


def domain_mi_curve(steps: Sequence[int], bits: Sequence[float], max_bits: float, window: int,
                    title: str = "I(domain; expert) while training") -> go.Figure:
    """Mutual information between the domain of a training example and its expert, in bits, over a
    sliding window of steps: it rises as experts specialise and stays at 0 when routing ignores the
    domain (collapse, or noise). The dashed line is its ceiling log2(min(domains, experts))."""
    if not steps:
        return empty(title, "For routed methods (PT-MoE, SMoP): appears after the first step.")
    fig = go.Figure()
    fig.add_scatter(x=list(steps), y=list(bits), mode="lines", name=f"last {window} steps",
                    line={"color": "#0f766e", "width": 2})
    if max_bits > 0:
        fig.add_hline(y=max_bits, line_dash="dash", line_color="#9ca3af",
                      annotation_text=f"ceiling {max_bits:.2g} bit{'' if max_bits == 1 else 's'}",
                      annotation_position="bottom right")
    fig.update_yaxes(range=[0, max(1.0, max_bits) * 1.05])
    return _layout(fig, title, "step", f"bits (last {window} steps)", legend=False)


def usage_bars(groups: Sequence[str], experts: Sequence[int | None], n_experts: int,
               title: str = "Expert usage per evaluation set") -> go.Figure:
    """Stacked bars: for each set, how many of its inputs went to each expert."""
    pairs = [(g, e) for g, e in zip(groups, experts, strict=True) if e is not None]
    if not pairs or n_experts < 1:
        return empty(title, "Needs a routed adapter (PT-MoE, SMoP).")
    names = sorted({g for g, _ in pairs})
    fig = go.Figure()
    for e in range(n_experts):
        fig.add_bar(x=[esc(n) for n in names], y=[sum(1 for g, x in pairs if g == n and x == e) for n in names],
                    name=expert_name(e), marker_color=expert_color(e))
    fig.update_layout(barmode="stack")
    fig = _layout(fig, title, "", "inputs")
    fig.update_layout(legend={"traceorder": "normal"})
    return fig


def projection_scatter(points: Sequence[Sequence[float]], experts: Sequence[int | None], labels: Sequence[str],
                       explained: Sequence[float] = (), title: str = "Router inputs (PCA, 2-D)") -> go.Figure:
    """2-D projection of the router's input vectors, one point per input, coloured by chosen expert."""
    if len(points) < 2:
        return empty(title, "Needs at least two inputs of a routed adapter.")
    fig = go.Figure()
    groups = sorted({e for e in experts if e is not None}) or [None]
    for e in groups:
        idx = [i for i, x in enumerate(experts) if x == e]
        fig.add_scatter(
            x=[points[i][0] for i in idx], y=[points[i][1] if len(points[i]) > 1 else 0.0 for i in idx],
            mode="markers", name=expert_name(e), text=[f"#{i + 1} {esc(_short(labels[i], 60))}" for i in idx],
            hovertemplate="%{text}<extra></extra>",
            marker={"size": 9, "color": expert_color(e) if e is not None else "#6b7280", "line": {"width": 0.5,
                                                                                              "color": "white"}},
        )
    xl = f"PC1 ({explained[0]:.0%} of variance)" if len(explained) > 0 else "PC1"
    yl = f"PC2 ({explained[1]:.0%})" if len(explained) > 1 else "PC2"
    return _layout(fig, title, xl, yl)


def _short(s: str, n: int) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"
