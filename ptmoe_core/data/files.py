"""Reading user files defensively: every failure becomes one ``DataError`` naming file and line.

People upload whatever they have, so a bad byte, a truncated JSON line or a 5 GB file must say
exactly what is wrong instead of surfacing a library traceback. Every size is bounded before the work
it costs: file bytes (after unzipping too), rows per file, decoded Parquet bytes, JSON nesting; line
formats and Parquet are streamed, so a preview reads only the rows it shows.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError

DEFAULT_MAX_BYTES = 200 * 1024 * 1024  # 200 MB; PTMOE_DATA_MAX_BYTES or max_bytes= overrides
MAX_BYTES_ENV = "PTMOE_DATA_MAX_BYTES"
DEFAULT_MAX_ROWS = 1_000_000  # rows per file (SQuAD v2 train has 130k); PTMOE_DATA_MAX_ROWS overrides
MAX_ROWS_ENV = "PTMOE_DATA_MAX_ROWS"


def max_bytes_limit(max_bytes: int | None = None) -> int:
    if max_bytes is not None:
        return int(max_bytes)
    return _env_limit(MAX_BYTES_ENV, DEFAULT_MAX_BYTES, "bytes")


def _env_limit(name: str, default: int, unit: str) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{name}={value!r} is not a number of {unit}") from None


def check_file(path: str | Path, max_bytes: int | None = None, whole: bool = True) -> Path:
    """The path of a readable, non-empty regular file within the size limit (``whole=False``: the file
    is read only in part, a preview, so only the bytes read count against the limit)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a file")
    if not os.access(p, os.R_OK):
        raise DataError(f"{p}: file is not readable (permission denied)")
    size = p.stat().st_size
    limit = max_bytes_limit(max_bytes)
    if whole and size > limit:
        raise DataError(
            f"{p}: file is {_mb(size)}, over the {_mb(limit)} limit (raise it with max_bytes= or {MAX_BYTES_ENV})"
        )
    if size == 0:
        raise DataError(f"{p}: file is empty")
    return p


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n} bytes"


def read_bytes(path: str | Path, max_bytes: int | None = None) -> bytes:
    """File bytes, gunzipped when the name ends in ``.gz`` (the limit applies after unzipping too)."""
    p = check_file(path, max_bytes)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"{p}: cannot read file: {e.strerror or e}") from e
    if p.suffix.lower() != ".gz":
        return raw
    limit = max_bytes_limit(max_bytes)
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            raw = f.read(limit + 1)
    except (OSError, EOFError) as e:
        raise DataError(f"{p}: not a valid gzip file: {e}") from None
    if len(raw) > limit:
        raise DataError(f"{p}: unzipped content is over the {_mb(limit)} limit")
    if not raw.strip():
        raise DataError(f"{p}: file is empty")
    return raw


def read_text(path: str | Path, max_bytes: int | None = None) -> str:
    """UTF-8 text (a BOM is allowed); other encodings are refused with the offending line."""
    raw = read_bytes(path, max_bytes)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{Path(path)}, line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8"
        ) from None
    if not text.strip():
        raise DataError(f"{Path(path)}: file is empty")
    return text


def read_json(path: str | Path, max_bytes: int | None = None) -> Any:
    text = read_text(path, max_bytes)
    return _loads(text, f"{Path(path)}", 1)


def _loads(text: str, where: str, lineno: int) -> Any:
    """One JSON value; malformed or absurdly nested JSON is a ``DataError`` naming the line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}, line {lineno + e.lineno - 1}: malformed JSON ({e.msg}, column {e.colno})") from None
    except RecursionError:
        raise DataError(f"{where}, line {lineno}: JSON nested too deeply to be a data row") from None


def iter_lines(path: str | Path, max_bytes: int | None = None, whole: bool = True) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line, streamed: a preview that stops early reads only its lines.
    ``.gz`` files are unzipped on the fly; the byte limit counts the unzipped bytes."""
    p = check_file(path, max_bytes, whole)
    limit = max_bytes_limit(max_bytes)
    gz = p.suffix.lower() == ".gz"
    seen = 0
    try:
        raw_file = p.open("rb")
    except OSError as e:
        raise DataError(f"{p}: cannot read file: {e.strerror or e}") from None
    try:
        with raw_file, (gzip.GzipFile(fileobj=raw_file) if gz else raw_file) as f:
            lineno = 0
            while True:
                # At most the bytes left under the limit (+1 to notice going over): a 300 MB line
                # unzipped from a few hundred KB is never held whole, only up to the limit.
                raw = f.readline(limit - seen + 1)
                if not raw:
                    break
                lineno += 1
                seen += len(raw)
                if seen > limit:
                    what = "unzipped content" if gz else "file"
                    raise DataError(f"{p}: {what} is over the {_mb(limit)} limit (raise it with max_bytes= or "
                                    f"{MAX_BYTES_ENV})")
                try:
                    text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{p}, line {lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x}); "
                                    "save the file as UTF-8") from None
                yield lineno, text.rstrip("\r\n")
    except (OSError, EOFError) as e:  # BadGzipFile is an OSError
        raise DataError(f"{p}: " + (f"not a valid gzip file: {e}" if gz else f"cannot read file: {e.strerror or e}")) from None


