"""Where the database and the run directories live.

Precedence for the database: an explicit value (the app's ``--db`` flag), then the ``PTMOE_DB``
environment variable, then ``$PTMOE_HOME/runs/studio.db`` (``PTMOE_HOME`` defaults to the current
directory). A value containing ``://`` is a SQLAlchemy URL (e.g. ``postgresql+psycopg://...``);
anything else is a path to a SQLite file. Run directories (checkpoints, adapter, log) go next to a
SQLite file, or under ``$PTMOE_HOME/runs`` for a server database, unless given explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import URL, make_url

ENV_DB = "PTMOE_DB"
ENV_HOME = "PTMOE_HOME"
DEFAULT_DB_NAME = "studio.db"


def home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(ENV_HOME) or ".").expanduser().resolve()


def resolve_db_url(db: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> URL:
    """The database URL from a flag value, else PTMOE_DB, else the default SQLite file."""
    env = os.environ if env is None else env
    value = str(db) if db else env.get(ENV_DB) or str(home(env) / "runs" / DEFAULT_DB_NAME)
    if "://" in value:
        return make_url(value)
    return make_url("sqlite:///" + str(Path(value).expanduser().resolve()))


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL; None for other databases (and for in-memory SQLite)."""
    if url.get_backend_name() != "sqlite":
        return None
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def default_runs_dir(url: URL, env: Mapping[str, str] | None = None) -> Path:
    path = sqlite_path(url)
    if path is not None:
        return path.parent
    return home(env) / "runs"


def describe(url: URL) -> str:
    """How messages name the database: the file for SQLite, the URL without password otherwise."""
    path = sqlite_path(url)
    return str(path) if path is not None else url.render_as_string(hide_password=True)
