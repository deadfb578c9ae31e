"""Spec parsing and every loader, on the real shared files and on small files written here."""

from __future__ import annotations

import gzip
import json

import datasets
import pytest

from ptmoe_core.data import COLUMNS, load_spec, parse_spec, preview, spec_name
from ptmoe_core.errors import DataError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def check_schema(ds: datasets.Dataset):
    assert tuple(ds.column_names) == COLUMNS
    for r in ds:
        assert r["answers"] and all(isinstance(a, str) and a for a in r["answers"])
        assert r["answer_type"] in ("span", "number", "text")
        assert r["split"] in ("train", "validation", "test")


# ---------------------------------------------------------------------------------------------
# Spec syntax


def test_parse_spec_options_cap_weight():
    s = parse_spec("jsonl:data/x.jsonl?question=q&answer=a@200*2.5")
    assert (s.prefix, s.arg) == ("jsonl", "data/x.jsonl")
    assert s.options["question"] == "q" and s.cap == 200 and s.weight == 2.5
    s = parse_spec("builtin:arith?cap=10&weight=3&split=VAL")
    assert s.cap == 10 and s.weight == 3.0 and s.split == "validation"
    assert parse_spec("squad:C:\\data\\dev.json").arg == "C:\\data\\dev.json"  # only the first colon splits


@pytest.mark.parametrize(
    "bad, needle",
    [
        ("nonsense", "PREFIX:ARG"),
        ("jsonl:", "nothing after"),
        ("jsonl:x.jsonl?colour=red", "unknown option(s) colour"),
        ("squad:x.json?unanswerable=maybe", "drop' or 'keep"),
        ("builtin:arith?weight=0", "weight must be a number > 0"),
        ("builtin:arith?split=holdout", "unknown split 'holdout'"),
        ("jsonl:x.jsonl?type=bool", "span, number or text"),
    ],
)
def test_bad_specs(bad, needle):
    with pytest.raises(DataError, match=None) as e:
        parse_spec(bad)
    assert needle in str(e.value)


def test_spec_names():
    assert spec_name("builtin:arith-ood") == "builtin-arith-ood"
    assert spec_name("hf:rajpurkar/squad_v2") == "squad_v2"
    assert spec_name("hf:openai/gsm8k:main:train") == "gsm8k-main"
    assert spec_name("csv:/tmp/my_set.tsv") == "my_set"
    assert spec_name("jsonl:x.jsonl?domain=medical") == "medical"


# ---------------------------------------------------------------------------------------------
# Real files


def test_gsm8k_real_file(shared_data):
    dd = load_spec(f"gsm8k:{shared_data / 'gsm8k' / 'train.jsonl'}")
    sizes = {k: len(v) for k, v in dd.items()}
    assert sum(sizes.values()) == 7473  # every line, nothing dropped
    assert sizes["validation"] == sizes["test"] == 747  # 10% each by default
    first = dd["train"][0]
    assert first["question"].startswith("Natalia sold clips")
    assert first["answers"] == ["72"] and first["answer_type"] == "number" and first["domain"] == "gsm8k"
    check_schema(dd["test"])
    # the same seed gives the same split; another seed another one
    again = load_spec(f"gsm8k:{shared_data / 'gsm8k' / 'train.jsonl'}", "test")
    assert again["id"] == dd["test"]["id"]
    other = load_spec(f"gsm8k:{shared_data / 'gsm8k' / 'train.jsonl'}", "test", seed=1)
    assert other["id"] != dd["test"]["id"]


def test_gsm8k_directory_uses_its_test_file(shared_data):
    dd = load_spec(f"gsm8k:{shared_data / 'gsm8k'}")
    assert len(dd["test"]) == 1000  # test.jsonl as is
    assert len(dd["train"]) + len(dd["validation"]) == 7473  # validation carved from train.jsonl
    assert len(dd["validation"]) == 747


def test_gsm8k_rationale_removes_calculator_notes(shared_data):
    ds = load_spec(f"gsm8k:{shared_data / 'gsm8k' / 'test.jsonl'}?rationale=true", "all")
    assert len(ds) == 1000
    for r in ds.select(range(50)):
        assert "<<" not in r["answers"][0] and r["answers"][0].rstrip().endswith(".")
        assert "The answer is " in r["answers"][0]


