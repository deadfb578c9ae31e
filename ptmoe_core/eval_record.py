"""One evaluated example, typed: what went in, what came out, how it scored and what the router did.

``EvalRecord`` is what ``evaluate`` produces and what every reader takes (the trainer's reports, the
bundle, the database, Inspect, the model card, the benchmarks). Its dict form (``to_dict`` /
``from_dict``) is the bundle's and the JSONL file's, with the keys ``evaluate`` has always written,
so bundles and files written before the type existed read back unchanged; the database row's form
lives beside the table (``storage.repo.routing_row`` / ``eval_record``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class EvalRecord:
    dataset: str | None  # the evaluation set it came from
    id: str  # the example's id within its source
    domain: str | None = None
    ood: bool = False
    split: str | None = None
    answer_type: str | None = None
    input: str = ""  # the question
    context: str | None = ""
    gold: list[str] = field(default_factory=list)
    prediction: str = ""
    expert: int | None = None  # chosen expert; None for methods without a router
    probs: list[float] | None = None  # the router's probability vector
    confidence: float | None = None
    entropy: float | None = None  # of the router distribution, nats
    latency_s: float | None = None
    em: float | None = None  # None: no gold to score against
    f1: float | None = None
    correct: bool | None = None
    score: float | None = None

    @classmethod
    def scored(cls, dataset: str | None, example: Mapping[str, Any], gen: Any,
               number_mode: str = "lenient") -> EvalRecord:
        """The record of ``gen`` (a ``generate.Generation``) answering ``example`` (data schema);
        unscored when the example has no gold answer (a typed input in Inspect)."""
        s = score_fields(gen.text, example, number_mode)
        return cls(
            dataset=dataset, id=str(example.get("id", "")), domain=example.get("domain"),
            ood=bool(example.get("ood", False)), split=example.get("split"), answer_type=example.get("answer_type"),
            input=str(example.get("question", "")), context=example.get("context", ""),
            gold=[str(g) for g in example.get("answers") or []], prediction=gen.text, expert=gen.expert,
            probs=gen.probs, confidence=gen.confidence, entropy=gen.entropy, latency_s=gen.latency_s,
            **s,
        )

    def to_dict(self) -> dict[str, Any]:
        """The bundle's / JSONL form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvalRecord:
        """From the bundle's / JSONL form, as written by any version: missing keys take their defaults
        (bundles before ``latency_s``, the benchmarks' slimmed records), values are coerced to their
        types, unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        gold = kw.get("gold", [])
        kw["gold"] = [str(g) for g in gold] if isinstance(gold, (list, tuple)) else [str(gold)]
        kw["id"] = str(kw.get("id", ""))
        kw.setdefault("dataset", None)
        for k in ("dataset", "domain", "split", "answer_type"):
            kw[k] = None if kw.get(k) is None else str(kw[k])
        kw["input"] = str(kw.get("input") or "")
        kw["prediction"] = str(kw.get("prediction") or "")
        kw["ood"] = bool(kw.get("ood", False))
        kw["expert"] = None if kw.get("expert") is None else int(kw["expert"])
        kw["probs"] = None if kw.get("probs") is None else [float(p) for p in kw["probs"]]
        for k in ("confidence", "entropy", "latency_s", "em", "f1", "score"):
            kw[k] = _float(kw.get(k))
        kw["correct"] = None if kw.get("correct") is None else bool(kw["correct"])
        return cls(**kw)

    @classmethod
    def of(cls, x: EvalRecord | Mapping[str, Any]) -> EvalRecord:
        """``x`` itself, or read from its dict form."""
        return x if isinstance(x, cls) else cls.from_dict(x)

    def scores(self) -> dict[str, Any]:
        """The per-example scores ``metrics.aggregate`` averages (unscored counts as wrong)."""
        return {"em": self.em or 0.0, "f1": self.f1 or 0.0, "correct": bool(self.correct), "score": self.score or 0.0}


def score_fields(prediction: str, example: Mapping[str, Any], number_mode: str = "lenient") -> dict[str, Any]:
    """em, f1, correct and score of ``prediction`` against ``example``'s gold (``metrics.score``);
    all None when the example has no gold answer."""
    from .metrics import score

    if not example.get("answers"):
        return {"em": None, "f1": None, "correct": None, "score": None}
    s = score(prediction, example, number_mode)
    return {"em": _float(s["em"]), "f1": _float(s["f1"]), "correct": bool(s["correct"]), "score": _float(s["score"])}


def _float(v: Any) -> float | None:
    """A finite float, else None (JSON and the database hold no NaN)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
