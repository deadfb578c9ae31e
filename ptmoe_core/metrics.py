"""Answer scoring the way the field does it: SQuAD EM / token F1 and final-number match.

``normalize_answer``, ``exact_match`` and ``f1`` follow the official SQuAD v1.1/v2.0 evaluation
script, so our numbers are comparable with published ones. Numbers (GSM8K and the built-in
arithmetic / unit tasks) are scored by the *last* number in the generation, because models
usually reason first and state the result at the end.
"""

from __future__ import annotations

import collections
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)
# A number, optionally signed and with a dollar sign either side of the sign, thousands commas
# only in groups of three ("1,000" but not "3,4"), optional decimals. The look-behind keeps
# the minus of a range ("5-7") and digits glued to words ("v2", "abc12") out.
_NUMBER = re.compile(r"(?<![\w.,])([-−]?)\$?([-−]?)((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?![\d,]*\d)")
SCORE_KEYS = ("em", "f1", "accuracy")


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


def qa_scores(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(EM, F1), each the maximum over the gold answers."""
    golds = list(golds) or [""]
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


def number_match(prediction: str, gold: str) -> bool:
    """True when the final number of the prediction equals the gold's number (to 1e-6)."""
    p, g = extract_final_number(prediction), extract_final_number(gold)
    if p is None or g is None:
        return False
    if p == g:
        return True
    return math.isclose(float(p), float(g), rel_tol=1e-9, abs_tol=1e-6)


# ---------------------------------------------------------------------------------------------
# One example, and aggregation


def score(prediction: str, example: Mapping[str, Any]) -> dict[str, float | bool]:
    """Scores of one prediction against one example of the data schema.

    span / text: ``em`` and ``f1`` (max over golds), ``correct`` = exact match, ``score`` = F1.
    number: ``correct`` when the final number matches any gold; ``em`` = ``f1`` = ``score`` = correct.
    """
    golds = [str(g) for g in example.get("answers") or []]
    if example.get("answer_type") == "number":
        ok = any(number_match(prediction, g) for g in golds)
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
# Routing


def mutual_information_bits(domains: Sequence[Any], experts: Sequence[Any]) -> float:
    """I(domain; expert) in bits from paired observations: 0 when the router ignores the domain,
    log2(#domains) when each domain goes to its own expert (1 bit = two domains cleanly split)."""
    if len(domains) != len(experts):
        raise ValueError(f"{len(domains)} domains but {len(experts)} experts: pass one pair per input")
    n = len(domains)
    if n == 0:
        return 0.0
    joint = collections.Counter(zip(domains, experts, strict=True))
    dom, exp = collections.Counter(domains), collections.Counter(experts)
    mi = sum(c / n * math.log2(c * n / (dom[d] * exp[e])) for (d, e), c in joint.items())
    return max(mi, 0.0)  # rounding can leave -1e-17 for independent variables