def test_squad_v2_real_file(shared_data):
    path = shared_data / "squad" / "squad-v2-sample.json"
    dropped = load_spec(f"squad:{path}", "all")
    assert len(dropped) == 581  # the answerable questions only (the default)
    kept = load_spec(f"squad:{path}?unanswerable=keep", "all")
    assert len(kept) == 1160
    assert sum(r["answers"] == ["unanswerable"] for r in kept) == 579
    r = dropped[0]
    assert r["domain"] == "squad-v2" and r["answer_type"] == "span"
    assert r["question"] == "In what country is Normandy located?" and r["answers"] == ["France"]  # de-duplicated
    assert all(a in r["context"] for a in r["answers"])
    check_schema(dropped)


def test_squad_split_keeps_passages_together(shared_data):
    dd = load_spec(f"squad:{shared_data / 'squad' / 'squad-v2-sample.json'}")
    contexts = {k: set(v["context"]) for k, v in dd.items()}
    assert not contexts["train"] & contexts["test"]
    assert not contexts["train"] & contexts["validation"]
    assert not contexts["validation"] & contexts["test"]
    assert all(len(v) > 0 for v in dd.values())


def test_preview_real_file(shared_data):
    rows = preview(f"squad:{shared_data / 'squad' / 'squad-v2-sample.json'}", 3)
    assert len(rows) == 3 and all(set(r) == set(COLUMNS) for r in rows)


# ---------------------------------------------------------------------------------------------
# Small files


def test_jsonl_auto_and_explicit_columns(tmp_path):
    p = write_jsonl(tmp_path / "qa.jsonl", [
        {"query": "2+2?", "output": 4},
        {"query": "Capital of France?", "output": ["Paris", "paris"], "passage": "Paris is the capital of France."},
        {"query": "Colour of grass?", "output": "green"},
    ])
    ds = load_spec(f"jsonl:{p}", "all")
    assert [r["answer_type"] for r in ds] == ["number", "span", "text"]
    assert ds[0]["answers"] == ["4"] and ds[1]["context"] == "Paris is the capital of France."
    assert ds[0]["domain"] == "qa"
    p2 = write_jsonl(tmp_path / "m.jsonl", [{"q": f"q{i}", "a": f"a{i}", "key": f"k{i}"} for i in range(10)])
    ds2 = load_spec(f"jsonl:{p2}?question=q&answer=a&id=key&type=text&domain=mine", "all")
    assert sorted(ds2["id"]) == sorted(f"k{i}" for i in range(10))
    assert set(ds2["domain"]) == {"mine"} and set(ds2["answer_type"]) == {"text"}


def test_jsonl_squad_style_answers_and_unanswerable(tmp_path):
    p = write_jsonl(tmp_path / "s.jsonl", [
        {"question": "Who?", "context": "Ann met Bo.", "answers": {"text": ["Ann", "Ann"], "answer_start": [0, 0]}},
        {"question": "Why?", "context": "Ann met Bo.", "answers": {"text": [], "answer_start": []}},
    ])
    assert load_spec(f"jsonl:{p}", "all")["answers"] == [["Ann"]]
    assert load_spec(f"jsonl:{p}?unanswerable=keep", "all")["answers"] == [["Ann"], ["unanswerable"]]


def test_jsonl_gzip_and_gsm8k_format(tmp_path):
    p = tmp_path / "math.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        for i in range(4):
            f.write(json.dumps({"problem": f"What is {i}+1?", "solution": f"{i}+1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}"}) + "\n")
    ds = load_spec(f"jsonl:{p}?format=gsm8k", "all")
    assert sorted(ds["answers"]) == [["1"], ["2"], ["3"], ["4"]]
    assert set(ds["answer_type"]) == {"number"}


def test_csv_and_tsv(tmp_path):
    p = tmp_path / "set.csv"
    p.write_text('question,answer,context\n"Where, exactly?",Rome,"It was in Rome."\nHow many?,"1,000",\n', encoding="utf-8")
    ds = load_spec(f"csv:{p}", "all")
    assert ds["question"] == ["Where, exactly?", "How many?"]
    assert ds["answers"] == [["Rome"], ["1,000"]] and ds["answer_type"] == ["span", "number"]
    t = tmp_path / "set.tsv"
    t.write_text("input\ttarget\nhello\tworld\n", encoding="utf-8")
    assert load_spec(f"csv:{t}", "all")["answers"] == [["world"]]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "set.parquet"
    pq.write_table(pa.table({"prompt": ["a?", "b?", "c?"], "label": [1, 2, 3], "doc": ["x", "y", "z"]}), p)
    ds = load_spec(f"parquet:{p}?context=doc", "all")
    assert ds["answers"] == [["1"], ["2"], ["3"]] and ds["context"] == ["x", "y", "z"]


