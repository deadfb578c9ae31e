"""Routing by domain as metric rows: how many of each domain's training examples went to each expert,
step by step (``StepMetrics.domain_routing``), written and read back without a schema change.

One metric series per (expert, domain), key ``domain_routing/<expert>/<domain>``, value = the count;
only non-zero counts are written, so a step costs at most one row per example in its batch. The
domain is the last part of the key, so it may contain ``/``; it comes from data files, so it is
bounded (the key column holds 250 characters) and stripped of control characters here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PREFIX = "domain_routing/"
MAX_DOMAIN_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def domain_label(domain: str) -> str:
    """``domain`` as stored: control characters removed; over ``MAX_DOMAIN_CHARS`` cut, with a short
    hash of the whole name so two long names that share a prefix stay apart."""
    d = _CONTROL.sub("", str(domain))
    if len(d) <= MAX_DOMAIN_CHARS:
        return d
    digest = hashlib.sha1(d.encode("utf-8")).hexdigest()[:8]
    return f"{d[: MAX_DOMAIN_CHARS - 9]}…{digest}"


def points(counts: Mapping[str, Sequence[int]]) -> list[tuple[str, float]]:
    """(key, count) metric points of one step's ``domain_routing``; zero counts are left out."""
    return [(f"{PREFIX}{e}/{domain_label(d)}", float(c)) for d, row in counts.items() for e, c in enumerate(row) if c]


@dataclass
class DomainRouting:
    """A run's routing by domain: ``counts[i]`` is step ``steps[i]``'s domain -> per-expert counts."""

    n_experts: int = 0
    steps: list[int] = field(default_factory=list)
    counts: list[dict[str, list[int]]] = field(default_factory=list)

    @property
    def domains(self) -> list[str]:
        return sorted({d for c in self.counts for d in c})

    def window(self, last: int, end: int | None = None) -> dict[str, list[int]]:
        """Domain -> per-expert counts summed over ``last`` recorded steps, those before index ``end``
        (default: the latest ``last``)."""
        end = len(self.counts) if end is None else end
        out: dict[str, list[int]] = {}
        for c in self.counts[max(0, end - last):end] if last > 0 else []:
            for d, row in c.items():
                acc = out.setdefault(d, [0] * self.n_experts)
                for e, x in enumerate(row):
                    acc[e] += x
        return out


def from_history(hist: Mapping[str, Any]) -> DomainRouting:
    """Read the ``domain_routing/`` series out of ``Storage.metric_history`` (key -> MetricSeries)."""
    cells: dict[int, dict[str, dict[int, int]]] = {}
    n = 0
    for key, series in hist.items():
        if not key.startswith(PREFIX):
            continue
        expert, sep, domain = key[len(PREFIX):].partition("/")
        if not sep or not expert.isdigit():
            continue  # not a key this module wrote
        e = int(expert)
        n = max(n, e + 1)
        for step, value in zip(series.steps, series.values, strict=True):
            if value is not None and value == value:  # NULL / NaN: nothing to count
                cells.setdefault(step, {}).setdefault(domain, {})[e] = int(round(value))
    out = DomainRouting(n_experts=n)
    for step in sorted(cells):
        out.steps.append(step)
        out.counts.append({d: [row.get(e, 0) for e in range(n)] for d, row in cells[step].items()})
    return out
