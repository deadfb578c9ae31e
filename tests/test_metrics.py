"""Metric functions against hand-computed cases (SQuAD normalisation, token F1, final numbers)."""

from __future__ import annotations

import math

import pytest

from ptmoe_core.metrics import (
    aggregate,
    exact_match,
    extract_final_number,
    f1,
    harness_extract,
    harness_normalize,
    macro_average,
    normalize_answer,
    number_match,
    qa_scores,
    score,
)
from ptmoe_core.routing_summary import mutual_information_bits, mutual_information_bits_from_counts, routing_counts


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Cat", "cat"),
        ("  a   dog\tand\nAN owl ", "dog and owl"),
        ("the-end", "theend"),  # punctuation is removed, not replaced: "the" is no longer a word
        ("Theory of the Cat", "theory of cat"),  # "the" only as a whole word
        ("Hello, World!", "hello world"),
        ("(1,000.5)", "10005"),
        ("an", ""),
        ("", ""),
        ("Saint-Clair-sur-Epte", "saintclairsurepte"),
        ("Ångström  «units»", "ångström «units»"),  # only ASCII punctuation, as in the official script
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_uses_normalisation():
    assert exact_match("The Normans.", "normans") == 1.0
    assert exact_match("Normans of France", "normans") == 0.0


def test_f1_hand_computed():
    # pred tokens: [the->removed] cat sat on mat -> cat sat on mat ; gold: cat sat -> overlap 2
    # precision 2/4, recall 2/2 -> F1 = 2*0.5*1/1.5 = 2/3
    assert f1("The cat sat on the mat", "cat sat") == pytest.approx(2 / 3)
    # repeated tokens count with multiplicity
    assert f1("x x y", "x y y") == pytest.approx(2 / 3)  # common = {x:1, y:1}: P=2/3, R=2/3
    assert f1("completely different", "answer") == 0.0
    assert f1("", "") == 1.0  # both empty agree (SQuAD v2)
    assert f1("the", "something") == 0.0  # prediction normalises to empty


def test_qa_scores_max_over_golds():
    em, f = qa_scores("10th century", ["in the 10th and 11th centuries", "10th century"])
    assert em == 1.0 and f == 1.0
    em, f = qa_scores("10th and 11th", ["10th and 11th centuries", "the tenth"])
    assert em == 0.0
    assert f == pytest.approx(2 * 1 * 0.75 / 1.75)  # P = 3/3, R = 3/4


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 72.", "72"),
        ("She earned $1,000 in total", "1000"),
        ("It costs $3.50", "3.5"),
        ("3.50 dollars", "3.5"),
        ("-5 degrees", "-5"),
        ("it fell to −12°C", "-12"),  # Unicode minus
        ("$-4", "-4"),
        ("-$4", "-4"),
        ("First 12 apples, then 15 apples", "15"),
        ("12 + 30 = 42", "42"),
        ("pages 5-7", "7"),  # a range's hyphen is not a minus
        ("50%", "50"),
        ("1,234,567 people", "1234567"),
        ("7.0", "7"),
        ("0.25", "0.25"),
        (".5 cups", "0.5"),
        ("no number here", None),
        ("", None),
        ("version v2 of abc12", None),  # digits glued to letters are not numbers
        ("3,4", None),  # not a thousands grouping
        ("-0", "0"),
    ],
)
def test_extract_final_number(text, expected):
    assert extract_final_number(text) == expected


def test_number_match():
    assert number_match("So the total is $1,000.", "1000")
    assert number_match("3.50", "3.5")
    assert number_match("The answer is 18 apples", "#### 18")
    assert not number_match("18 apples and 2 pears", "18")  # the *final* number counts
    assert not number_match("no idea", "5")
    assert not number_match("5", "not a number")


