"""The evaluation runner: end to end on tiny-random, record/score bookkeeping, table, JSONL, CLI."""

from __future__ import annotations

import json
import math

import pytest

from ptmoe_core.config import MethodConfig
from ptmoe_core.data import load_spec
from ptmoe_core.evaluate import evaluate, summarize
from ptmoe_core.metrics import score

RECORD_KEYS = {"dataset", "id", "domain", "ood", "split", "answer_type", "input", "context", "gold", "prediction",
               "expert", "probs", "confidence", "entropy", "latency_s", "em", "f1", "correct", "score"}


@pytest.fixture(scope="module")
def adapter(tiny_base):
    from ptmoe_core.adapter import build_adapter

    return build_adapter(tiny_base, MethodConfig(method="ptmoe", prompt_len=4, n_experts=2, rank=2), seed=0)


def test_end_to_end_tiny_random(adapter, tmp_path):
    seen = []
    res = evaluate(adapter, ["builtin:qa", "builtin:arith-ood"], max_examples=3, max_new_tokens=3, batch_size=4,
                   progress=lambda done, total: seen.append((done, total)))
    assert len(res.records) == 6 and seen[-1] == (6, 6)
    assert list(res.per_dataset) == ["builtin-qa", "builtin-arith-ood"]
    for r in (x.to_dict() for x in res.records):
        assert set(r) == RECORD_KEYS
        assert r["expert"] in (0, 1) and math.isclose(sum(r["probs"]), 1.0, rel_tol=1e-5)
        assert r["confidence"] == pytest.approx(r["probs"][r["expert"]])
        assert r["latency_s"] > 0 and isinstance(r["prediction"], str)
        ex = {"answers": r["gold"], "answer_type": r["answer_type"]}
        assert {k: r[k] for k in ("em", "f1", "correct", "score")} == score(r["prediction"], ex)
    assert [r.ood for r in res.records] == [False] * 3 + [True] * 3
    scores = res.scores()
    assert set(scores) == {"builtin-qa", "builtin-arith-ood", "macro", "in_domain", "out_of_domain"}
    assert scores["in_domain"]["n"] == 3 and scores["out_of_domain"]["n"] == 3
    table = res.to_table()
    assert "builtin-qa" in table and "macro" in table and "out_of_domain" in table and "experts" in table
    path = res.write_jsonl(tmp_path / "out" / "records.jsonl")
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [r.to_dict() for r in res.records]


def fake_generate(answer_for):
    """A stand-in for routed generation that answers from a lookup on the decoded prompt."""
    from ptmoe_core.generate import Generation

    def gen(adapter, encoded, *, max_new_tokens=32, batch_size=16, progress=None, **_):
        tok = adapter.base.tokenizer
        out = []
        for e in encoded:
            text = tok.decode(e["input_ids"])
            out.append(Generation(text=answer_for(text), token_ids=[], expert=1, probs=[0.25, 0.75],
                                  confidence=0.75, entropy=0.56, latency_s=0.01))
        return out

    return gen


def test_records_align_with_examples(adapter, monkeypatch):
    """Each record's prediction is scored against its own example (order kept across sets)."""
    import ptmoe_core.generate

    sets = {"arith": load_spec("builtin:arith", "test").select(range(6)),
            "dates": load_spec("builtin:dates-ood", "test").select(range(4))}
    gold = {ex["question"]: ex["answers"][0] for ds in sets.values() for ex in ds}
    wrong = set(list(gold)[:3])  # the first three arithmetic questions get a wrong answer

    def answer_for(prompt):
        q = next(q for q in gold if q in prompt)
        return "I am not sure, maybe 123456" if q in wrong else f"The answer is {gold[q]}"

    monkeypatch.setattr(ptmoe_core.generate, "generate", fake_generate(answer_for))
    res = evaluate(adapter, sets)
    assert [r.input for r in res.records] == [ex["question"] for ds in sets.values() for ex in ds]
    assert res.per_dataset["arith"] == {"n": 6, "em": 0.5, "f1": 0.5, "accuracy": 0.5}
    # dates are text answers: "The answer is Monday" is not an exact match but has token overlap
    d = res.per_dataset["dates"]
    assert d["em"] == 0.0 and 0 < d["f1"] < 1
    assert res.macro["accuracy"] == pytest.approx(0.25)
    assert res.in_domain["n"] == 6 and res.out_of_domain["n"] == 4
    assert res.expert_load == {"arith": [0.0, 1.0], "dates": [0.0, 1.0]}


def test_accepts_lists_of_examples_and_caps(adapter, monkeypatch):
    import ptmoe_core.generate

    monkeypatch.setattr(ptmoe_core.generate, "generate", fake_generate(lambda p: "7"))
    rows = load_spec("builtin:units", "test").select(range(10)).to_list()
    res = evaluate(adapter, rows, max_examples=4)
    assert list(res.per_dataset) == ["builtin-units"] and res.per_dataset["builtin-units"]["n"] == 4
    res = evaluate(adapter, {"mine": rows[:2]})
    assert res.per_dataset["mine"]["n"] == 2


def test_summarize_groups_hand_computed():
    def rec(ds, ood, em, f1, ok):
        return {"dataset": ds, "ood": ood, "em": em, "f1": f1, "correct": ok, "expert": None}

    records = [rec("a", False, 1.0, 1.0, True), rec("a", False, 0.0, 0.5, False),
               rec("b", False, 0.0, 0.0, False), rec("c", True, 1.0, 1.0, True)]
    res = summarize(records)
    assert res.per_dataset["a"] == {"n": 2, "em": 0.5, "f1": 0.75, "accuracy": 0.5}
    assert res.macro["em"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    assert res.in_domain["f1"] == pytest.approx((0.75 + 0.0) / 2) and res.in_domain["n"] == 3
    assert res.out_of_domain == {"n": 1, "em": 1.0, "f1": 1.0, "accuracy": 1.0}
    only_in = summarize(records[:3])
    assert only_in.out_of_domain is None and "in_domain" not in only_in.scores()
    assert "experts" not in only_in.to_table()


def test_cli_evaluate(adapter, tmp_path, capsys):
    from ptmoe_core.adapter import save_adapter
    from ptmoe_core.cli import main

    d = save_adapter(adapter, tmp_path / "adapter")
    out = tmp_path / "records.jsonl"
    rc = main(["evaluate", "--adapter", str(d), "--data", "builtin:arith", "--max-examples", "2",
               "--max-new-tokens", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "builtin-arith" in captured.out and "macro" in captured.out
    assert len(out.read_text().splitlines()) == 2
    assert main(["evaluate", "--adapter", str(d), "--data", "builtin:nope"]) == 2
    assert "unknown built-in task" in capsys.readouterr().err
