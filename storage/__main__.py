"""``python -m storage {upgrade,status}``: manage the studio database from a shell.

``upgrade`` is what the refusal message of a worker (or of ``Storage(upgrade=False)``) points to.
"""

from __future__ import annotations

import argparse
import sys

from .db import Database
from .errors import StorageError
from .paths import ENV_DB, resolve_db_url
from .schema import ensure_schema, inspect_schema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage", description="PT-MoE Studio database")
    parser.add_argument("command", choices=["upgrade", "status"])
    parser.add_argument("--db", default=None, help=f"database URL or SQLite path (default: ${ENV_DB}, else runs/studio.db)")
    args = parser.parse_args(argv)
    try:
        db = Database(resolve_db_url(args.db))
        try:
            state = ensure_schema(db, upgrade=True) if args.command == "upgrade" else inspect_schema(db)
        finally:
            db.dispose()
    except StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{db.label}: schema {state.current or 'none'} (this version needs {state.head})")
    return 0 if state.up_to_date else 2


if __name__ == "__main__":
    sys.exit(main())
