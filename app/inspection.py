"""Inspection: run an adapter on a handful of inputs and lay out, per input, what the router did and
what came out — plus the analyses the Inspect tab plots (a 2-D projection of the router inputs).

The model work is the engine's (``ptmoe_core.answer``, ``metrics.score``); this module
only arranges the results into rows. It never loads anything itself: the caller passes the adapter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ptmoe_core.eval_record import EvalRecord, score_fields
from ptmoe_core.routing_summary import collapsed_expert, mutual_information_bits, overall_load, routing_counts, shares

from .escaping import esc

MAX_INPUTS = 64
MAX_TYPED_CHARS = 20_000  # typed inputs (all lines) and the shared passage, each: checked before any work
ANSWER_SEP = "=>"


@dataclass
class InspectResult:
    rows: list[dict[str, Any]]
    n_experts: int
    method: str
    points: list[list[float]] = field(default_factory=list)  # 2-D projection of the router inputs
    explained: list[float] = field(default_factory=list)  # share of variance of PC1, PC2
    baseline_label: str | None = None
    elapsed_s: float = 0.0
    label: str = ""

    def to_state(self) -> dict[str, Any]:
        """A JSON-able form for gr.State / the API."""
        return {"rows": self.rows, "n_experts": self.n_experts, "method": self.method, "points": self.points,
                "explained": self.explained, "baseline_label": self.baseline_label, "elapsed_s": self.elapsed_s,
                "label": self.label}

    @classmethod
    def from_state(cls, d: dict[str, Any] | None) -> InspectResult | None:
        if not d or "rows" not in d:
            return None
        return cls(**{k: d.get(k) for k in ("rows", "n_experts", "method", "points", "explained",
                                             "baseline_label", "elapsed_s", "label") if k in d})


def typed_examples(text: str, context: str = "", answer_type: str = "text") -> list[dict[str, Any]]:
    """One example per non-empty line; ``question => gold`` adds a gold answer to score against."""
    if len(text or "") > MAX_TYPED_CHARS:
        raise ValueError(f"the inputs are {len(text):,} characters; inspect at most {MAX_TYPED_CHARS:,} at a time")
    if len(context or "") > MAX_TYPED_CHARS:
        raise ValueError(f"the passage is {len(context):,} characters; at most {MAX_TYPED_CHARS:,} are allowed")
    out = []
    for i, line in enumerate(x for x in (text or "").splitlines() if x.strip()):
        q, sep, gold = line.rpartition(ANSWER_SEP) if ANSWER_SEP in line else (line, "", "")
        golds = [g.strip() for g in gold.split("|") if g.strip()] if sep else []
        out.append({
            "id": f"typed-{i + 1}", "domain": "typed", "question": q.strip(), "context": (context or "").strip(),
            "answers": golds, "answer_type": answer_type, "split": "test", "ood": False,
        })
    if len(out) > MAX_INPUTS:
        raise ValueError(f"{len(out)} inputs: inspect at most {MAX_INPUTS} at a time")
    return out


def project_2d(vectors: Sequence[Sequence[float]]) -> tuple[list[list[float]], list[float]]:
    """PCA to two components by SVD of the centred matrix (exact, deterministic signs)."""
    if len(vectors) < 2:
        return [[0.0, 0.0] for _ in vectors], []
    x = torch.tensor(vectors, dtype=torch.float64)
    xc = x - x.mean(0, keepdim=True)
    total = float((xc**2).sum())
    if total <= 0:
        return [[0.0, 0.0] for _ in vectors], [0.0, 0.0]
    u, s, vh = torch.linalg.svd(xc, full_matrices=False)
    k = min(2, s.numel())
    # Fix each component's sign (SVD's is arbitrary): its largest loading is positive.
    signs = torch.sign(vh[:k].gather(1, vh[:k].abs().argmax(1, keepdim=True))).squeeze(1)
    signs[signs == 0] = 1
    pts = (u[:, :k] * s[:k]) * signs
    if k < 2:
        pts = torch.cat([pts, torch.zeros(len(vectors), 2 - k, dtype=pts.dtype)], 1)
    explained = [float(v) / total for v in (s[:k] ** 2)]
    return pts.tolist(), explained


def run_inspection(
    adapter: Any,
    examples: Sequence[dict[str, Any]],
    fmt: Any,
    *,
    max_new_tokens: int = 24,
    batch_size: int = 8,
    forced: bool = False,
    baseline: Any = None,
    baseline_fmt: Any = None,
    baseline_label: str | None = None,
    floor: Any = None,
    label: str = "",
    progress: Callable[[float, str], None] | None = None,
) -> InspectResult:
    """Generate through ``adapter`` for every example, optionally with each expert forced too (in the
    same batched pass), and through a ``baseline`` adapter and ``floor`` (the frozen model,
    ``ptmoe_core.floor.frozen_adapter``). Returns one row per example. ``progress(fraction, what)`` is
    called as batches finish."""
    from ptmoe_core.api import answer, answer_all_experts

    with_forced = forced and adapter.n_experts > 1
    n_passes = 1 + (baseline is not None) + (floor is not None)
    done_passes = [0]

    def tick(what: str):
        if progress is None:
            return None
        k = done_passes[0]
        return lambda n_done: progress((k + n_done / max(1, len(examples))) / n_passes, what)

    def next_pass():
        done_passes[0] += 1

    if not examples:
        raise ValueError("no inputs to inspect: type at least one line or draw examples")
    if len(examples) > MAX_INPUTS:
        raise ValueError(f"{len(examples)} inputs: inspect at most {MAX_INPUTS} at a time")
    t0 = time.time()
    if with_forced:
        gens, forced_gens = answer_all_experts(adapter, examples, format_cfg=fmt, max_new_tokens=max_new_tokens,
                                               batch_size=batch_size, return_router_input=True,
                                               progress=tick("routed and forced answers"))
    else:
        gens = answer(adapter, examples, format_cfg=fmt, max_new_tokens=max_new_tokens, batch_size=batch_size,
                      return_router_input=adapter.is_routed, progress=tick("routed answers"))
        forced_gens = [[] for _ in gens]
    next_pass()
    rows = []
    for ex, g, fg in zip(examples, gens, forced_gens, strict=True):
        row = row_of(EvalRecord.scored(None, {"answer_type": "text", **ex}, g))
        row["forced"] = [{"expert": e, "text": f.text, **score_fields(f.text, ex)} for e, f in enumerate(fg)]
        rows.append(row)
    for other, column, what, ofmt in ((baseline, "baseline", "baseline answers", baseline_fmt or fmt),
                                     (floor, "floor", "frozen model's answers", fmt)):
        if other is None:
            continue
        og = answer(other, examples, format_cfg=ofmt, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    progress=tick(what))
        next_pass()
        for row, ex, g in zip(rows, examples, og, strict=True):
            row[column] = {"run": baseline_label if column == "baseline" else None, "text": g.text,
                           "expert": g.expert, **score_fields(g.text, ex)}
    points, explained = ([], [])
    vecs = [g.router_input for g in gens if g.router_input is not None]
    if len(vecs) == len(gens) and len(vecs) >= 2:
        points, explained = project_2d(vecs)
    return InspectResult(rows=rows, n_experts=adapter.n_experts if adapter.is_routed else 0,
                         method=adapter.cfg.method, points=points, explained=explained,
                         baseline_label=baseline_label, elapsed_s=time.time() - t0, label=label)


def row_of(rec: EvalRecord) -> dict[str, Any]:
    """The Inspect table's row of an evaluation record (a stored one, or one just generated); the
    forced-expert, baseline and floor columns are filled in by their passes."""
    return {
        "id": rec.id, "dataset": rec.dataset, "domain": rec.domain or rec.dataset, "question": rec.input,
        "context": rec.context or "", "gold": list(rec.gold), "answer_type": rec.answer_type or "", "ood": rec.ood,
        "expert": rec.expert, "probs": rec.probs, "confidence": rec.confidence, "entropy": rec.entropy,
        "prediction": rec.prediction, "latency_s": rec.latency_s, "score": rec.score, "correct": rec.correct,
        "em": rec.em, "f1": rec.f1, "forced": [], "baseline": None, "floor": None,
    }


def rows_from_records(records: Sequence[EvalRecord]) -> list[dict[str, Any]]:
    """Rows from a run's stored evaluation: the same table without generating."""
    return [row_of(r) for r in records]


