"""Schema versions: check on start, upgrade with alembic, or refuse with what to do.

A job process never migrates (``upgrade=False``): only the app, which owns the database, does, and
a worker that finds another version refuses to write into it.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect

from .db import Database
from .errors import StorageError

if TYPE_CHECKING:
    from alembic.config import Config

# alembic is imported where it is used: job processes start faster without it.
log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: no schema yet (an empty database)
    head: str
    has_tables: bool  # tables other than alembic's own

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def known_revisions() -> list[str]:
    """Oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def inspect_schema(db: Database) -> SchemaState:
    from alembic.runtime.migration import MigrationContext

    def probe(session) -> SchemaState:
        conn = session.connection()
        current = MigrationContext.configure(conn).get_current_revision()
        tables = [t for t in inspect(conn).get_table_names() if t != VERSION_TABLE]
        return SchemaState(current=current, head=head_revision(), has_tables=bool(tables))

    return db.run(probe, write=False)


def ensure_schema(db: Database, *, upgrade: bool = True) -> SchemaState:
    """Make sure the database has this code's schema; upgrade it when allowed."""
    state = inspect_schema(db)
    if state.up_to_date:
        return state
    known = known_revisions()
    if state.current is None and state.has_tables:
        raise StorageError(
            f"{db.label} holds tables but no PT-MoE Studio schema version: it is not a studio database. "
            "Point PTMOE_DB (or --db) at another file; the existing one was left untouched."
        )
    if state.current is not None and state.current not in known:
        raise StorageError(
            f"{db.label} has schema version {state.current}, which is newer than this PT-MoE Studio "
            f"(it knows up to {state.head}). Upgrade PT-MoE Studio, or point PTMOE_DB at another database."
        )
    if not upgrade:
        raise StorageError(
            f"{db.label} has schema version {state.current or 'none (empty)'} but this PT-MoE Studio needs "
            f"{state.head}. Run `python -m storage upgrade --db {db.label}` (or start the app, which upgrades)."
        )
    if state.current is not None and db.path is not None:
        backup_sqlite(db.path, state.current)
    log.info("upgrading %s from schema %s to %s", db.label, state.current or "(empty)", state.head)
    upgrade_to(db, "head")
    return inspect_schema(db)


def upgrade_to(db: Database, revision: str) -> None:
    """Run alembic on our own write connection (SQLite: under BEGIN IMMEDIATE, so in one transaction)."""
    from alembic import command

    cfg = alembic_config()
    with db.write_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade_to(db: Database, revision: str) -> None:
    from alembic import command

    cfg = alembic_config()
    with db.write_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def backup_sqlite(path: Path, revision: str) -> Path:
    """Copy the file (consistently, through SQLite's backup API) before changing its schema."""
    target = path.with_name(f"{path.name}.schema-{revision}.bak")
    src = sqlite3.connect(str(path))
    try:
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    log.info("backed up %s to %s before the schema upgrade", path, target)
    return target
