"""Answer scoring the way the field does it: SQuAD EM / token F1 and final-number match.

``normalize_answer``, ``exact_match``, ``f1`` and ``qa_scores`` follow the official SQuAD v2.0
evaluation script (unanswerable questions included), so our numbers are comparable with published
ones. Numbers (GSM8K and the built-in arithmetic / unit tasks) are matched in one of
``NUMBER_MATCHES``:

- ``lenient`` (default): the *last* number of the generation equals the gold's as a value, so
  "72.0", "$1,000." and "3.50" count (models reason first and state the result at the end);
- ``flexible`` / ``strict``: lm-evaluation-harness's GSM8K ``flexible-extract`` / ``strict-match``
  filters and its exact string match, for numbers comparable with the harness's.

Routing measures (I(domain; expert), the collapse rule) live in ``routing_summary`` (the mutual
information and the count table stay importable from here for existing callers).
"""

from __future__ import annotations

import collections
import math
import random
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from .routing_summary import (  # noqa: F401  (re-exported: moved to routing_summary)
    mutual_information_bits,
    mutual_information_bits_from_counts,
    routing_counts,
)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)
# A number, optionally signed and with a dollar sign either side of the sign, thousands commas
# only in groups of three ("1,000" but not "3,4"), optional decimals. The look-behind keeps
# the minus of a range ("5-7") and digits glued to words ("v2", "abc12") out.
_NUMBER = re.compile(r"(?<![\w.,])([-−]?)\$?([-−]?)((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?![\d,]*\d)")
SCORE_KEYS = ("em", "f1", "accuracy")
# The gold of a kept SQuAD v2.0 unanswerable question, and so what a model learns to answer there.
NO_ANSWER = "unanswerable"
NUMBER_MATCHES = ("lenient", "flexible", "strict")

# lm-evaluation-harness, lm_eval/tasks/gsm8k/gsm8k.yaml (task version 3.0): "strict-match" takes the
# first "#### N", "flexible-extract" the last number-like run; exact_match then deletes these
# patterns from prediction and reference and compares the strings, ignoring case.
_HARNESS_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
_HARNESS_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_HARNESS_IGNORE = tuple(re.compile(p) for p in (",", r"\$", r"(?s).*#### ", r"\.$"))


# ---------------------------------------------------------------------------------------------
# SQuAD


def normalize_answer(s: str) -> str:
    """Lower-case, remove punctuation, the articles a/an/the, and extra white space (official)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token-level F1 after normalisation; two empty answers agree (SQuAD v2 convention)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def is_no_answer(text: str) -> bool:
    """Whether ``text`` says "no answer": empty after normalisation, or ``NO_ANSWER``."""
    norm = normalize_answer(text)
    return not norm or norm == NO_ANSWER


def qa_scores(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(EM, F1), each the maximum over the gold answers, as the official SQuAD v2.0 script scores
    them: golds that normalise to empty are dropped, and a question left without any (or whose
    gold is ``NO_ANSWER``) is unanswerable, where only the empty answer is right. A prediction of
    ``NO_ANSWER`` (the training target there) is the model's empty answer."""
    golds = [g for g in golds if not is_no_answer(g)] or [""]
    if is_no_answer(prediction):
        prediction = ""
    return max(exact_match(prediction, g) for g in golds), max(f1(prediction, g) for g in golds)


# ---------------------------------------------------------------------------------------------
# Numbers


def extract_final_number(text: str) -> str | None:
    """The last number in ``text`` in canonical form ("$1,000.50 dollars" -> "1000.5"), or None.

    Handles thousands commas, ``$``, a leading minus (also the Unicode minus), decimals and any
    trailing unit or punctuation ("12 apples.", "50%"); trailing zeros are dropped ("3.50" -> "3.5").
    """
    matches = list(_NUMBER.finditer(text or ""))
    if not matches:
        return None
    m = matches[-1]
    negative = bool(m.group(1) or m.group(2))
    digits = m.group(3).replace(",", "")
    try:
        value = Decimal(digits)
    except InvalidOperation:  # cannot happen with the pattern above; be safe anyway
        return None
    if negative:
        value = -value
    return _canonical(value)


