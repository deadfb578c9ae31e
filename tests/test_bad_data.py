"""Sizes bounded before the work they cost (built-in generation, unzipped bytes, decoded Parquet rows;
previews read only the rows they show), and Hub specs that never read local files."""

from __future__ import annotations

import gzip
import json

import pytest

from ptmoe_core.errors import DataError


def test_builtin_sizes_are_bounded_at_parse_time():
    from ptmoe_core.data import parse_spec

    for spec in ("builtin:all?n=100000000", "builtin:arith?n_eval=10000000"):
        with pytest.raises(DataError, match="between 0 and 50,000"):
            parse_spec(spec)
    assert parse_spec("builtin:all?n=50000").options["n"] == "50000"


def test_gzip_unpacked_bytes_are_capped_and_previews_stream(tmp_path):
    from ptmoe_core.data import load_spec, preview

    p = tmp_path / "bomb.jsonl.gz"
    line = json.dumps({"question": "What is " + "x" * 200 + "?", "answer": "4"}) + "\n"
    with gzip.open(p, "wt") as f:
        for _ in range(20_000):  # ~4.5 MB unpacked from a few kilobytes
            f.write(line)
    assert p.stat().st_size < 100_000
    rows = preview(f"jsonl:{p}", 3, max_bytes=1024 * 1024)  # reads three lines, not the 4.5 MB
    assert len(rows) == 3 and rows[0]["split"] == "unsplit"
    with pytest.raises(DataError, match="unzipped content is over the 1.0 MB limit"):
        load_spec(f"jsonl:{p}", max_bytes=1024 * 1024)


def test_parquet_bomb_preview_reads_only_the_rows_shown(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ptmoe_core.data import load_spec, preview

    n = 1_500_000  # compresses to kilobytes, decodes to hundreds of MB of Python objects
    table = pa.table({"question": pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int8()), ["What is 2+2?"]),
                      "answer": pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int8()), ["4"])})
    p = tmp_path / "bomb.parquet"
    pq.write_table(table, p, row_group_size=100_000)
    del table
    assert p.stat().st_size < 200_000

    def whole_table(*a, **k):
        raise AssertionError("the preview read the whole table")

    monkeypatch.setattr(pq, "read_table", whole_table)
    rows = preview(f"parquet:{p}", 3)
    assert [r["question"] for r in rows] == ["What is 2+2?"] * 3
    with pytest.raises(DataError, match="1,500,000 rows, over the 1,000,000-row limit"):
        load_spec(f"parquet:{p}")


@pytest.mark.parametrize("spec", ["hf:text::validation?question=text&answer=text", "hf:json", "hf:CSV",
                                  "hf:parquet:x", "hf:imagefolder", "hf:generator", "hf:sql"])
def test_hf_refuses_the_datasets_builtin_readers(spec, monkeypatch):
    import datasets

    from ptmoe_core.data import load_spec

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("load_dataset was called"))
    with pytest.raises(DataError, match="built-in readers"):
        load_spec(spec)


def test_hf_never_reads_a_local_path(tmp_path, monkeypatch):
    import datasets

    from ptmoe_core.data import load_spec

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("load_dataset was called"))
    (tmp_path / "owner" / "set").mkdir(parents=True)
    (tmp_path / "owner" / "set" / "train.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    monkeypatch.chdir(tmp_path)
    for spec in ("hf:owner/set", f"hf:{tmp_path}", "hf:../x", "hf:./owner"):
        with pytest.raises(DataError, match="local path"):
            load_spec(spec)
    with pytest.raises(DataError, match="not a Hub data set id"):
        load_spec("hf:a/b/c")
