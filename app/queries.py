"""Storage → plain data the views and plots take: run labels, table rows, curves, score tables.

Reads only; every function takes the ``Storage`` and returns lists / dicts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ptmoe_core.routing_summary import collapsed_expert, mutual_information_bits_from_counts
from storage import domain_routing

from . import views

log = logging.getLogger(__name__)

ACTIVE = ("QUEUED", "RUNNING")
RUN_COLUMNS = ["ID", "Name", "Status", "Method", "Model", "Data", "Params", "Best score", "Steps", "Duration",
               "Created"]


def run_label(run: Any) -> str:
    return f"#{run.id} · {run.name} ({run.method})"


def parse_run_id(value: Any) -> int | None:
    """A run id from a dropdown label ("#12 · name …"), a number or a numeric string."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    s = str(value).strip().lstrip("#")
    head = s.split("·")[0].split()[0] if s else ""
    try:
        return int(head)
    except ValueError:
        return None


def run_choices(storage: Any, statuses: Sequence[str] | None = None, need_adapter: bool = False,
                hide_experiments: Sequence[str] = ()) -> list[tuple[str, int]]:
    runs = [r for r in storage.list_runs(status=list(statuses) if statuses else None)
            if r.experiment not in hide_experiments]
    if need_adapter:
        runs = [r for r in runs if r.adapter_path]
    return [(run_label(r), r.id) for r in runs]


def inspectable_choices(storage: Any) -> list[tuple[str, int]]:
    """Runs with something to load: finished ones with their adapter, stopped ones with a checkpoint."""
    out = []
    for r in storage.list_runs(status=["FINISHED", "KILLED"]):
        if r.adapter_path or any(c.exists for c in storage.checkpoints(r.id)):
            out.append((run_label(r) if r.status == "FINISHED" else f"{run_label(r)} — stopped", r.id))
    return out


def queue_full(storage: Any, limits: Any) -> str | None:
    """Why a shared studio takes no more runs now (``limits.queued_runs`` already waiting), or None."""
    if limits is None:
        return None
    waiting = len(storage.list_runs(status="QUEUED"))
    if waiting < limits.queued_runs:
        return None
    return (f"{waiting} runs are already waiting (demo mode queues at most {limits.queued_runs}); "
            "try again when one has started")


def watched_run(storage: Any) -> int | None:
    """The run a fresh page should show: the newest running one, else the newest queued, else the newest."""
    for st in ("RUNNING", "QUEUED"):
        runs = storage.list_runs(status=st, limit=1)
        if runs:
            return runs[0].id
    runs = storage.list_runs(limit=1)
    return runs[0].id if runs else None


def score_of(scores: dict[str, Any] | None) -> float | None:
    """The headline number of one data set's scores: F1 (which equals accuracy on number tasks)."""
    if not scores:
        return None
    for k in ("f1", "accuracy", "em"):
        v = scores.get(k)
        if isinstance(v, (int, float)) and math.isfinite(v):
            return float(v)
    return None


def best_score(storage: Any, run_id: int) -> float | None:
    hist = storage.metric_history(run_id, keys=["eval/macro/f1"]).get("eval/macro/f1")
    vals = [v for v in (hist.values if hist else []) if v is not None and math.isfinite(v)]
    return max(vals) if vals else None


def run_rows(storage: Any, *, status: str | None = None, method: str | None = None, search: str | None = None,
             model: str | None = None, now: float | None = None, hide_experiments: Sequence[str] = ()
             ) -> list[list[Any]]:
    now = now or time.time()
    runs = storage.list_runs(status=status or None, method=method or None, search=search or None)
    rows = []
    for r in runs:
        if (model and model.lower() not in r.base_model.lower()) or r.experiment in hide_experiments:
            continue
        try:
            rows.append(_run_row(storage, r, now))
        except Exception:  # one unreadable row (a hand-edited database) must not hide the others
            log.warning("run %s: cannot list it fully", r.id, exc_info=True)
            rows.append([r.id, r.name, str(r.status), r.method, r.base_model, "", "", "", "?", "–", "–"])
    return rows


def _run_row(storage: Any, r: Any, now: float) -> list[Any]:
    best = best_score(storage, r.id) if r.status == "FINISHED" or r.step else None
    return [
        r.id, r.name, str(r.status), r.method, r.base_model, ", ".join(r.data_specs),
        r.trainable_params if r.trainable_params is not None else "",
        "" if best is None else round(best, 4),
        f"{r.step}/{r.total_steps or '?'}",
        views.fmt_duration(r.duration_s(now)),
        views.fmt_time(r.created_at),
    ]


