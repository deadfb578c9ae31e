"""Peak memory of reading decoding bombs against the byte limit: each read runs in its own subprocess,
which resets its peak RSS (``/proc/self/clear_refs``) just before the read and reports the peak
(``VmHWM``) above its RSS then, as a multiple of the limit.     target: every bomb < 3 x the limit

    python -m bench.decode_bombs [--mb 300] [--limit-mb 20]

Bombs: a gzip JSONL whose one line unzips to ``--mb`` MB (a few hundred KB on disk), and a Parquet file
whose one string decodes to ``--mb`` MB (a few KB on disk); each is previewed and loaded.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
import pyarrow.parquet  # noqa: F401
from ptmoe_core.data import load_spec, preview
from ptmoe_core.errors import DataError

def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

what, spec, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
(preview if what == "preview" else load_spec)("builtin:arith?n=8")  # warm every code path once
with open("/proc/self/clear_refs", "w") as f:  # restart the peak (VmHWM) from the current RSS
    f.write("5")
before = status_kb("VmRSS")
try:
    (preview(spec, 3, max_bytes=limit) if what == "preview" else load_spec(spec, max_bytes=limit))
    outcome = "read"
except DataError as e:
    outcome = "refused: " + str(e).split(": ", 1)[-1][:40]
print(json.dumps({{"extra_kb": status_kb("VmHWM") - before, "outcome": outcome}}))
"""


def child(what: str, spec: str, limit: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, what, spec, str(limit)], cwd=ROOT,  # finds ptmoe_core
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_bombs(d: Path, mb: int) -> dict[str, str]:
    line = d / "line.jsonl.gz"
    with gzip.open(line, "wb", compresslevel=9) as f:
        f.write(b'{"question": "')
        chunk = b"x" * (1 << 20)
        for _ in range(mb):
            f.write(chunk)
        f.write(b'", "answer": "4"}\n')
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq_path = d / "string.parquet"
    pq.write_table(pa.table({"question": ["y" * (mb << 20)], "answer": ["4"]}), pq_path, compression="zstd")
    return {f"gzip JSONL, one {mb} MB line ({line.stat().st_size // 1024} KB)": f"jsonl:{line}",
            f"Parquet, one {mb} MB string ({pq_path.stat().st_size // 1024} KB)": f"parquet:{pq_path}"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=300, help="decoded size of each bomb (MB)")
    ap.add_argument("--limit-mb", type=int, default=20, help="the byte limit (the studio's upload limit)")
    args = ap.parse_args(argv)
    limit = args.limit_mb << 20
    with tempfile.TemporaryDirectory() as tmp:
        bombs = make_bombs(Path(tmp), args.mb)
        print(f"limit {args.limit_mb} MB; peak RSS above the reader's RSS just before the read")
        worst = 0.0
        for name, spec in bombs.items():
            for what in ("preview", "load"):
                r = child(what, spec, limit)
                extra_mb = max(0, r["extra_kb"]) / 1024
                worst = max(worst, extra_mb / args.limit_mb)
                print(f"{name:45s} {what:8s} +{extra_mb:7.1f} MB = {extra_mb / args.limit_mb:4.2f} x limit  "
                      f"({r['outcome']})")
    print(f"worst: {worst:.2f} x the limit (target < 3)")
    return 0 if worst < 3 else 1


if __name__ == "__main__":
    sys.exit(main())