def test_score_by_answer_type():
    span = {"answers": ["France", "French Republic"], "answer_type": "span"}
    assert score("france", span) == {"em": 1.0, "f1": 1.0, "correct": True, "score": 1.0}
    s = score("the French", span)
    assert s["em"] == 0.0 and s["correct"] is False and s["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    num = {"answers": ["72"], "answer_type": "number"}
    assert score("48 + 24 = 72", num) == {"em": 1.0, "f1": 1.0, "correct": True, "score": 1.0}
    assert score("70", num)["correct"] is False
    text = {"answers": ["March 3, 2020"], "answer_type": "text"}
    assert score("March 3 2020", text)["em"] == 1.0


def test_aggregate_and_macro():
    rows = [{"em": 1.0, "f1": 1.0, "correct": True}, {"em": 0.0, "f1": 0.5, "correct": False}]
    a = aggregate(rows)
    assert a == {"n": 2, "em": 0.5, "f1": 0.75, "accuracy": 0.5}
    b = aggregate([{"em": 0.0, "f1": 0.0, "correct": False}] * 6)
    m = macro_average({"a": a, "b": b, "empty": aggregate([])})
    assert m["n"] == 8  # the empty set neither counts nor averages in
    assert m["em"] == pytest.approx(0.25) and m["f1"] == pytest.approx(0.375) and m["accuracy"] == pytest.approx(0.25)


# --- SQuAD v2.0 as the official evaluation script scores it -------------------------------------


def test_unanswerable_scored_as_the_official_v2_script():
    unans = {"answers": ["unanswerable"], "answer_type": "span"}  # the gold a kept v2.0 question carries
    for abstain in ("", "Unanswerable.", "  "):
        assert score(abstain, unans) == {"em": 1.0, "f1": 1.0, "correct": True, "score": 1.0}
    assert score("in 1066", unans)["f1"] == 0.0
    # an answerable question: abstaining is wrong
    ans = {"answers": ["1066"], "answer_type": "span"}
    assert score("unanswerable", ans)["f1"] == 0.0 and score("", ans)["f1"] == 0.0


def test_golds_normalising_to_empty_are_dropped():
    # official: gold_answers = [a for a in answers if normalize_answer(a)] or [""]
    assert qa_scores("Normans", ["the", "Normans"]) == (1.0, 1.0)
    assert qa_scores("", ["the", "Normans"]) == (0.0, 0.0)  # before: "" vs "the" agreed (both empty)
    assert qa_scores("", ["The", "a"]) == (1.0, 1.0)  # nothing left: unanswerable


# --- lm-evaluation-harness GSM8K matching ---------------------------------------------------------


@pytest.mark.parametrize(
    "prediction, gold, lenient, flexible",
    [
        ("72", "72", True, True),
        ("The answer is 72.", "72", True, True),  # "\.$" is ignored
        ("72.0", "72", True, False),
        ("$18.00", "18", True, False),
        ("$18", "18", True, True),
        ("She earned $1,000 in total", "1000", True, True),
        (".5", "0.5", True, False),
        ("5-10", "10", True, False),  # the harness reads "-10"
        ("5-10", "-10", False, True),
        ("12 apples, then 15", "15", True, True),
        ("no number", "3", False, False),
    ],
)
def test_number_match_modes(prediction, gold, lenient, flexible):
    assert number_match(prediction, gold) is lenient
    assert number_match(prediction, gold, "flexible") is flexible
    assert score(prediction, {"answers": [gold], "answer_type": "number"}, "flexible")["correct"] is flexible


def test_harness_extraction():
    assert harness_extract("So 3 + 4 = 7\n#### 7\n#### 9", "strict") == "7"  # the first "#### N"
    assert harness_extract("The answer is 7", "strict") is None  # "[invalid]"
    assert harness_extract("5-10", "flexible") == "-10"
    assert harness_extract("costs $18.00.", "flexible") == "$18.00."
    assert harness_normalize("$18.00.") == "18.00"
    assert harness_normalize("Natalia sold 48/2 = 24 clips.\n#### 1,072") == "1072"


@pytest.mark.parametrize(
    "prediction, ok",
    [("#### 72", True), ("work...\n#### 72", True), ("#### 72.0", False), ("#### $72", False),
     ("72", False), ("The answer is 72", False), ("#### 7,2", True)],
)
def test_strict_mode_needs_the_gsm8k_marker(prediction, ok):
    assert number_match(prediction, "72", "strict") is ok


def test_unknown_number_mode():
    with pytest.raises(ValueError, match="lenient"):
        number_match("1", "1", "fuzzy")


def test_kept_squad_v2_unanswerable_scored_officially(shared_data):
    from ptmoe_core.data import load_spec

    rows = load_spec(f"squad:{shared_data / 'squad' / 'squad-v2-sample.json'}?unanswerable=keep", "all")
    unans = next(r for r in rows if r["answers"] == ["unanswerable"])
    assert score("", unans)["f1"] == 1.0 and score("unanswerable", unans)["em"] == 1.0
    assert score(unans["context"][:30], unans)["f1"] == 0.0


# ---------------------------------------------------------------------------------------------
# Routing by domain


def test_mutual_information_known_cases():
    # one expert for everything: the expert says nothing about the domain
    assert mutual_information_bits(["qa", "qa", "math", "math"], [0, 0, 0, 0]) == 0.0
    # a clean two-way split: one bit
    assert mutual_information_bits(["qa", "qa", "math", "math"], [0, 0, 1, 1]) == pytest.approx(1.0)
    # both domains split evenly over both experts: independent, 0 bits
    assert mutual_information_bits(["qa", "qa", "math", "math"], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    # four domains on four experts: two bits; on two experts (pairs of domains each): one bit
    doms = ["a", "b", "c", "d"] * 3
    assert mutual_information_bits(doms, [0, 1, 2, 3] * 3) == pytest.approx(2.0)
    assert mutual_information_bits(doms, [0, 0, 1, 1] * 3) == pytest.approx(1.0)
    # 3 of 4 qa on expert 0, all math on 1: H(E) - H(E|D) by hand
    h = lambda *p: -sum(x * math.log2(x) for x in p if x)  # noqa: E731
    expected = h(3 / 8, 5 / 8) - 0.5 * h(3 / 4, 1 / 4)
    assert mutual_information_bits(["qa"] * 4 + ["math"] * 4, [0, 0, 0, 1, 1, 1, 1, 1]) == pytest.approx(expected)


def test_mutual_information_skips_unrouted_and_empty():
    assert mutual_information_bits([], []) == 0.0
    assert mutual_information_bits(["a", "b"], [None, None]) == 0.0
    assert mutual_information_bits(["a", "b", "a"], [0, 1, None]) == pytest.approx(1.0)
    with pytest.raises(ValueError):  # misaligned inputs are a bug, not a zero
        mutual_information_bits(["a"], [0, 1])


def test_routing_counts_and_table_form_agree():
    counts = routing_counts(["qa", "math", "qa", "", "x"], [1, 0, 1, 0, 5], n_experts=2)
    assert counts == {"qa": [0, 2], "math": [1, 0]}  # no domain / expert out of range: left out
    assert mutual_information_bits_from_counts(counts) == pytest.approx(
        mutual_information_bits(["qa", "math", "qa"], [1, 0, 1]))
    assert mutual_information_bits_from_counts({}) == 0.0


def test_mutual_information_bits():
    assert mutual_information_bits(["a", "a", "b", "b"], [0, 0, 1, 1]) == pytest.approx(1.0)  # clean split
    assert mutual_information_bits(["a", "a", "b", "b"], [0, 1, 0, 1]) == pytest.approx(0.0)  # ignores domain
    assert mutual_information_bits(["a", "b", "c", "d"], [0, 1, 2, 3]) == pytest.approx(2.0)
    assert mutual_information_bits(["a", "b"], [0, 0]) == 0.0  # one expert carries no information
    # 3/4 of "a" to expert 0, all of "b" to expert 1: H(E) - H(E|D) = 0.9544 - 0.4056
    assert mutual_information_bits(["a"] * 4 + ["b"] * 4, [0, 0, 0, 1, 1, 1, 1, 1]) == pytest.approx(0.548795, abs=1e-6)
    assert mutual_information_bits([], []) == 0.0
    with pytest.raises(ValueError):
        mutual_information_bits(["a"], [0, 1])