def _canonical(value: Decimal) -> str:
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def harness_extract(text: str, mode: str) -> str | None:
    """The answer lm-evaluation-harness's GSM8K filter takes from ``text`` (None: its "[invalid]"):
    ``strict`` the first "#### N", ``flexible`` the last number-like run ("5-10" gives "-10")."""
    if mode == "strict":
        m = _HARNESS_STRICT.search(text or "")
        return m.group(1).strip() if m else None
    found = _HARNESS_FLEXIBLE.findall(text or "")
    if not found:
        return None
    return next(g for g in found[-1] if g).strip()


def harness_normalize(text: str) -> str:
    """The harness's exact_match view of a string: the ignored patterns removed, lower case."""
    for pattern in _HARNESS_IGNORE:
        text = pattern.sub("", text)
    return text.lower()


def number_match(prediction: str, gold: str, mode: str = "lenient") -> bool:
    """Whether ``prediction`` answers the number ``gold`` under ``mode`` (see ``NUMBER_MATCHES``).
    lenient: the final numbers are equal as values (to 1e-6). flexible / strict: the harness's
    extraction of the prediction equals the gold's final number as a string after the harness's
    normalisation, so "72.0", "$18.00" and ".5" miss 72, 18 and 0.5 (GSM8K's golds are integers,
    so the gold's canonical number is the string the harness compares with)."""
    g = extract_final_number(gold)
    if g is None:
        return False
    if mode in ("strict", "flexible"):
        p = harness_extract(prediction, mode)
        return p is not None and harness_normalize(p) == g
    if mode != "lenient":
        raise ValueError(f"number match {mode!r} is not one of {', '.join(NUMBER_MATCHES)}")
    p = extract_final_number(prediction)
    if p is None:
        return False
    if p == g:
        return True
    return math.isclose(float(p), float(g), rel_tol=1e-9, abs_tol=1e-6)


# ---------------------------------------------------------------------------------------------
# One example, and aggregation


def score(prediction: str, example: Mapping[str, Any], number_mode: str = "lenient") -> dict[str, float | bool]:
    """Scores of one prediction against one example of the data schema.

    span / text: ``em`` and ``f1`` (max over golds), ``correct`` = exact match, ``score`` = F1.
    number: ``correct`` when the prediction matches any gold under ``number_mode``;
    ``em`` = ``f1`` = ``score`` = correct.
    """
    golds = [str(g) for g in example.get("answers") or []]
    if example.get("answer_type") == "number":
        ok = any(number_match(prediction, g, number_mode) for g in golds)
        v = float(ok)
        return {"em": v, "f1": v, "correct": ok, "score": v}
    em, f = qa_scores(prediction, golds)
    return {"em": em, "f1": f, "correct": em == 1.0, "score": f}


def aggregate(scores: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Mean em, f1 and accuracy (share correct) of per-example scores, with their count ``n``."""
    rows = list(scores)
    n = len(rows)
    if n == 0:
        return {"n": 0, "em": 0.0, "f1": 0.0, "accuracy": 0.0}
    return {
        "n": n,
        "em": sum(float(r["em"]) for r in rows) / n,
        "f1": sum(float(r["f1"]) for r in rows) / n,
        "accuracy": sum(float(bool(r["correct"])) for r in rows) / n,
    }


def macro_average(per_set: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted mean over data sets (each counts once, whatever its size); ``n`` is the total."""
    sets = [s for s in per_set.values() if s.get("n", 0) > 0]
    if not sets:
        return {"n": 0, "em": 0.0, "f1": 0.0, "accuracy": 0.0}
    out: dict[str, float] = {"n": sum(int(s["n"]) for s in sets)}
    for k in SCORE_KEYS:
        out[k] = sum(float(s[k]) for s in sets) / len(sets)
    return out


# ---------------------------------------------------------------------------------------------
# Paired comparisons


def paired_macro_bootstrap(per_set: Mapping[str, Sequence[float]], n: int = 2000,
                           seed: int = 0) -> tuple[float, float, float] | None:
    """The macro mean (mean over sets of each set's mean) of paired per-question differences, with a
    95% bootstrap interval that resamples questions within each set (stratified), so every set keeps
    its size and weight, as a table that averages per set does. None when there is nothing to pair."""
    sets = [list(d) for d in per_set.values() if len(d)]
    if not sets:
        return None

    def macro(draw) -> float:
        return sum(sum(draw(d)) / len(d) for d in sets) / len(sets)

    rng = random.Random(seed)
    reps = sorted(macro(lambda d: (d[rng.randrange(len(d))] for _ in d)) for _ in range(n))
    return macro(lambda d: d), reps[int(0.025 * n)], reps[int(0.975 * n) - 1]
