"""Storage errors: every message names the database (file or server) and says what to do."""

from __future__ import annotations


class StorageError(Exception):
    """The database cannot be opened, read or written as asked (unwritable, corrupt, wrong schema)."""


class RunNotFound(StorageError):
    """No run with that id (deleted, or from another database)."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        super().__init__(f"run {run_id} does not exist")


class InvalidTransition(StorageError):
    """A status change the lifecycle forbids, e.g. anything out of FINISHED / FAILED / KILLED."""

    def __init__(self, run_id: int, current: str, wanted: str):
        self.run_id, self.current, self.wanted = run_id, current, wanted
        super().__init__(f"run {run_id} is {current}; it cannot become {wanted}")


class ParamConflict(StorageError):
    """Params are write-once: a second write of a key with another value is refused."""