def test_mrqa(tmp_path):
    p = write_jsonl(tmp_path / "SQuAD.jsonl", [
        {"header": {"dataset": "SQuAD", "split": "dev"}},
        {"context": "Ada wrote notes. Bo read them.", "qas": [
            {"qid": "q1", "question": "Who wrote notes?", "answers": ["Ada"]},
            {"qid": "q2", "question": "Who read?", "answers": ["Bo", "Bo"]},
        ]},
        {"context": "Cy sang.", "qas": [{"qid": "q3", "question": "Who sang?", "answers": ["Cy"]}]},
    ])
    ds = load_spec(f"mrqa:{p}", "all")
    assert sorted(ds["id"]) == ["q1", "q2", "q3"]
    assert set(ds["domain"]) == {"mrqa-squad"} and set(ds["answer_type"]) == {"span"}
    assert ds.filter(lambda r: r["id"] == "q2")[0]["answers"] == ["Bo"]
    gz = tmp_path / "x.jsonl.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert len(load_spec(f"mrqa:{gz}", "all")) == 3


def test_squad_directory(tmp_path):
    def squad(qs):
        return {"version": "v1.1", "data": [{"title": "T", "paragraphs": [
            {"context": f"passage {i} says {i}", "qas": [{"id": f"id{i}", "question": f"q{i}?",
                                                        "answers": [{"text": str(i), "answer_start": 0}]}]}
            for i in qs]}]}

    (tmp_path / "train-v1.1.json").write_text(json.dumps(squad(range(20))))
    (tmp_path / "dev-v1.1.json").write_text(json.dumps(squad(range(20, 25))))
    dd = load_spec(f"squad:{tmp_path}")
    assert len(dd["validation"]) == 5 and len(dd["train"]) + len(dd["test"]) == 20  # test carved from train
    assert set(dd["train"]["domain"]) == {"squad"}


def test_limit_cap_and_split_option(tmp_path):
    p = write_jsonl(tmp_path / "n.jsonl", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(100)])
    dd = load_spec(f"jsonl:{p}?val=0.2&test=0.3")
    assert {k: len(v) for k, v in dd.items()} == {"train": 50, "validation": 20, "test": 30}
    train = load_spec(f"jsonl:{p}", "train")
    capped = load_spec(f"jsonl:{p}@7", "train")
    assert len(capped) == 7 and set(capped["id"]) <= set(train["id"])
    ids = capped["id"]
    assert ids == [i for i in train["id"] if i in set(ids)]  # file order kept
    assert load_spec(f"jsonl:{p}@7", "train", seed=1)["id"] != ids
    assert len(load_spec(f"jsonl:{p}", limit=3)["test"]) == 3
    one = load_spec(f"jsonl:{p}?split=all")
    assert isinstance(one, datasets.Dataset) and one["question"] == [f"q{i}" for i in range(100)]  # file order
    assert [r["question"] for r in preview(f"jsonl:{p}?split=all", 3)] == ["q0", "q1", "q2"]
    # keyword options win over the spec's own
    assert len(load_spec(f"jsonl:{p}?test=0.5", "test", test=0.1)) == 10


def test_hf_loader_reads_local_cache_free_script(tmp_path, monkeypatch):
    """hf: maps columns of whatever load_dataset returns (stubbed here: no network in tests)."""
    fake = datasets.DatasetDict({
        "train": datasets.Dataset.from_list([{"question": f"q{i}", "answers": {"text": [f"a{i}"]}, "context": f"a{i} b"}
                                             for i in range(30)]),
        "validation": datasets.Dataset.from_list([{"question": "vq", "answers": {"text": ["va"]}, "context": "va"}]),
    })
    calls = []

    def fake_load(name, config=None, split=None):
        calls.append((name, config, split))
        return fake

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    dd = load_spec("hf:someone/qa")
    assert calls == [("someone/qa", None, None)]
    assert len(dd["validation"]) == 1 and len(dd["train"]) + len(dd["test"]) == 30
    assert set(dd["train"]["domain"]) == {"qa"} and set(dd["train"]["answer_type"]) == {"span"}
