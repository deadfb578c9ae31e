"""Plots of the quality benchmark (plotly): learning curves, router entropy and expert usage per domain.

Figures are exported as PNG through kaleido (which drives a local Chrome/Chromium, e.g. Debian's
``/usr/bin/chromium``); ``fmt="html"`` writes HTML pages instead (no browser needed; they load ``plotly.min.js`` from
their own folder, so they work offline).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39"]


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average (the first points average what exists so far)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def learning_curves(results: Sequence[dict[str, Any]], title: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, r in enumerate(results):
        hist = r["history"]
        if not hist:
            continue
        steps = [h["step"] for h in hist]
        loss = [h["loss"] for h in hist]
        window = max(1, len(loss) // 10)
        fig.add_trace(go.Scatter(x=steps, y=smooth(loss, window), mode="lines", name=r["label"],
                                 line={"color": COLORS[i % len(COLORS)], "width": 2}))
    fig.update_layout(title=title, xaxis_title="optimizer step",
                      yaxis_title="training loss (answer tokens, moving average)", template="plotly_white",
                      legend={"orientation": "v"})
    return fig


def router_entropy(results: Sequence[dict[str, Any]]):
    """Batch-mean router entropy during training, with ln N (uniform routing) marked per run."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, r in enumerate(results):
        pts = [(h["step"], h["router_entropy"]) for h in r["history"] if h.get("router_entropy") is not None]
        if not pts:
            continue
        color = COLORS[i % len(COLORS)]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines", name=r["label"],
                                 line={"color": color, "width": 2}))
        n = r["method"]["n_experts"]
        if n > 1:
            fig.add_trace(go.Scatter(x=[pts[0][0], pts[-1][0]], y=[math.log(n)] * 2, mode="lines",
                                     name=f"ln {n} (uniform)", line={"color": color, "dash": "dot", "width": 1},
                                     showlegend=False))
    fig.update_layout(title="Router entropy during training (dotted: uniform routing, ln N)",
                      xaxis_title="optimizer step", yaxis_title="entropy of p (nats)", template="plotly_white")
    return fig


def expert_usage(results: Sequence[dict[str, Any]]):
    """One stacked bar chart per routed run: for each evaluation data set, the share of its examples
    routed to each expert."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    routed = [r for r in results if r.get("expert_load")]
    if not routed:
        return None
    cols = min(3, len(routed))
    rows = math.ceil(len(routed) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[r["label"] for r in routed],
                        vertical_spacing=0.28 / rows + 0.08, horizontal_spacing=0.06)
    shown: set[int] = set()
    for k, r in enumerate(routed):
        sets = list(r["expert_load"])
        n = max(len(v) for v in r["expert_load"].values())
        for e in range(n):
            fig.add_trace(
                go.Bar(x=sets, y=[r["expert_load"][s][e] if e < len(r["expert_load"][s]) else 0 for s in sets],
                       name=f"expert {e}", marker_color=COLORS[e % len(COLORS)], showlegend=e not in shown,
                       legendgroup=f"e{e}"),
                row=k // cols + 1, col=k % cols + 1,
            )
            shown.add(e)
    fig.update_layout(barmode="stack", template="plotly_white", height=330 * rows + 120,
                      title="Expert usage per evaluation data set (share of examples routed to each expert)")
    fig.update_yaxes(range=[0, 1])
    fig.update_xaxes(tickangle=45, tickfont={"size": 9})
    return fig


def scores_bars(results: Sequence[dict[str, Any]]):
    """In-domain vs out-of-domain macro score per run, and QA F1."""
    import plotly.graph_objects as go

    labels = [r["label"] for r in results]
    fig = go.Figure()
    for key, name, color in (("in_domain", "in-domain macro", COLORS[0]), ("out_of_domain", "out-of-domain macro", COLORS[1]),
                             ("qa_f1", "QA F1 (all QA sets)", COLORS[2])):
        fig.add_trace(go.Bar(x=labels, y=[100 * r["summary"][key] for r in results], name=name, marker_color=color))
    fig.update_layout(barmode="group", template="plotly_white", yaxis_title="score (%)",
                      title="Scores per run (F1 on QA/text sets, accuracy on math sets)")
    fig.update_xaxes(tickangle=30)
    return fig


def seed_scores(runs: dict[str, list[dict[str, float]]]):
    """Each seed's QA F1 and in-/out-of-domain macro score per run (a dot each), with the mean as a bar:
    how far apart the methods are next to how far apart one method's seeds are. None without repeats."""
    if not runs:
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    keys = (("qa_f1", "QA F1 (all QA sets)"), ("in_domain", "in-domain macro"), ("out_of_domain", "out-of-domain macro"))
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=[t for _, t in keys], shared_yaxes=True)
    labels = list(runs)
    for col, (key, _) in enumerate(keys, start=1):
        means = [100 * sum(s[key] for s in runs[lab]) / len(runs[lab]) for lab in labels]
        fig.add_trace(go.Bar(x=labels, y=means, marker_color=COLORS[0], opacity=0.35, name="mean over seeds",
                             showlegend=col == 1), row=1, col=col)
        xs = [lab for lab in labels for _ in runs[lab]]
        ys = [100 * s[key] for lab in labels for s in runs[lab]]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker={"color": COLORS[1], "size": 8},
                                 name="one seed", showlegend=col == 1), row=1, col=col)
    fig.update_layout(template="plotly_white", title="Score per training seed (same data and questions)",
                      yaxis_title="score (%)")
    fig.update_xaxes(tickangle=30)
    return fig


def find_browser() -> str | None:
    """A Chrome/Chromium for kaleido: $BROWSER_PATH, else one on PATH (Debian: /usr/bin/chromium)."""
    if os.environ.get("BROWSER_PATH"):
        return os.environ["BROWSER_PATH"]
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def export(figures: dict[str, Any], out_dir: Path, fmt: str = "png") -> tuple[dict[str, Path], str | None]:
    """Write ``{stem: figure}`` to ``out_dir``; returns ({stem: path}, note). PNG export that fails
    (no browser, kaleido missing) falls back to self-contained HTML and says why in the note."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {k: f for k, f in figures.items() if f is not None}
    note = None
    if fmt == "png":
        try:
            import plotly.io as pio

            browser = find_browser()
            if browser:
                os.environ.setdefault("BROWSER_PATH", browser)
            paths = {k: out_dir / f"{k}.png" for k in figures}
            pio.write_images(list(figures.values()), [str(p) for p in paths.values()],
                             width=[1000] * len(paths), height=[_height(f) for f in figures.values()])
            return paths, None
        except Exception as e:  # no Chrome, no kaleido, a sandbox that forbids it: HTML still works offline
            note = f"PNG export failed ({type(e).__name__}: {e}); the plots are written as HTML instead."
    from plotly.offline import get_plotlyjs

    (out_dir / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")  # one copy, next to the pages
    paths = {}
    for k, f in figures.items():
        p = out_dir / f"{k}.html"
        f.write_html(str(p), include_plotlyjs="directory", full_html=True)
        paths[k] = p
    return paths, note


def _height(fig) -> int:
    h = fig.layout.height
    return int(h) if h else 500
