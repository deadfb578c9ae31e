"""Built-in generated tasks: deterministic per seed, correct answers, distinct OOD variants."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from ptmoe_core.data import load_spec
from ptmoe_core.data.builtin import TASKS, generate_task
from ptmoe_core.metrics import extract_final_number

SMALL = {"train": 40, "validation": 10, "test": 10}


def templates(rows):
    """A question's shape: numbers and capitalised names replaced, so only the template is left."""
    return {re.sub(r"\$?\d[\d.,]*|[A-Z][a-z]+", "_", r["question"]) for r in rows}


@pytest.mark.parametrize("task", TASKS)
def test_deterministic_per_seed(task):
    a = generate_task(task, False, SMALL, seed=3)
    b = generate_task(task, False, SMALL, seed=3)
    c = generate_task(task, False, SMALL, seed=4)
    assert a == b
    assert [r["question"] for r in a["train"]] != [r["question"] for r in c["train"]]


@pytest.mark.parametrize("task", TASKS)
def test_splits_are_disjoint_and_sized(task):
    parts = generate_task(task, False, SMALL, seed=0)
    assert {k: len(v) for k, v in parts.items()} == SMALL
    keys = {k: {(r["question"], r["context"]) for r in v} for k, v in parts.items()}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]
    # the held-out questions do not depend on how many training examples are asked for
    more = generate_task(task, False, {**SMALL, "train": 80}, seed=0)
    assert more["test"] == parts["test"]


@pytest.mark.parametrize("task", TASKS)
def test_ood_variant_has_new_templates_and_flag(task):
    ind = generate_task(task, False, {"train": 0, "validation": 0, "test": 60}, seed=0)["test"]
    ood = generate_task(task, True, {"train": 0, "validation": 0, "test": 60}, seed=0)["test"]
    assert all(r["ood"] for r in ood) and not any(r["ood"] for r in ind)
    assert {r["domain"] for r in ood} == {f"builtin-{task}-ood"}
    assert not templates(ind) & templates(ood)
    assert {r["answer_type"] for r in ind} == {r["answer_type"] for r in ood}


def test_answers_are_right():
    rows = load_spec("builtin:all", "test")
    assert set(rows["domain"]) == {f"builtin-{t}" for t in TASKS}
    for r in rows:
        q, gold = r["question"], r["answers"][0]
        if r["domain"] == "builtin-qa":
            assert gold in r["context"]
        elif r["domain"] == "builtin-units":
            assert extract_final_number(gold) == gold
        elif r["domain"] == "builtin-dates" and (m := re.match(r"What is the date (\d+) days after (.+)\?", q)):
            start = dt.datetime.strptime(m.group(2), "%B %d, %Y").date()
            got = dt.datetime.strptime(gold, "%B %d, %Y").date()
            assert (got - start).days == int(m.group(1))
        elif r["domain"] == "builtin-arith" and (m := re.match(r"A box holds (\d+) \w+\. .* in (\d+) boxes", q)):
            assert int(gold) == int(m.group(1)) * int(m.group(2))


def test_arith_ood_has_negative_answers_and_units_converts():
    rows = load_spec("builtin:arith-ood?n_eval=200", "test")
    assert any(r["answers"][0].startswith("-") for r in rows)  # temperatures below zero
    units = load_spec("builtin:units", "test")
    for r in units:
        m = re.match(r"Convert ([\d.]+) kilometres to metres\.", r["question"])
        if m:
            assert float(r["answers"][0]) == pytest.approx(float(m.group(1)) * 1000)


def test_builtin_spec_sizes_and_mixing_order():
    dd = load_spec("builtin:all?n=8&n_eval=2")
    assert {k: len(v) for k, v in dd.items()} == {"train": 32, "validation": 8, "test": 8}
    assert len(set(dd["train"].select(range(8))["domain"])) > 1  # domains are interleaved
    assert set(load_spec("builtin:all-ood?n=4&n_eval=1", "train")["ood"]) == {True}