def iter_jsonl(path: str | Path, max_bytes: int | None = None,
               max_rows: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line (the first ``max_rows`` only, when given); a line
    that is not a JSON object is an error, and so is a file of more than ``max_rows_limit()`` rows."""
    cap = row_cap(max_rows)
    n = 0
    for lineno, line in iter_lines(path, max_bytes, whole=not cap.preview):
        if not line.strip():
            continue
        if n >= cap.rows:
            if cap.preview:
                return
            raise cap.error(path)
        obj = _loads(line, f"{Path(path)}", lineno)
        if not isinstance(obj, dict):
            raise DataError(f"{Path(path)}, line {lineno}: expected a JSON object, got {type(obj).__name__}")
        n += 1
        yield lineno, obj
    if n == 0:
        raise DataError(f"{Path(path)}: file is empty")


def read_csv(path: str | Path, max_bytes: int | None = None,
             max_rows: int | None = None) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """(header columns, [(line number, row)]); ``.tsv`` files are tab-separated. Streamed: with
    ``max_rows`` only that many rows are read."""
    p = Path(path)
    delimiter = "\t" if p.suffix.lower() in (".tsv", ".tab") or p.name.lower().endswith(".tsv.gz") else ","
    cap = row_cap(max_rows)
    reader = csv.DictReader((line for _, line in iter_lines(p, max_bytes, whole=not cap.preview)), delimiter=delimiter)
    try:
        columns = list(reader.fieldnames or [])
        rows: list[tuple[int, dict[str, Any]]] = []
        for row in reader:
            if None in row:  # more cells than header columns
                raise DataError(f"{p}, line {reader.line_num}: {len(columns) + len(row[None])} cells but the header "
                                f"has {len(columns)} columns ({', '.join(columns)})")
            if any(v is not None and v != "" for v in row.values()):
                if len(rows) >= cap.rows:
                    if cap.preview:
                        break
                    raise cap.error(p)
                rows.append((reader.line_num, row))
    except csv.Error as e:
        raise DataError(f"{p}, line {reader.line_num}: malformed CSV ({e})") from None
    if not columns:
        raise DataError(f"{p}: file is empty")
    return columns, rows


def read_parquet(path: str | Path, max_bytes: int | None = None,
                 max_rows: int | None = None) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """(columns, [(row number, row)]) from a Parquet file, read batch by batch: a few kilobytes of
    Parquet can decode to gigabytes, so the row count is checked from the footer before reading and
    the decoded bytes are counted against the byte limit as batches arrive."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cap = row_cap(max_rows)
    p = check_file(path, max_bytes, whole=not cap.preview)
    limit = max_bytes_limit(max_bytes)
    try:
        pf = pq.ParquetFile(p)
        if not cap.preview and pf.metadata.num_rows > cap.rows:
            raise cap.error(p, pf.metadata.num_rows)
        # The footer gives every column chunk's decompressed size: a few KB holding one 300 MB string
        # is refused here, before a page is decoded (counting batches afterwards would be too late).
        md = pf.metadata
        groups = [md.row_group(g) for g in range(min(md.num_row_groups, 1) if cap.preview else md.num_row_groups)]
        if sum(rg.column(c).total_uncompressed_size for rg in groups for c in range(rg.num_columns)) > limit:
            raise DataError(f"{p}: decoded content is over the {_mb(limit)} limit (raise it with max_bytes= "
                            f"or {MAX_BYTES_ENV})")
        columns = list(pf.schema_arrow.names)
        rows: list[tuple[int, dict[str, Any]]] = []
        decoded = 0
        for batch in pf.iter_batches(batch_size=max(1, min(cap.rows, 10_000))):
            decoded += batch.nbytes
            if decoded > limit:
                raise DataError(f"{p}: decoded content is over the {_mb(limit)} limit (raise it with max_bytes= "
                                f"or {MAX_BYTES_ENV})")
            for row in batch.to_pylist():
                if len(rows) >= cap.rows:
                    return columns, rows
                rows.append((len(rows) + 1, row))
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{p}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    return columns, rows


@dataclass(frozen=True)
class RowCap:
    """How many rows a reader takes: a preview's ``n`` (then stop quietly), else the file row limit
    (then refuse the file)."""

    rows: int
    preview: bool

    def error(self, path: str | Path, found: int | None = None) -> DataError:
        more = f"{found:,} rows" if found is not None else f"more than {self.rows:,} rows"
        return DataError(f"{Path(path)}: {more}, over the {self.rows:,}-row limit per file (raise it with "
                         f"{MAX_ROWS_ENV}, or split the file)")


def row_cap(max_rows: int | None) -> RowCap:
    if max_rows is not None:
        return RowCap(max(0, int(max_rows)), True)
    return RowCap(max_rows_limit(), False)


def max_rows_limit() -> int:
    return _env_limit(MAX_ROWS_ENV, DEFAULT_MAX_ROWS, "rows")