@dataclass
class Curves:
    """Everything the Train tab's live plots need for one run."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    eval_scores: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    load_steps: list[int] = field(default_factory=list)
    loads: list[list[float]] = field(default_factory=list)
    entropy_steps: list[int] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)  # timestamps of the loss points
    routing: domain_routing.DomainRouting = field(default_factory=domain_routing.DomainRouting)


def curves(storage: Any, run_id: int) -> Curves:
    hist = storage.metric_history(run_id)
    c = Curves(routing=domain_routing.from_history(hist))
    if "loss" in hist:
        c.steps, c.loss, c.elapsed = hist["loss"].steps, hist["loss"].values, hist["loss"].timestamps
    if "eval/loss" in hist:
        c.eval_steps, c.eval_loss = hist["eval/loss"].steps, hist["eval/loss"].values
    for key, s in hist.items():
        if key.startswith("eval/") and key.endswith("/f1"):
            c.eval_scores[key[len("eval/"):-len("/f1")]] = (s.steps, s.values)
    if "router_entropy" in hist:
        c.entropy_steps, c.entropy = hist["router_entropy"].steps, hist["router_entropy"].values
    load_keys = sorted((k for k in hist if k.startswith("expert_load/")), key=lambda k: int(k.split("/")[1]))
    if load_keys:
        base = hist[load_keys[0]]
        c.load_steps = base.steps
        cols = [hist[k].values for k in load_keys]
        c.loads = [[col[i] if i < len(col) else 0.0 for col in cols] for i in range(len(base.steps))]
    return c


ROUTING_WINDOW = 10  # steps per estimate of I(domain; expert): 40 examples at the CPU default batch of 4


@dataclass
class RoutingView:
    """Routing by domain as the Train tab shows it: I(domain; expert) over a sliding window of steps,
    and the domain × expert counts of the latest window."""

    n_experts: int = 0
    steps: list[int] = field(default_factory=list)
    bits: list[float] = field(default_factory=list)  # bits[i]: the window ending at steps[i]
    max_bits: float = 0.0  # log2(min(domains, experts)): every domain on experts of its own
    last: dict[str, list[int]] = field(default_factory=dict)
    last_steps: tuple[int, int] | None = None  # first and last step of the latest window
    collapsed: int | None = None  # the latest window's collapse verdict (routing_summary.collapsed_expert)

    def subtitle(self) -> str:
        if self.last_steps is None:
            return ""
        a, b = self.last_steps
        text = f"steps {a}–{b}: I(domain; expert) = {self.bits[-1]:.2f} bits"
        if self.collapsed is not None:
            text += f" · collapsed onto expert {self.collapsed}"
        return text


def routing_view(r: domain_routing.DomainRouting, window: int = ROUTING_WINDOW) -> RoutingView:
    if not r.steps or r.n_experts < 1:
        return RoutingView(n_experts=r.n_experts)
    bits = [mutual_information_bits_from_counts(r.window(window, end=i + 1)) for i in range(len(r.steps))]
    last = r.window(window)
    return RoutingView(
        n_experts=r.n_experts, steps=list(r.steps), bits=bits,
        max_bits=math.log2(min(len(r.domains), r.n_experts)) if r.domains else 0.0, last=last,
        last_steps=(r.steps[max(0, len(r.steps) - window)], r.steps[-1]), collapsed=collapsed_expert(last),
    )


def eta_seconds(run: Any, now: float | None = None, step_times: Sequence[float] = ()) -> float | None:
    """Time left at the pace of the steps so far (the timestamps of the loss points, so model
    loading and evaluations do not count as step time); None before the first step."""
    now = now or time.time()
    if run.started_at is None or not run.step or not run.total_steps:
        return None
    left = max(0, run.total_steps - run.step)
    if len(step_times) >= 3:
        per_step = (step_times[-1] - step_times[0]) / (len(step_times) - 1)
        return per_step * left
    elapsed = (run.ended_at or now) - run.started_at
    return elapsed / run.step * left


def final_scores(storage: Any, run_id: int) -> dict[str, float]:
    """Dataset -> headline score at the run's last evaluated step."""
    evals = storage.evaluations(run_id)
    if not evals:
        return {}
    last = max(e.step for e in evals)
    out = {}
    for e in evals:
        if e.step == last:
            v = score_of(e.scores) if e.scores else (e.f1 if e.f1 is not None else e.accuracy)
            if v is not None:
                out[e.dataset] = v
    return out


def scores_table(storage: Any, run_ids: Sequence[int], floors: Sequence[tuple[str, dict[str, float]]] = ()
                 ) -> tuple[list[str], list[list[Any]]]:
    """The paper's layout: one row per run (method, parameters), one column per data set, then the
    macro average. Values are the final evaluation's F1 (accuracy for number tasks). ``floors``:
    (label, scores) rows of the frozen model, listed last with no trainable parameters."""
    rows, sets = [], set()
    for rid in run_ids:
        r = storage.get_run(rid)
        sc = final_scores(storage, rid)
        rows.append(([f"#{r.id} {r.name}", r.method, r.trainable_params], sc))
    rows += [([label, "frozen", 0], sc) for label, sc in floors]
    for _, sc in rows:
        sets.update(k for k in sc if k != "macro")
    cols = sorted(sets)
    header = ["Run", "Method", "Params", *cols, "Macro"]
    return header, [[*head, *[sc.get(c) for c in cols], sc.get("macro")] for head, sc in rows]


def scores_table_html(header: list[str], body: list[list[Any]]) -> str:
    if not body:
        return '<div class="pt-empty">Select runs to compare their final scores per data set.</div>'
    n_fixed = 3
    best = {}
    for j in range(n_fixed, len(header)):
        vals = [row[j] for row in body if isinstance(row[j], (int, float))]
        best[j] = max(vals) if vals and max(vals) > min(vals) else None  # a tie has no winner
    out = ['<div class="pt-table-wrap"><table class="pt-table pt-scores"><thead><tr>']
    out += [f"<th>{views.esc(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for row in body:
        cells = []
        for j, v in enumerate(row):
            if j == 2:
                cells.append(f"<td>{'–' if v is None else f'{v:,}'}</td>")
            elif j >= n_fixed:
                if v is None:
                    cells.append('<td class="pt-muted">–</td>')
                else:
                    b = best.get(j) is not None and v == best[j] and len(body) > 1
                    cells.append(f"<td>{'<b>' if b else ''}{100 * v:.1f}{'</b>' if b else ''}</td>")
            else:
                cells.append(f"<td>{views.esc(v)}</td>")
        out.append(f"<tr>{''.join(cells)}</tr>")
    out.append("</tbody></table></div>")
    out.append('<div class="pt-muted">Final evaluation, F1 × 100 (accuracy for number tasks); best per column in bold.</div>')
    return "".join(out)
