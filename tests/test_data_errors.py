"""Bad input: each case raises one DataError naming the file, line or column, and the CLI exits 2."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from ptmoe_core.data import load_spec
from ptmoe_core.errors import DataError


def error_of(spec, **kw) -> str:
    with pytest.raises(DataError) as e:
        load_spec(spec, **kw)
    msg = str(e.value)
    assert "\n" not in msg  # one line
    return msg


def test_malformed_json_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"question": "a", "answer": "so #### 4"}\n\n{"question": "c", "answer": \n', encoding="utf-8")
    msg = error_of(f"jsonl:{p}")
    assert str(p) in msg and "line 3" in msg and "malformed JSON" in msg
    assert "line 3" in error_of(f"gsm8k:{p}")


def test_malformed_squad_json(tmp_path):
    p = tmp_path / "squad.json"
    p.write_text('{"version": "v2.0",\n "data": [\n  {"title": oops}]}', encoding="utf-8")
    msg = error_of(f"squad:{p}")
    assert str(p) in msg and "line 3" in msg
    p.write_text(json.dumps({"version": "v2.0", "articles": []}), encoding="utf-8")
    assert "expected a top-level 'data' list" in error_of(f"squad:{p}")


def test_json_line_that_is_not_an_object(tmp_path):
    p = tmp_path / "list.jsonl"
    p.write_text('{"question": "a", "answer": "b"}\n[1, 2]\n', encoding="utf-8")
    assert "line 2: expected a JSON object, got list" in error_of(f"jsonl:{p}")


def test_missing_column_lists_columns_found(tmp_path):
    p = tmp_path / "cols.jsonl"
    p.write_text(json.dumps({"text": "x", "reply": "y"}) + "\n", encoding="utf-8")
    msg = error_of(f"jsonl:{p}")
    assert "no question column" in msg and "columns found: text, reply" in msg and str(p) in msg
    msg = error_of(f"jsonl:{p}?question=text&answer=gold")
    assert "column 'gold' (answer=) not found" in msg and "columns found: text, reply" in msg
    # present in the file but missing on one line: that line is named
    q = tmp_path / "ragged.jsonl"
    q.write_text(json.dumps({"question": "a", "answer": "b"}) + "\n" + json.dumps({"question": "c"}) + "\n",
                 encoding="utf-8")
    msg = error_of(f"jsonl:{q}")
    assert "line 2: missing column 'answer'" in msg and "columns found: question" in msg
    g = tmp_path / "gsm.jsonl"
    g.write_text(json.dumps({"question": "a", "solution": "#### 1"}) + "\n", encoding="utf-8")
    assert "line 1: missing column 'answer' (columns found: question, solution)" in error_of(f"gsm8k:{g}")


def test_missing_column_csv_and_parquet(tmp_path):
    c = tmp_path / "t.csv"
    c.write_text("prompt_text,gold\nhi,there\n", encoding="utf-8")
    assert "columns found: prompt_text, gold" in error_of(f"csv:{c}")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"q": ["a"], "a": ["b"]}), tmp_path / "t.parquet")
    msg = error_of(f"parquet:{tmp_path / 't.parquet'}?question=q&answer=ans")
    assert "column 'ans' (answer=) not found; columns found: q, a" in msg


def test_csv_row_with_extra_cells(tmp_path):
    c = tmp_path / "t.csv"
    c.write_text("question,answer\na,b\nc,d,e\n", encoding="utf-8")
    assert "line 3: 3 cells but the header has 2 columns" in error_of(f"csv:{c}")


def test_empty_file_and_empty_split(tmp_path):
    for name, prefix in (("e.jsonl", "jsonl"), ("e.csv", "csv"), ("e.json", "squad")):
        p = tmp_path / name
        p.write_text("", encoding="utf-8")
        assert f"{p}: file is empty" in error_of(f"{prefix}:{p}")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n", encoding="utf-8")
    assert "file is empty" in error_of(f"jsonl:{blank}")
    header_only = tmp_path / "h.csv"
    header_only.write_text("question,answer\n", encoding="utf-8")
    assert "no rows" in error_of(f"csv:{header_only}")
    two = tmp_path / "two.jsonl"
    two.write_text("".join(json.dumps({"question": f"q{i}", "answer": "a"}) + "\n" for i in range(2)), encoding="utf-8")
    msg = error_of(f"jsonl:{two}", split="test")
    assert "the test split is empty" in msg and "train=2" in msg
    no_gold = tmp_path / "nogold.jsonl"
    no_gold.write_text(json.dumps({"question": "q", "answer": ""}) + "\n", encoding="utf-8")
    assert "no examples with a gold answer in column 'answer'" in error_of(f"jsonl:{no_gold}")


def test_unknown_prefix_lists_known_ones():
    msg = error_of("tsv:/data/x.tsv")
    assert "unknown data source prefix 'tsv'" in msg
    for known in ("squad", "mrqa", "gsm8k", "jsonl", "csv", "parquet", "hf", "builtin"):
        assert known in msg
    assert "known: qa, arith, units, dates, all" in error_of("builtin:poetry")


def test_missing_file_and_directory(tmp_path):
    assert f"{tmp_path / 'nope.jsonl'}: file not found" in error_of(f"jsonl:{tmp_path / 'nope.jsonl'}")
    (tmp_path / "notes.txt").write_text("x")
    msg = error_of(f"jsonl:{tmp_path}")
    assert "no train/dev/validation/test file" in msg and "notes.txt" in msg


def test_unreadable_file(tmp_path, monkeypatch):
    p = tmp_path / "locked.jsonl"
    p.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n", encoding="utf-8")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "read_bytes", denied)
    monkeypatch.setattr(pathlib.Path, "open", denied)  # line formats are streamed
    msg = error_of(f"jsonl:{p}")
    assert str(p) in msg and "cannot read file: Permission denied" in msg


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_mode(tmp_path):
    p = tmp_path / "locked.jsonl"
    p.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n", encoding="utf-8")
    p.chmod(0)
    try:
        assert "not readable" in error_of(f"jsonl:{p}")
    finally:
        p.chmod(0o644)


def test_non_utf8_file_names_line(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(b'{"question": "ok", "answer": "a"}\n{"question": "caf\xe9", "answer": "b"}\n')
    msg = error_of(f"jsonl:{p}")
    assert str(p) in msg and "line 2" in msg and "not UTF-8" in msg and "0xe9" in msg
    c = tmp_path / "latin1.csv"
    c.write_bytes("question,answer\nna\xefve,x\n".encode("latin-1"))
    assert "line 2: not UTF-8" in error_of(f"csv:{c}")
    bom = tmp_path / "bom.jsonl"  # a UTF-8 byte-order mark is fine
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps({"question": "q", "answer": "a"}).encode() + b"\n")
    assert load_spec(f"jsonl:{bom}", "all")["question"] == ["q"]


def test_not_gzip(tmp_path):
    p = tmp_path / "fake.jsonl.gz"
    p.write_text("plain text", encoding="utf-8")
    assert "not a valid gzip file" in error_of(f"jsonl:{p}")


def test_not_parquet(tmp_path):
    p = tmp_path / "fake.parquet"
    p.write_text("question,answer\n", encoding="utf-8")
    assert f"{p}: not a readable Parquet file" in error_of(f"parquet:{p}")


def test_file_over_size_limit(tmp_path, monkeypatch):
    p = tmp_path / "big.jsonl"
    p.write_text("".join(json.dumps({"question": f"q{i}", "answer": "a"}) + "\n" for i in range(50)), encoding="utf-8")
    msg = error_of(f"jsonl:{p}", max_bytes=100)
    assert str(p) in msg and "over the 100 bytes limit" in msg
    monkeypatch.setenv("PTMOE_DATA_MAX_BYTES", "200")
    assert "over the 200 bytes limit" in error_of(f"jsonl:{p}")
    monkeypatch.delenv("PTMOE_DATA_MAX_BYTES")
    assert len(load_spec(f"jsonl:{p}", "all")) == 50  # the default 200 MB limit lets it through


def test_hf_offline_names_the_data_set(monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    msg = error_of("hf:ptmoe-test/no-such-set-1a2b3c:default:train")
    assert "'ptmoe-test/no-such-set-1a2b3c'" in msg and "Hub is unreachable (offline)" in msg


def test_cli_exits_2_with_one_line(tmp_path, capsys):
    from ptmoe_core.cli import main

    p = tmp_path / "bad.jsonl"
    p.write_text('{"question": "a", "answer": "b"}\n{oops\n', encoding="utf-8")
    assert main(["data", f"jsonl:{p}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "line 2" in err and str(p) in err
    assert main(["data", "nope:x"]) == 2
    assert "unknown data source prefix" in capsys.readouterr().err
