"""HTML fragments as pure functions: router probability bars, the side-by-side inspection table, the
full view of one example, the live progress bar. All text is escaped (``escaping.esc``); nothing here
reads files."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from .escaping import esc
from .plots import expert_color

__all__ = ["esc"]  # the shared escaping rule, re-exported for the tabs


def fmt_time(t: float | None) -> str:
    """A local date and minute, or "–" for a time the platform cannot show (a hand-edited row)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t is not None else "–"
    except (OverflowError, OSError, ValueError, TypeError):
        return "–"


def fmt_duration(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


def fmt_score(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def prob_bars(probs: Sequence[float] | None, chosen: int | None) -> str:
    """One small horizontal bar per expert; the chosen expert's bar is outlined."""
    if not probs:
        return '<span class="pt-muted">no router</span>'
    out = ['<div class="pt-bars">']
    for e, p in enumerate(probs):
        w = max(0.0, min(1.0, float(p))) * 100
        mark = " pt-chosen" if e == chosen else ""
        out.append(
            f'<div class="pt-bar-row{mark}" title="expert {e}: p = {p:.3f}">'
            f'<span class="pt-bar-label">e{e}</span>'
            f'<span class="pt-bar-track"><span class="pt-bar-fill" style="width:{w:.1f}%;background:{expert_color(e)}">'
            f"</span></span><span class=\"pt-bar-val\">{p:.2f}</span></div>"
        )
    out.append("</div>")
    return "".join(out)


def expert_chip(e: int | None, forced: bool = False) -> str:
    if e is None:
        return '<span class="pt-muted">–</span>'
    label = f"e{e}" + (" (forced)" if forced else "")
    return f'<span class="pt-chip" style="background:{expert_color(e)}">{esc(label)}</span>'


def score_cell(score: float | None, correct: bool | None) -> str:
    if score is None:
        return '<span class="pt-muted">no gold</span>'
    cls = "pt-ok" if correct else "pt-bad"
    return f'<span class="{cls}">{score:.2f}</span>'


def _clip(s: str, n: int = 220) -> str:
    s = str(s or "")
    return s if len(s) <= n else s[: n - 1] + "…"


FLOOR_HEADER = "Frozen model (no adapter)"


def inspect_table(rows: Sequence[dict], baseline_label: str | None = None) -> str:
    """The side-by-side view: one row per input. Rows carry ``data-row`` so a click can open the
    full example. Optional columns appear when the rows have forced-expert or baseline answers."""
    if not rows:
        return ('<div class="pt-empty">No inputs inspected yet. Type inputs or draw examples from an '
                "evaluation set, then press <b>Inspect</b>.</div>")
    n_forced = max((len(r.get("forced") or []) for r in rows), default=0)
    has_base = any(r.get("baseline") for r in rows)
    has_floor = any(r.get("floor") for r in rows)
    head = ["#", "Input", "Expert", "Router p", "Conf.", "Generated answer", "Gold", "Score"]
    head += [f"Forced e{e}" for e in range(n_forced)]
    if has_base:
        head.append(f"Baseline: {baseline_label or 'other run'}")
    if has_floor:
        head.append(FLOOR_HEADER)
    out = ['<div class="pt-table-wrap"><table class="pt-table" id="pt-inspect-table"><thead><tr>']
    out += [f"<th>{esc(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for i, r in enumerate(rows):
        gold = r.get("gold") or []
        q = r.get("question", "")
        ctx = r.get("context") or ""
        src = f'<div class="pt-src">{esc(r.get("domain") or "")}</div>' if r.get("domain") else ""
        ctx_html = f'<div class="pt-ctx">{esc(_clip(ctx, 140))}</div>' if ctx else ""
        conf = r.get("confidence")
        cells = [
            f'<td class="pt-idx">{i + 1}</td>',
            f'<td class="pt-input">{src}<div>{esc(_clip(q))}</div>{ctx_html}</td>',
            f"<td>{expert_chip(r.get('expert'))}</td>",
            f"<td>{prob_bars(r.get('probs'), r.get('expert'))}</td>",
            f"<td>{'–' if conf is None else f'{conf:.2f}'}</td>",
            f'<td class="pt-answer">{esc(_clip(r.get("prediction", "")))}</td>',
            f'<td class="pt-gold">{esc(_clip(" | ".join(gold), 120)) if gold else "<span class=pt-muted>–</span>"}</td>',
            f"<td>{score_cell(r.get('score'), r.get('correct'))}</td>",
        ]
        forced = r.get("forced") or []
        for e in range(n_forced):
            f = forced[e] if e < len(forced) else None
            cells.append(f'<td class="pt-answer">{esc(_clip(f["text"], 120)) if f else ""}'
                         f'{"<br>" + score_cell(f.get("score"), f.get("correct")) if f and gold else ""}</td>')
        for column, shown in (("baseline", has_base), ("floor", has_floor)):
            if shown:
                b = r.get(column) or {}
                cells.append(f'<td class="pt-answer">{esc(_clip(b.get("text", ""), 120))}'
                             f'{"<br>" + score_cell(b.get("score"), b.get("correct")) if b and gold else ""}</td>')
        out.append(f'<tr data-row="{i}" title="click to see this example in full">{"".join(cells)}</tr>')
    out.append("</tbody></table></div>")
    return "".join(out)


# Clicking a row of the table triggers the component's click event with the row index.
TABLE_JS = """
element.addEventListener('click', (ev) => {
  const tr = ev.target.closest('tr[data-row]');
  if (!tr) return;
  element.querySelectorAll('tr.pt-selected').forEach(r => r.classList.remove('pt-selected'));
  tr.classList.add('pt-selected');
  trigger('click', {row: parseInt(tr.dataset.row)});
});
"""


def example_detail(row: dict | None, index: int | None = None) -> str:
    """Everything about one inspected input, untruncated."""
    if not row:
        return '<div class="pt-empty">Click a row of the table (or pick its number) to see it in full.</div>'
    gold = row.get("gold") or []
    parts = [f'<div class="pt-detail"><h4>Input #{(index or 0) + 1}'
             f'{" · " + esc(row["domain"]) if row.get("domain") else ""}</h4>']
    if row.get("context"):
        parts.append(f'<div class="pt-k">Context</div><div class="pt-v pt-pre">{esc(row["context"])}</div>')
    parts.append(f'<div class="pt-k">Question / input</div><div class="pt-v pt-pre">{esc(row.get("question"))}</div>')
    parts.append('<div class="pt-k">Router</div><div class="pt-v">')
    if row.get("probs"):
        parts.append(f"chosen {expert_chip(row.get('expert'))} · confidence {row.get('confidence', 0):.3f} · "
                     f"entropy {row.get('entropy') or 0:.3f} nats{prob_bars(row['probs'], row.get('expert'))}")
    else:
        parts.append('<span class="pt-muted">this method has no router</span>')
    parts.append("</div>")
    parts.append(f'<div class="pt-k">Generated answer</div><div class="pt-v pt-pre">{esc(row.get("prediction"))}</div>')
    parts.append(f'<div class="pt-k">Gold answer{"s" if len(gold) > 1 else ""}</div><div class="pt-v">'
                 + (" | ".join(esc(g) for g in gold) or '<span class="pt-muted">none</span>')
                 + f" · score {score_cell(row.get('score'), row.get('correct'))}</div>")
    for f in row.get("forced") or []:
        parts.append(f'<div class="pt-k">Forced {expert_chip(f["expert"], forced=True)}</div>'
                     f'<div class="pt-v pt-pre">{esc(f["text"])}'
                     f'{" · score " + score_cell(f.get("score"), f.get("correct")) if gold else ""}</div>')
    for column, title in (("baseline", "Baseline ({run})"), ("floor", FLOOR_HEADER)):
        b = row.get(column)
        if b:
            parts.append(f'<div class="pt-k">{esc(title.format(run=b.get("run")))}</div><div class="pt-v pt-pre">'
                         f'{esc(b.get("text"))}'
                         f'{" · score " + score_cell(b.get("score"), b.get("correct")) if gold else ""}</div>')
    if row.get("latency_s") is not None:
        parts.append(f'<div class="pt-muted">generation time of its batch: {row["latency_s"]:.2f} s</div>')
    parts.append("</div>")
    return "".join(parts)


STATUS_COLORS = {"QUEUED": "#6b7280", "RUNNING": "#2563eb", "FINISHED": "#059669", "FAILED": "#dc2626",
                 "KILLED": "#d97706"}


def status_badge(status: str) -> str:
    return f'<span class="pt-badge" style="background:{STATUS_COLORS.get(status, "#6b7280")}">{esc(status)}</span>'


def progress(status: str, step: int, total: int | None, elapsed_s: float | None, eta_s: float | None,
             name: str = "", run_id: int | None = None, note: str = "") -> str:
    """The live progress bar of a run: step / total, elapsed and time left."""
    frac = min(1.0, step / total) if total else 0.0
    label = f"run #{run_id} · {name}" if run_id is not None else name
    eta = "" if status != "RUNNING" else f" · about {fmt_duration(eta_s)} left"
    return (
        f'<div class="pt-progress" data-status="{esc(status)}">'
        f'<div class="pt-progress-head">{status_badge(status)} <b>{esc(label)}</b> '
        f'<span class="pt-progress-text">step {step} / {total or "?"} · {frac:.0%} · '
        f"elapsed {fmt_duration(elapsed_s)}{eta}</span></div>"
        f'<div class="pt-progress-track"><div class="pt-progress-fill" style="width:{frac * 100:.1f}%"></div></div>'
        + (f'<div class="pt-note">{esc(note)}</div>' if note else "")
        + "</div>"
    )


def no_run() -> str:
    return ('<div class="pt-progress"><span class="pt-muted">No run selected. Set up a run on the left and '
            "press <b>Launch</b>; a run started from another tab or before a refresh appears here too.</span></div>")


CSS = """
.pt-muted { color: var(--body-text-color-subdued); font-size: 0.9em; }
.pt-empty { padding: 18px; color: var(--body-text-color-subdued); border: 1px dashed var(--border-color-primary);
  border-radius: 8px; text-align: center; }
.pt-table-wrap { overflow-x: auto; max-height: 640px; overflow-y: auto; border: 1px solid var(--border-color-primary);
  border-radius: 8px; }
.pt-table { border-collapse: collapse; width: 100%; font-size: 13px; }
.pt-table th { position: sticky; top: 0; background: var(--background-fill-secondary); text-align: left;
  padding: 6px 8px; border-bottom: 1px solid var(--border-color-primary); white-space: nowrap; z-index: 1; }
.pt-table td { padding: 6px 8px; border-bottom: 1px solid var(--border-color-primary); vertical-align: top; }
.pt-table tbody tr { cursor: pointer; }
.pt-table tbody tr:hover { background: var(--background-fill-secondary); }
.pt-table tbody tr.pt-selected td { background: color-mix(in srgb, #4f46e5 14%, transparent); }
.pt-idx { color: var(--body-text-color-subdued); }
.pt-input { min-width: 220px; max-width: 380px; }
.pt-answer { min-width: 140px; max-width: 300px; }
.pt-gold { max-width: 200px; }
.pt-src { font-size: 11px; color: var(--body-text-color-subdued); text-transform: uppercase; letter-spacing: .03em; }
.pt-ctx { font-size: 11px; color: var(--body-text-color-subdued); margin-top: 2px; }
.pt-bars { width: 150px; }
.pt-detail .pt-bars { width: 320px; margin-top: 4px; }
.pt-bar-row { display: flex; align-items: center; gap: 4px; font-size: 11px; line-height: 14px; }
.pt-bar-label { width: 18px; color: var(--body-text-color-subdued); }
.pt-bar-track { flex: 1; height: 8px; background: var(--background-fill-secondary); border-radius: 4px;
  overflow: hidden; min-width: 60px; }
.pt-bar-fill { display: block; height: 100%; border-radius: 4px; }
.pt-bar-val { width: 30px; text-align: right; font-variant-numeric: tabular-nums; }
.pt-chosen .pt-bar-label, .pt-chosen .pt-bar-val { font-weight: 700; color: var(--body-text-color); }
.pt-chip { text-transform: none; color: white; border-radius: 10px; padding: 1px 8px; font-size: 12px; font-weight: 600; white-space: nowrap; }
.pt-ok { color: #059669; font-weight: 700; }
.pt-bad { color: #dc2626; font-weight: 700; }
.pt-badge { color: white; border-radius: 4px; padding: 1px 6px; font-size: 11px; font-weight: 700; }
.pt-progress { padding: 10px 12px; border: 1px solid var(--border-color-primary); border-radius: 8px; }
.pt-progress-head { margin-bottom: 6px; }
.pt-progress-text { color: var(--body-text-color-subdued); margin-left: 6px; }
.pt-progress-track { height: 12px; background: var(--background-fill-secondary); border-radius: 6px; overflow: hidden; }
.pt-progress-fill { height: 100%; background: linear-gradient(90deg, #4f46e5, #7c3aed); transition: width .5s; }
.pt-progress[data-status="FINISHED"] .pt-progress-fill { background: #059669; }
.pt-progress[data-status="FAILED"] .pt-progress-fill { background: #dc2626; }
.pt-progress[data-status="KILLED"] .pt-progress-fill { background: #d97706; }
.pt-note { margin-top: 6px; font-size: 0.9em; white-space: pre-wrap; }
.pt-detail h4 { margin: 0 0 8px 0; }
.pt-k { font-size: 11px; text-transform: uppercase; color: var(--body-text-color-subdued); margin-top: 8px; }
.pt-v { margin-top: 2px; }
.pt-pre { white-space: pre-wrap; }
.pt-params { font-size: 14px; }
.pt-params b { font-size: 18px; }
.invalid textarea, .invalid input { border-color: #dc2626 !important; box-shadow: 0 0 0 1px #dc2626 !important; }
.pt-cli textarea { font-family: ui-monospace, monospace; font-size: 12px; }
#pt-log textarea { font-family: ui-monospace, monospace; font-size: 12px; }
"""
