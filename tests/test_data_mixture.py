"""Mixing specs (weights, caps, max examples) and building a run's train / evaluation sets."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ptmoe_core.config import DataConfig
from ptmoe_core.data import build_datasets, mix
from ptmoe_core.data.mixture import allocate, eval_sets, run_eval_set_names, run_eval_sets, take
from ptmoe_core.data.schema import to_dataset
from ptmoe_core.errors import DataError


def small_file(tmp_path, name, n):
    p = tmp_path / f"{name}.jsonl"
    p.write_text("".join(json.dumps({"question": f"{name} {i}?", "answer": f"a{i}"}) + "\n" for i in range(n)))
    return p


def test_allocate_sums_exactly():
    assert allocate(10, [1, 1, 1]) == [4, 3, 3]
    assert allocate(7, [3, 1]) == [5, 2]
    assert sum(allocate(101, [0.2, 0.5, 0.3])) == 101


def test_take_subsets_and_oversamples():
    ds = to_dataset([{"id": str(i), "domain": "d", "question": "q", "context": "", "answers": ["a"],
                      "answer_type": "text", "split": "train", "ood": False} for i in range(5)])
    assert len(take(ds, 3, 0)) == 3 and len(set(take(ds, 3, 0)["id"])) == 3
    over = Counter(take(ds, 12, 0)["id"])
    assert sum(over.values()) == 12 and set(over.values()) <= {2, 3}  # two whole copies + 2 more


def test_natural_proportions_and_max_examples(tmp_path):
    a, b = small_file(tmp_path, "a", 100), small_file(tmp_path, "b", 300)
    full = mix([f"jsonl:{a}", f"jsonl:{b}"])
    assert Counter(full["domain"]) == {"a": 80, "b": 240}  # each source's train split (80%)
    part = mix([f"jsonl:{a}", f"jsonl:{b}"], max_examples=40)
    assert Counter(part["domain"]) == {"a": 10, "b": 30}


def test_weights_and_caps(tmp_path):
    a, b = small_file(tmp_path, "a", 100), small_file(tmp_path, "b", 300)
    w = mix([f"jsonl:{a}*3", f"jsonl:{b}"], max_examples=100)
    assert Counter(w["domain"]) == {"a": 75, "b": 25}
    up = mix([f"jsonl:{a}?weight=1", f"jsonl:{b}?weight=1"])  # total = 320, half each: a is repeated
    assert Counter(up["domain"]) == {"a": 160, "b": 160}
    assert len(set(up.filter(lambda r: r["domain"] == "a")["id"])) == 80
    capped = mix([f"jsonl:{a}@5", f"jsonl:{b}@7"])
    assert Counter(capped["domain"]) == {"a": 5, "b": 7}


def test_mix_is_seeded_and_shuffled(tmp_path):
    a, b = small_file(tmp_path, "a", 50), small_file(tmp_path, "b", 50)
    one = mix([f"jsonl:{a}", f"jsonl:{b}"], seed=1)
    assert one["id"] == mix([f"jsonl:{a}", f"jsonl:{b}"], seed=1)["id"]
    assert one["id"] != mix([f"jsonl:{a}", f"jsonl:{b}"], seed=2)["id"]
    assert one["domain"][:40] != sorted(one["domain"][:40])  # interleaved, not a then b


def test_build_datasets_default_builtin():
    train, evals = build_datasets(DataConfig(train=["builtin:all?n=20&n_eval=10"], max_eval_examples=4))
    assert len(train) == 80 and set(train["split"]) == {"train"}
    assert sorted(evals) == ["builtin-arith", "builtin-dates", "builtin-qa", "builtin-units"]
    for name, ds in evals.items():
        assert len(ds) == 4 and set(ds["domain"]) == {name} and set(ds["split"]) == {"validation"}


def test_build_datasets_with_eval_specs_and_limits(tmp_path, shared_data):
    cfg = DataConfig(
        train=["builtin:arith?n=30", f"gsm8k:{shared_data / 'gsm8k' / 'test.jsonl'}@50"],
        eval=["builtin:arith-ood", f"squad:{shared_data / 'squad' / 'squad-v2-sample.json'}"],
        max_train_examples=40, max_eval_examples=8, seed=5,
    )
    train, evals = build_datasets(cfg)
    assert len(train) == 40 and Counter(train["domain"]) == {"builtin-arith": 15, "gsm8k": 25}
    assert sorted(evals) == ["builtin-arith-ood", "squad-v2"]
    assert all(len(ds) == 8 and set(ds["split"]) == {"test"} for ds in evals.values())
    assert set(evals["builtin-arith-ood"]["ood"]) == {True}
    again = build_datasets(cfg)
    assert again[0]["id"] == train["id"] and again[1]["squad-v2"]["id"] == evals["squad-v2"]["id"]


def test_eval_sets_unique_names_and_empty_split(tmp_path):
    a = small_file(tmp_path, "a", 20)
    sets = eval_sets([f"jsonl:{a}", f"jsonl:{a}?split=all"])
    assert list(sets) == ["a", "a-2"] and len(sets["a-2"]) == 20
    tiny = small_file(tmp_path, "tiny", 2)
    with pytest.raises(DataError, match="test split is empty"):
        eval_sets([f"jsonl:{tiny}"])
    _, evals = build_datasets(DataConfig(train=[f"jsonl:{tiny}", "builtin:units?n=5&n_eval=2"]))
    assert list(evals) == ["builtin-units"]  # the fallback skips a source without validation rows


def test_mix_errors():
    with pytest.raises(DataError, match="no data specs"):
        mix([])


def test_a_runs_evaluation_sets_by_name_and_whole():
    """The names come from the specs alone and match the sets' names; ``capped=False`` keeps every row."""
    cfg = DataConfig(train=["builtin:all?n=8&n_eval=6"], eval=["builtin:arith-ood?n_eval=6", "builtin:qa?domain=mine&n_eval=6"],
                     max_eval_examples=2)
    assert run_eval_set_names(cfg) == ["builtin-arith-ood", "mine"] == list(run_eval_sets(cfg))
    assert [len(x) for x in run_eval_sets(cfg).values()] == [2, 2]
    assert [len(x) for x in run_eval_sets(cfg, capped=False).values()] == [6, 6]
    no_eval = DataConfig(train=["builtin:all?n=8&n_eval=6"], eval=[])
    assert run_eval_set_names(no_eval) == [f"builtin-{t}" for t in ("qa", "arith", "units", "dates")]
    assert sorted(run_eval_set_names(no_eval)) == sorted(run_eval_sets(no_eval))
