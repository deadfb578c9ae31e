"""ORM tables. Times are float epoch seconds: portable across SQLite and PostgreSQL, and the
heartbeat comparisons need no time-zone handling.

Metrics are stored twice on purpose: ``metrics`` holds one row per point (the durable record a job
commits as it goes), and ``metric_chunks`` packs older points of a series into arrays so that
reading a run's whole history is a few rows, not 100,000 (``metric_series`` tracks how far each
series is packed). The migrations in ``migrations/versions`` must match these classes; a test
compares them.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids for big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class RunStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED})
# Every allowed move; anything out of a final state is refused.
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.KILLED, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED}),
    RunStatus.FINISHED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.KILLED: frozenset(),
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Double)


class Sweep(Base):
    """A base configuration, a grid over configuration keys and a list of seeds, expanded to runs of
    one experiment (revision 0004). ``spec`` is the ``SweepSpec`` as submitted."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Double)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index(None, "status", "id"), Index(None, "experiment_id"), Index(None, "sweep_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    name: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(32))
    base_model: Mapped[str] = mapped_column(String(500))
    data_specs: Mapped[list[str]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    # Short machine-readable cause of the final state: finished, error, stale, cancelled, signal, spawn.
    reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Double)
    started_at: Mapped[float | None] = mapped_column(Double)
    ended_at: Mapped[float | None] = mapped_column(Double)
    heartbeat_at: Mapped[float | None] = mapped_column(Double)
    cancel_requested_at: Mapped[float | None] = mapped_column(Double)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255))  # the machine of pid (revision 0003)
    device: Mapped[str | None] = mapped_column(String(32))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_detail: Mapped[str | None] = mapped_column(Text)  # traceback tail and/or log tail
    log_path: Mapped[str | None] = mapped_column(Text)
    output_dir: Mapped[str | None] = mapped_column(Text)
    adapter_path: Mapped[str | None] = mapped_column(Text)
    trainable_params: Mapped[int | None] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    # Revision 0004: the sweep the run belongs to and its grid point ({key: value}, seed apart), and
    # the executor's handle on the job when it is not a local process (a Ray submission id).
    sweep_id: Mapped[int | None] = mapped_column(ForeignKey("sweeps.id"))
    grid_point: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    submission_id: Mapped[str | None] = mapped_column(String(255))


class IdCounter(Base):
    """The highest id ever given per table (revision 0003): SQLite would reuse a deleted newest id."""

    __tablename__ = "id_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)


class Param(Base):
    __tablename__ = "params"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Metric(Base):
    __tablename__ = "metrics"
    # (run, key, id): a series in write order; also how the packer finds the points it has not packed.
    __table_args__ = (Index(None, "run_id", "key", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(250))
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Double)  # NULL is NaN: SQLite cannot store NaN
    timestamp: Mapped[float] = mapped_column(Double)


class MetricSeriesRow(Base):
    __tablename__ = "metric_series"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    packed_count: Mapped[int] = mapped_column(BigInteger)
    packed_last_id: Mapped[int] = mapped_column(BigInteger)  # points with a larger id are not packed yet
    last_step: Mapped[int] = mapped_column(Integer)
    last_value: Mapped[float | None] = mapped_column(Double)
    last_timestamp: Mapped[float] = mapped_column(Double)


class MetricChunk(Base):
    __tablename__ = "metric_chunks"
    __table_args__ = (Index(None, "run_id", "key", "last_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(250))
    first_id: Mapped[int] = mapped_column(BigInteger)
    last_id: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    steps: Mapped[bytes] = mapped_column(LargeBinary)  # little-endian int64
    values: Mapped[bytes] = mapped_column(LargeBinary)  # little-endian float64
    timestamps: Mapped[bytes] = mapped_column(LargeBinary)  # little-endian float64


class Artifact(Base):
    """Checkpoints, the final adapter: files a run left behind that the app can load."""

    __tablename__ = "artifacts"
    __table_args__ = (Index(None, "run_id", "kind", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # checkpoint | adapter
    step: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Double)


class EvaluationResult(Base):
    """One data set's scores (or "macro") at one evaluated step (revision 0002)."""

    __tablename__ = "evaluation_results"
    __table_args__ = (Index(None, "run_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    dataset: Mapped[str] = mapped_column(String(250))
    em: Mapped[float | None] = mapped_column(Double)
    f1: Mapped[float | None] = mapped_column(Double)
    accuracy: Mapped[float | None] = mapped_column(Double)
    count: Mapped[int | None] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Double)
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)  # every score the evaluator reported
    created_at: Mapped[float] = mapped_column(Double)


class RoutingRecord(Base):
    """One evaluated example: what the router chose and how the answer scored (revision 0002)."""

    __tablename__ = "routing_records"
    __table_args__ = (Index(None, "run_id", "step", "split"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(64))
    example_id: Mapped[str] = mapped_column(String(250))
    dataset: Mapped[str | None] = mapped_column(String(250))  # the evaluation set it came from
    domain: Mapped[str | None] = mapped_column(String(250))
    ood: Mapped[bool] = mapped_column(Boolean, default=False)
    answer_type: Mapped[str | None] = mapped_column(String(32))
    input: Mapped[str] = mapped_column(Text)  # the question
    context: Mapped[str | None] = mapped_column(Text)
    gold: Mapped[list[str]] = mapped_column(JSON)
    prediction: Mapped[str] = mapped_column(Text)
    expert: Mapped[int | None] = mapped_column(Integer)
    probs: Mapped[list[float] | None] = mapped_column(JSON)
    confidence: Mapped[float | None] = mapped_column(Double)
    entropy: Mapped[float | None] = mapped_column(Double)
    em: Mapped[float | None] = mapped_column(Double)
    f1: Mapped[float | None] = mapped_column(Double)
    correct: Mapped[bool | None] = mapped_column(Boolean)
    score: Mapped[float | None] = mapped_column(Double)
