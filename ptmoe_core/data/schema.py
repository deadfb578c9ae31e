"""The one example schema every source produces, and reproducible seeded splits.

Keeping the schema in one place (with explicit ``datasets`` features) means an empty split is
still a typed ``Dataset`` and two sources always concatenate.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import datasets

from ..errors import DataError

SPLITS = ("train", "validation", "test")
ANSWER_TYPES = ("span", "number", "text")
FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "domain": datasets.Value("string"),
        "question": datasets.Value("string"),
        "context": datasets.Value("string"),
        "answers": datasets.List(datasets.Value("string")),
        "answer_type": datasets.Value("string"),
        "split": datasets.Value("string"),
        "ood": datasets.Value("bool"),
    }
)
COLUMNS = tuple(FEATURES)
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "eval": "test",
}  # fmt: skip


def make_example(
    *,
    id: str,
    domain: str,
    question: str,
    answers: Sequence[str],
    answer_type: str,
    context: str = "",
    split: str = "train",
    ood: bool = False,
) -> dict[str, Any]:
    """One schema row; answers are stripped strings and there is at least one."""
    golds = [str(a).strip() for a in answers if a is not None and str(a).strip()]
    if not golds:
        raise ValueError(f"example {id!r} has no gold answer")
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type {answer_type!r} is not one of {ANSWER_TYPES}")
    return {
        "id": str(id),
        "domain": domain,
        "question": str(question).strip(),
        "context": str(context or "").strip(),
        "answers": golds,
        "answer_type": answer_type,
        "split": split,
        "ood": bool(ood),
    }


def to_dataset(rows: Iterable[dict[str, Any]]) -> datasets.Dataset:
    """Rows -> typed ``Dataset`` (keys outside the schema, e.g. transient ones, are dropped)."""
    rows = list(rows)
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in COLUMNS}, features=FEATURES)


def empty_dataset() -> datasets.Dataset:
    return to_dataset([])


def canonical_split(name: str) -> str:
    try:
        return SPLIT_ALIASES[name.lower()]
    except KeyError:
        raise DataError(f"unknown split {name!r}; use one of {', '.join(SPLITS)} (or all)") from None


def seeded_rng(*parts: Any) -> random.Random:
    """A ``random.Random`` seeded from any parts, stable across processes (unlike ``hash``)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def split_rows(
    rows: list[dict[str, Any]],
    *,
    seed: int,
    val_frac: float,
    test_frac: float,
    group: Callable[[dict[str, Any]], str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Seeded train/validation/test assignment of one file's rows (file order kept within a split).

    Rows sharing a ``group`` key (e.g. one SQuAD passage) land in the same split, so a test
    question's passage is never trained on. A held-out split gets at least one row when its
    fraction is > 0 and there are at least three groups; the rest is train.
    """
    key = group or (lambda r: r["id"])
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(key(r), []).append(i)
    order = sorted(groups)
    seeded_rng("split", seed).shuffle(order)
    n = len(rows)
    wanted = {
        s: (max(1, round(n * f)) if f > 0 and len(order) >= 3 else 0)
        for s, f in (("test", test_frac), ("validation", val_frac))
    }
    assigned: dict[str, list[int]] = {s: [] for s in SPLITS}
    for g in order:
        target = next((s for s in ("test", "validation") if len(assigned[s]) < wanted[s]), "train")
        assigned[target].extend(groups[g])
    out: dict[str, list[dict[str, Any]]] = {}
    for s, idx in assigned.items():
        out[s] = [{**rows[i], "split": s} for i in sorted(idx)]
    return out
