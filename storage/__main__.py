"""``python -m storage {upgrade,status,export,import}``: manage the studio database from a shell.

``upgrade`` is what the refusal message of a worker (or of ``Storage(upgrade=False)``) points to.
``export RUN_ID FILE`` writes a finished run as a bundle; ``import FILE`` adds a bundle's run.
"""

from __future__ import annotations

import argparse
import sys

from ptmoe_core.errors import PTMoEError

from .db import Database
from .errors import StorageError
from .paths import ENV_DB, resolve_db_url
from .schema import ensure_schema, inspect_schema


def build_parser() -> argparse.ArgumentParser:
    # The options go before or after the command; SUPPRESS keeps a subcommand's unset copy from
    # overwriting the value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS,
                        help=f"database URL or SQLite path (default: ${ENV_DB}, else runs/studio.db)")
    common.add_argument("--runs-dir", default=argparse.SUPPRESS, help="runs folder (default: next to the SQLite file)")
    parser = argparse.ArgumentParser(prog="python -m storage", description="PT-MoE Studio database", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("upgrade", parents=[common], help="create the database or bring its schema up to date")
    sub.add_parser("status", parents=[common], help="print the schema version")
    ex = sub.add_parser("export", parents=[common], help="write a finished run as a bundle file (.ptmoe.zip)")
    ex.add_argument("run_id", type=int)
    ex.add_argument("file")
    im = sub.add_parser("import", parents=[common], help="add the run of a bundle file to the database")
    im.add_argument("file")
    im.add_argument("--experiment", default="imported", help="experiment to put the run in (default: imported)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.db, args.runs_dir = getattr(args, "db", None), getattr(args, "runs_dir", None)
    try:
        if args.command in ("upgrade", "status"):
            return _schema(args)
        return _bundle(args)
    except (StorageError, PTMoEError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1


def _schema(args: argparse.Namespace) -> int:
    db = Database(resolve_db_url(args.db))
    try:
        state = ensure_schema(db, upgrade=True) if args.command == "upgrade" else inspect_schema(db)
    finally:
        db.dispose()
    print(f"{db.label}: schema {state.current or 'none'} (this version needs {state.head})")
    return 0 if state.up_to_date else 2


def _bundle(args: argparse.Namespace) -> int:
    from .bundles import export_run, import_bundle
    from .repo import Storage

    with Storage(args.db, runs_dir=args.runs_dir) as storage:
        if args.command == "export":
            path = export_run(storage, args.run_id, args.file)
            print(f"exported run {args.run_id} to {path} ({path.stat().st_size / 1024:.0f} KB)")
            return 0
        res = import_bundle(storage, args.file, args.experiment)
        if res.created:
            print(f"imported {args.file} as run {res.run_id} ({res.name}) in experiment {args.experiment}")
        else:
            print(f"{args.file} is already in this database as run {res.run_id} ({res.name}); nothing imported")
        return 0


if __name__ == "__main__":
    sys.exit(main())
