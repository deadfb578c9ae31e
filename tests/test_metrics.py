"""Metric functions against hand-computed cases (SQuAD normalisation, token F1, final numbers)."""

from __future__ import annotations

import pytest

from ptmoe_core.metrics import (
    aggregate,
    exact_match,
    extract_final_number,
    f1,
    macro_average,
    normalize_answer,
    number_match,
    qa_scores,
    score,
)


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


def test_mutual_information_bits():
    from ptmoe_core.metrics import mutual_information_bits

    assert mutual_information_bits(["a", "a", "b", "b"], [0, 0, 1, 1]) == pytest.approx(1.0)  # clean split
    assert mutual_information_bits(["a", "a", "b", "b"], [0, 1, 0, 1]) == pytest.approx(0.0)  # ignores domain
    assert mutual_information_bits(["a", "b", "c", "d"], [0, 1, 2, 3]) == pytest.approx(2.0)
    assert mutual_information_bits(["a", "b"], [0, 0]) == 0.0  # one expert carries no information
    # 3/4 of "a" to expert 0, all of "b" to expert 1: H(E) - H(E|D) = 0.9544 - 0.4056
    assert mutual_information_bits(["a"] * 4 + ["b"] * 4, [0, 0, 0, 1, 1, 1, 1, 1]) == pytest.approx(0.548795, abs=1e-6)
    assert mutual_information_bits([], []) == 0.0
    with pytest.raises(ValueError, match="one pair per input"):
        mutual_information_bits(["a"], [0, 1])
