"""The frozen model as the floor, for the Runs comparison and the Inspect table: the base model's own
answers and scores on a run's evaluation sets, read from the runs folder's cache (storage.floors) or
computed once through the inspection queue when missing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ptmoe_core.bundle import Evaluation
from ptmoe_core.config import RunConfig
from ptmoe_core.eval_record import EvalRecord
from ptmoe_core.floor import evaluate_floor, floor_inputs, floor_key
from storage.floors import FloorCache

from .data_sources import check_stored_specs
from .queries import score_of
from .state import gpu_wrap

if TYPE_CHECKING:
    from .studio import Studio

FROZEN_LABEL = "frozen model (no adapter)"


def floor_of(studio: Studio, run: Any) -> tuple[str, Evaluation]:
    """(floor key, the frozen model's evaluation) on ``run``'s evaluation sets."""
    cfg = RunConfig.from_dict(run.config)
    key = floor_key(cfg)
    cache = FloorCache(studio.runs_dir)
    hit = cache.get(key)
    if hit is not None:
        return key, hit

    check_stored_specs(cfg, studio.data_dir, studio.settings.limits, f"run #{run.id}'s config")

    def compute() -> Evaluation:
        return cache.get_or_compute(key, lambda: evaluate_floor(cfg, base=studio.base_model(cfg.model.name)),
                                    floor_inputs(cfg))

    return key, studio.inspect_queue.run(gpu_wrap(compute))


def floor_rows(studio: Studio, runs: Sequence[Any]) -> list[tuple[str, dict[str, float]]]:
    """One (label, {data set: headline score}) per distinct floor of ``runs``, for the scores table."""
    seen: dict[str, tuple[str, dict[str, float]]] = {}
    for r in runs:
        key, ev = floor_of(studio, r)
        if key not in seen:
            scores = {name: v for name, sc in ev.scores.items() if (v := score_of(sc)) is not None}
            seen[key] = (f"{r.base_model} · {FROZEN_LABEL}", scores)
    return list(seen.values())


def attach(rows: list[dict[str, Any]], records: Sequence[EvalRecord], field: str, label: str) -> int:
    """Put each matching evaluation record's answer into ``row[field]`` (matched by data set and
    example id, so only the same question counts); returns how many rows got one."""
    by_key = {(str(r.dataset or r.domain or ""), r.id): r for r in records}
    n = 0
    for row in rows:
        rec = by_key.get((str(row.get("dataset") or row.get("domain") or ""), str(row.get("id"))))
        if rec is not None:
            row[field] = {"run": label, "text": rec.prediction, "expert": rec.expert, "score": rec.score,
                          "correct": rec.correct}
            n += 1
    return n