def routing_verdict(rows: Sequence[dict[str, Any]]) -> str:
    """I(domain; expert) in bits over the routed rows, and whether the router collapsed
    (``routing_summary.collapsed_expert``: one expert took more than 90% of them, each domain
    weighing the same)."""
    routed = [r for r in rows if r.get("expert") is not None]
    if not routed:
        return "no routed inputs"
    domains = [str(r.get("domain") or "typed") for r in routed]
    experts = [int(r["expert"]) for r in routed]
    n_domains = len(set(domains))
    if n_domains < 2:
        text = "I(domain; expert): needs inputs from two or more domains"
    else:
        text = (f"I(domain; expert) = {mutual_information_bits(domains, experts):.2f} bits "
                f"over {n_domains} domains")
    counts = routing_counts(domains, experts, 1 + max(experts))
    collapsed = collapsed_expert(counts) if len(experts) > 1 else None
    if collapsed is not None:
        share = overall_load(shares(counts))[collapsed]
        text += f" · collapsed onto expert {collapsed} ({share:.0%} of the inputs, each domain weighing the same)"
    elif len(set(experts)) > 1:
        text += " · not collapsed"
    return text


def summary(result: InspectResult) -> str:
    rows = result.rows
    scored = [r for r in rows if r.get("score") is not None]
    parts = [f"{len(rows)} input{'s' if len(rows) != 1 else ''}"]
    if result.label:
        parts.insert(0, esc(result.label))
    if scored:
        acc = sum(1 for r in scored if r.get("correct")) / len(scored)
        mean = sum(r["score"] for r in scored) / len(scored)
        parts.append(f"correct {acc:.0%} · mean score {mean:.2f} ({len(scored)} with gold)")
    if result.n_experts:
        counts = [sum(1 for r in rows if r.get("expert") == e) for e in range(result.n_experts)]
        parts.append("routed " + " / ".join(f"e{e}: {c}" for e, c in enumerate(counts)))
        parts.append(routing_verdict(rows))
    if result.elapsed_s:
        parts.append(f"{result.elapsed_s:.1f}s")
    return " · ".join(parts)
