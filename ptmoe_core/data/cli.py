"""The ``data`` and ``evaluate`` subcommands; ``ptmoe_core.cli`` calls ``register``.

Bad input raises ``DataError`` / ``PTMoEError``; the main CLI prints it as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..metrics import NUMBER_MATCHES


def register(subparsers) -> None:
    d = subparsers.add_parser("data", help="check data specs: example counts per split and the first rows",
                              description="Load each data spec, print its example count per split, then its "
                                          "first N normalised examples. Spec syntax: see ptmoe_core.data.sources.")
    d.add_argument("specs", nargs="+", metavar="SPEC", help="e.g. builtin:all, gsm8k:PATH, squad:PATH@200")
    d.add_argument("--show", type=int, default=3, metavar="N", help="rows to print per spec (default 3)")
    d.add_argument("--seed", type=int, default=0, help="seed of splits and built-in generation")
    d.add_argument("--full", action="store_true", help="do not shorten long passages")
    d.set_defaults(func=cmd_data)

    e = subparsers.add_parser("evaluate", help="score an adapter on data specs and print the table")
    e.add_argument("--adapter", required=True, help="adapter directory, or a Hub repo id (user/name) when online")
    e.add_argument("--data", required=True, nargs="+", metavar="SPEC", help="data specs (their test split)")
    e.add_argument("--split", default="test", help="split of each spec to evaluate (default test; or all)")
    e.add_argument("--max-examples", type=int, default=None, metavar="N", help="cap each data set at N examples")
    e.add_argument("--max-new-tokens", type=int, default=32)
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--max-source-tokens", type=int, default=None,
                   help="default: the adapter's training format, else 256")
    e.add_argument("--instruction", default=None, help="default: the adapter's training format, else per answer type")
    e.add_argument("--number-match", default=None, choices=NUMBER_MATCHES,
                   help="number answers: lenient (final value), or lm-evaluation-harness's GSM8K flexible / strict "
                        "(default: the adapter's training format, else lenient)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", default=None, metavar="records.jsonl", help="write every scored example as JSONL")
    e.set_defaults(func=cmd_evaluate)


def _short(value: Any, full: bool) -> Any:
    if not full and isinstance(value, str) and len(value) > 160:
        return value[:157] + "..."
    return value


def cmd_data(args: argparse.Namespace) -> int:
    import datasets

    from .sources import load_spec, parse_spec

    for text in args.specs:
        spec = parse_spec(text)
        loaded = load_spec(spec, seed=args.seed)
        parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {spec.split: loaded}
        counts = "  ".join(f"{k}={len(v)}" for k, v in parts.items())
        domains = sorted({d for v in parts.values() for d in v.unique("domain")})
        print(f"{text}\n  {counts}  (domains: {', '.join(domains)})")
        rows = (row for part in parts.values() for row in part)
        for _, row in zip(range(max(args.show, 0)), rows, strict=False):
            print("  " + json.dumps({c: _short(v, args.full) for c, v in row.items()}, ensure_ascii=False))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .. import api

    adapter = api.load(args.adapter)
    fmt = api.format_of(adapter, max_source_tokens=args.max_source_tokens, instruction=args.instruction)
    if args.number_match is not None:
        fmt.number_match = args.number_match

    def progress(done: int, total: int) -> None:
        print(f"\r  generated {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    res = api.evaluate_on(adapter, args.data, max_examples=args.max_examples, max_new_tokens=args.max_new_tokens,
                          batch_size=args.batch_size, format_cfg=fmt, progress=progress, split=args.split,
                          seed=args.seed)
    print(res.to_table())
    if args.out:
        print(f"records: {res.write_jsonl(args.out)}")
    return 0
