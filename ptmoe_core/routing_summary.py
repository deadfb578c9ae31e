"""What a router did, summarised once for every reader: the trainer's domain × expert table, Inspect's
verdict, the model card's routing section, the Train tab's live view and the benchmarks' tables.

- ``routing_counts``: domain (or evaluation set) -> inputs routed to each expert;
- ``mutual_information_bits``: I(domain; expert), how much the chosen expert tells about the domain
  (0 = routing ignores the domain, log2 N = each domain has experts of its own);
- ``majority``: each domain's (or set's) majority expert and its share;
- ``collapsed_expert``: THE collapse rule (below);
- ``RoutingSummary.of(records)``: load per expert and per set, I(domain; expert), mean confidence,
  mean router entropy per set, the majority expert per set and the collapse verdict of an
  evaluation's ``EvalRecord`` objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .eval_record import EvalRecord

# The collapse rule, one for the whole studio: the router collapsed when one expert takes MORE THAN
# 90% of the routed inputs, each evaluation set (or domain) weighing the same.
# - Per set, not pooled over inputs: a large set must not hide a small one that routes elsewhere
#   (200 SQuAD inputs on expert 0 and 20 GSM8K inputs on expert 1 is a router that separates the
#   domains perfectly, not a collapsed one, though 91% of the pooled inputs share an expert); scores
#   are macro-averaged over sets for the same reason.
# - 90%, not 95%: the studio's evaluation sets are small (16-50 inputs on CPU), where 95% leaves room
#   for at most one or two strays per set; a router sending 9 of 10 inputs of every set to one expert
#   does not route, whatever the strays are. A router that uses its experts at all is far from either
#   bound (a balanced one gives 1/N).
# Earlier the app said "> 90% of pooled inputs" and the results page "≥ 95% of the per-set load", so a
# run could be collapsed in Inspect and not on the page.
COLLAPSE_SHARE = 0.9


def routing_counts(domains: Sequence[str], experts: Sequence[int | None], n_experts: int) -> dict[str, list[int]]:
    """Domain -> how many of its inputs were routed to each of ``n_experts`` experts (inputs
    without a domain, without an expert or with one outside 0..n-1 are left out)."""
    out: dict[str, list[int]] = {}
    for d, e in zip(domains, experts, strict=True):
        if d and e is not None and 0 <= e < n_experts:
            out.setdefault(str(d), [0] * n_experts)[e] += 1
    return out


def mutual_information_bits_from_counts(counts: Mapping[str, Sequence[int]]) -> float:
    """I(domain; expert) in bits of a domain × expert count table (the plug-in estimate):
    Σ p(d,e) log2 p(d,e) / (p(d) p(e)). 0 for an empty table."""
    rows = [list(map(int, c)) for c in counts.values()]
    n = sum(map(sum, rows))
    if n == 0:
        return 0.0
    width = max(map(len, rows))
    col = [sum(r[e] for r in rows if e < len(r)) for e in range(width)]
    mi = 0.0
    for r in rows:
        row = sum(r)
        mi += sum(c / n * math.log2(c * n / (row * col[e])) for e, c in enumerate(r) if c)
    return max(0.0, mi)  # rounding can leave -1e-17 for independent tables


def mutual_information_bits(domains: Sequence[str], experts: Sequence[int | None]) -> float:
    """I(domain; expert) in bits over inputs (``domains[i]`` routed to ``experts[i]``; inputs with
    no expert are left out). 0 when one expert takes everything or routing ignores the domain,
    1 for two domains sent cleanly to two experts."""
    n_experts = 1 + max((e for e in experts if e is not None), default=-1)
    return mutual_information_bits_from_counts(routing_counts(domains, experts, n_experts))


def shares(counts: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Each row of a count table as shares of its total (rows without inputs are left out)."""
    return {k: [c / sum(row) for c in row] for k, row in counts.items() if sum(row)}


def overall_load(per_set: Mapping[str, Sequence[float]]) -> list[float]:
    """The share of each expert with every set weighing the same (the mean of the per-set shares)."""
    loads = [list(x) for x in per_set.values() if x]
    if not loads:
        return []
    width = max(map(len, loads))
    return [sum(ld[e] for ld in loads if e < len(ld)) / len(loads) for e in range(width)]


def majority(per_set: Mapping[str, Sequence[float]]) -> dict[str, tuple[int, float]]:
    """Set (or domain) -> (its majority expert, that expert's share of the set's inputs); ties go to the
    lower expert index. ``per_set``: per-expert counts or shares; sets without inputs are left out."""
    return {k: (max(range(len(row)), key=row.__getitem__), max(row)) for k, row in shares(per_set).items()}


def collapsed_expert(per_set: Mapping[str, Sequence[float]]) -> int | None:
    """The expert that took more than ``COLLAPSE_SHARE`` of the inputs, each set weighing the same,
    else None. ``per_set``: set (or domain) -> per-expert counts or shares."""
    load = overall_load(shares(per_set))
    if not load:
        return None
    top = max(range(len(load)), key=load.__getitem__)
    return top if load[top] > COLLAPSE_SHARE else None


@dataclass
class RoutingSummary:
    """What the router did on an evaluation's inputs."""

    n: int  # routed inputs
    load: list[float]  # share of the routed inputs per expert (pooled)
    per_set: dict[str, list[float]]  # the same per evaluation set
    mi_bits: float  # I(domain; expert)
    n_domains: int
    mean_confidence: float | None
    entropy_per_set: dict[str, float]  # mean router entropy (nats) per evaluation set
    collapsed: int | None  # the collapse rule's verdict: the expert that took (almost) everything

    @property
    def collapsed_share(self) -> float | None:
        """The collapsed expert's share, each set weighing the same."""
        return None if self.collapsed is None else overall_load(self.per_set)[self.collapsed]

    @property
    def majority(self) -> dict[str, tuple[int, float]]:
        """Evaluation set -> (its majority expert, that expert's share of the set's inputs)."""
        return majority(self.per_set)

    @classmethod
    def of(cls, records: Iterable[EvalRecord | Mapping[str, Any]], n_experts: int) -> RoutingSummary | None:
        """From evaluation records (typed or in their dict form); None without routed inputs."""
        rows = [r for r in map(EvalRecord.of, records) if r.expert is not None and 0 <= r.expert < n_experts]
        if not rows or n_experts < 1:
            return None
        sets = [str(r.dataset if r.dataset is not None else r.domain) for r in rows]
        domains = [str(r.domain if r.domain is not None else r.dataset) for r in rows]
        experts = [int(r.expert) for r in rows if r.expert is not None]
        counts = routing_counts(sets, experts, n_experts)
        conf = [r.confidence for r in rows if r.confidence is not None]
        ent: dict[str, list[float]] = {}
        for s, r in zip(sets, rows, strict=True):
            ent.setdefault(s, []).append(r.entropy or 0.0)
        return cls(
            n=len(rows),
            load=[experts.count(e) / len(rows) for e in range(n_experts)],
            per_set=shares(counts),
            mi_bits=mutual_information_bits(domains, experts),
            n_domains=len(set(domains)),
            mean_confidence=sum(conf) / len(conf) if conf else None,
            entropy_per_set={s: sum(v) / len(v) for s, v in ent.items()},
            collapsed=collapsed_expert(counts),
        )
