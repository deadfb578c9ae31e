"""Reading user files defensively: every failure becomes one ``DataError`` naming file and line.

People upload whatever they have, so a bad byte, a truncated JSON line or a 5 GB file must say
exactly what is wrong instead of surfacing a library traceback.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError

DEFAULT_MAX_BYTES = 200 * 1024 * 1024  # 200 MB; PTMOE_DATA_MAX_BYTES or max_bytes= overrides
MAX_BYTES_ENV = "PTMOE_DATA_MAX_BYTES"


def max_bytes_limit(max_bytes: int | None = None) -> int:
    if max_bytes is not None:
        return int(max_bytes)
    env = os.environ.get(MAX_BYTES_ENV)
    if env:
        try:
            return int(env)
        except ValueError:
            raise DataError(f"{MAX_BYTES_ENV}={env!r} is not a number of bytes") from None
    return DEFAULT_MAX_BYTES


def check_file(path: str | Path, max_bytes: int | None = None) -> Path:
    """The path of a readable, non-empty regular file within the size limit."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a file")
    if not os.access(p, os.R_OK):
        raise DataError(f"{p}: file is not readable (permission denied)")
    size = p.stat().st_size
    limit = max_bytes_limit(max_bytes)
    if size > limit:
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
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{Path(path)}, line {e.lineno}: malformed JSON ({e.msg}, column {e.colno})") from None


def iter_jsonl(path: str | Path, max_bytes: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a line that is not a JSON object is an error."""
    text = read_text(path, max_bytes)
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{Path(path)}, line {lineno}: malformed JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{Path(path)}, line {lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_csv(path: str | Path, max_bytes: int | None = None) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """(header columns, [(line number, row)]); ``.tsv`` files are tab-separated."""
    p = Path(path)
    text = read_text(p, max_bytes)
    delimiter = "\t" if p.suffix.lower() in (".tsv", ".tab") or p.name.lower().endswith(".tsv.gz") else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    try:
        columns = list(reader.fieldnames or [])
        rows = []
        for row in reader:
            if None in row:  # more cells than header columns
                raise DataError(f"{p}, line {reader.line_num}: {len(columns) + len(row[None])} cells but the header "
                                f"has {len(columns)} columns ({', '.join(columns)})")
            if any(v is not None and v != "" for v in row.values()):
                rows.append((reader.line_num, row))
    except csv.Error as e:
        raise DataError(f"{p}, line {reader.line_num}: malformed CSV ({e})") from None
    if not columns:
        raise DataError(f"{p}: file is empty")
    return columns, rows


def read_parquet(path: str | Path, max_bytes: int | None = None) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """(columns, [(row number, row)]) from a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = check_file(path, max_bytes)
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{p}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    return list(table.column_names), list(enumerate(table.to_pylist(), 1))
