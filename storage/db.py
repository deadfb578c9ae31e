"""Engines and transactions.

SQLite gets two engines on the same file: reads start a plain (deferred) transaction and never
block in WAL mode; writes start ``BEGIN IMMEDIATE``, so a writer takes the lock up front and waits
for it (busy timeout) instead of failing half-way when another process wrote first. What is still
"database is locked" after the busy timeout is retried with a back-off; what is left after that
becomes a ``StorageError`` naming the file. Other databases use one engine for both.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session

from .errors import StorageError
from .paths import describe, sqlite_path

log = logging.getLogger(__name__)
T = TypeVar("T")

SQLITE_MAGIC = b"SQLite format 3\x00"
_LOCKED = ("database is locked", "database is busy", "database table is locked")
# Errors that mean the file itself is the problem, not the statement.
_FILE_ERRORS = (
    "unable to open database file",
    "attempt to write a readonly database",
    "file is not a database",
    "database disk image is malformed",
    "disk i/o error",
    "database or disk is full",
)


@dataclass(frozen=True)
class DbSettings:
    busy_timeout_s: float = 10.0  # how long one statement waits for a lock held by another process
    lock_retries: int = 5  # extra attempts for a transaction that still found the database locked
    retry_delay_s: float = 0.2


def is_locked_error(e: BaseException) -> bool:
    msg = str(getattr(e, "orig", e)).lower()
    return any(m in msg for m in _LOCKED)


def check_sqlite_file(path: Path) -> None:
    """Refuse, without touching it, a file that cannot be a writable SQLite database."""
    if path.exists():
        if not path.is_file():
            raise StorageError(f"database path {path} exists but is not a file; set PTMOE_DB to a file path")
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as e:
            raise StorageError(f"cannot read the database file {path}: {e.strerror or e}") from e
        if head and head != SQLITE_MAGIC:
            raise StorageError(
                f"{path} is not a SQLite database (corrupt, or another kind of file); it was left untouched. "
                "Move it away or set PTMOE_DB to another path."
            )
        if not os.access(path, os.W_OK):
            raise StorageError(f"the database file {path} is not writable; fix its permissions or set PTMOE_DB")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise StorageError(
                f"the directory of the database file {path} is not writable (SQLite needs to create its "
                "-wal and -shm files there); fix its permissions or set PTMOE_DB"
            )
        if head:  # after the permission checks: reading a WAL database needs its -shm file
            _check_integrity(path)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot create the directory for the database file {path}: {e.strerror or e}") from e
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StorageError(f"cannot create the database file {path}: its directory is not writable; set PTMOE_DB")


def _check_integrity(path: Path) -> None:
    """``PRAGMA quick_check`` (every page and b-tree, read-only): a file damaged past its header would
    otherwise open silently and then fail request by request, or fail a run launched on it."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
        problem = None if rows == [("ok",)] else (str(rows[0][0]) if rows else "no answer")
    except sqlite3.DatabaseError as e:
        if is_locked_error(e):
            return  # another process is writing: it is in use, not damaged; the open itself will wait
        problem = str(e)
    if problem is not None:
        raise StorageError(
            f"{path} is damaged (SQLite integrity check: {problem.splitlines()[0][:120]}); it was left untouched. "
            "Restore it from a backup (a *.schema-*.bak file next to it, if any), or move it away to start an "
            "empty database, or set PTMOE_DB to another path."
        )


class Database:
    """The engines for one database plus the transaction helpers the repository uses."""

    def __init__(self, url: URL, settings: DbSettings | None = None):
        self.url = url
        self.settings = settings or DbSettings()
        self.label = describe(url)
        self.path = sqlite_path(url)
        self.is_sqlite = url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.path is None:
            raise StorageError(
                "an in-memory SQLite database cannot be shared with job processes; give a file path"
            )
        if self.path is not None:
            check_sqlite_file(self.path)
            self.read_engine = self._sqlite_engine("BEGIN")
            self.write_engine = self._sqlite_engine("BEGIN IMMEDIATE")
        else:
            self.read_engine = self.write_engine = create_engine(url, pool_pre_ping=True)

    def _sqlite_engine(self, begin: str) -> Engine:
        busy_ms = int(self.settings.busy_timeout_s * 1000)
        engine = create_engine(self.url, connect_args={"timeout": self.settings.busy_timeout_s})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            # Driver-level autocommit: transactions are begun explicitly below, so BEGIN IMMEDIATE works.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")  # durable across a process crash in WAL mode
                cur.execute("PRAGMA foreign_keys = ON")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql(begin)

        return engine

    def dispose(self) -> None:
        self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            self.write_engine.dispose()

    def run(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """Run ``fn`` in one transaction, retried while the database is locked."""
        engine = self.write_engine if write else self.read_engine
        attempts = self.settings.lock_retries + 1
        for attempt in range(attempts):
            try:
                with Session(engine, expire_on_commit=False) as session, session.begin():
                    return fn(session)
            except exc.OperationalError as e:
                if is_locked_error(e) and attempt + 1 < attempts:
                    delay = self.settings.retry_delay_s * (2**attempt) * (0.5 + random.random())
                    log.warning("%s is locked; retrying in %.2fs (attempt %d)", self.label, delay, attempt + 1)
                    time.sleep(delay)
                    continue
                self._reraise(e)
            except exc.DatabaseError as e:
                self._reraise(e)
        raise AssertionError("unreachable")

    def _reraise(self, e: exc.DBAPIError) -> NoReturn:
        translated = self.translate(e)
        if translated is e:
            raise e
        raise translated from e

    def translate(self, e: exc.DBAPIError) -> BaseException:
        """File-level failures become StorageError naming the database; other errors stay as they are."""
        msg = str(e.orig).strip()
        low = msg.lower()
        if is_locked_error(e):
            return StorageError(
                f"the database {self.label} stayed locked by another process; tried "
                f"{self.settings.lock_retries + 1} times with a {self.settings.busy_timeout_s:g}s busy timeout"
            )
        if any(m in low for m in _FILE_ERRORS):
            return StorageError(f"cannot use the database {self.label}: {msg}")
        if isinstance(e, exc.OperationalError) and not self.is_sqlite:
            return StorageError(f"cannot use the database {self.label}: {msg.splitlines()[0] if msg else e}")
        return e
