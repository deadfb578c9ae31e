"""Run storage and jobs: every run tracked in one database, every job in its own process.

The app needs two objects: ``Storage`` (the repository: runs, metrics, evaluations, routing records,
checkpoints, logs) and ``JobManager`` (the queue's supervisor: starts, watches and cancels jobs).
"""

from .db import DbSettings
from .errors import InvalidTransition, ParamConflict, RunNotFound, StorageError
from .jobs import JobManager, JobSettings
from .models import FINAL_STATES, RunStatus
from .paths import resolve_db_url
from .records import ArtifactInfo, EvalResult, ExperimentInfo, MetricSeries, RunInfo
from .repo import Storage

__all__ = [
    "FINAL_STATES",
    "ArtifactInfo",
    "DbSettings",
    "EvalResult",
    "ExperimentInfo",
    "InvalidTransition",
    "JobManager",
    "JobSettings",
    "MetricSeries",
    "ParamConflict",
    "RunInfo",
    "RunNotFound",
    "RunStatus",
    "Storage",
    "StorageError",
    "resolve_db_url",
]
