"""What the repository returns: plain frozen dataclasses, detached from any database session, so the
app can hold them across threads and refreshes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .models import FINAL_STATES, RunStatus


@dataclass(frozen=True)
class ExperimentInfo:
    id: int
    name: str
    description: str | None
    created_at: float
    run_count: int


@dataclass(frozen=True)
class RunInfo:
    id: int
    name: str
    experiment: str
    method: str
    base_model: str
    data_specs: list[str]
    config: dict[str, Any]  # the full RunConfig as a dict (output_dir is the run's own directory)
    status: RunStatus
    reason: str | None  # finished | error | stale | cancelled | signal | spawn
    created_at: float  # epoch seconds, like every time here
    started_at: float | None
    ended_at: float | None
    heartbeat_at: float | None
    cancel_requested_at: float | None
    pid: int | None
    host: str | None  # the machine the pid belongs to
    device: str | None
    exit_code: int | None
    error_message: str | None
    error_detail: str | None  # traceback tail and/or the log's tail
    log_path: str | None
    output_dir: str | None
    adapter_path: str | None
    trainable_params: int | None
    step: int
    total_steps: int | None
    sweep_id: int | None = None  # the sweep the run belongs to (revision 0004)
    grid_point: dict[str, Any] | None = None  # its point of the sweep's grid, {config key: value}
    submission_id: str | None = None  # the executor's handle on a non-local job (a Ray submission id)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_requested_at is not None

    @property
    def progress(self) -> float | None:
        """Fraction of optimizer steps done, for progress bars."""
        if not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)

    def duration_s(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or now) - self.started_at


@dataclass(frozen=True)
class SweepInfo:
    id: int
    name: str
    experiment: str
    spec: dict[str, Any]  # SweepSpec.to_dict(): base config, grid, seeds
    created_at: float
    run_count: int


@dataclass(frozen=True)
class MetricSeries:
    """One metric of one run, in write order; ready for a plot (x=steps, y=values)."""

    key: str
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None


@dataclass(frozen=True)
class EvalResult:
    run_id: int
    step: int
    dataset: str  # a data-set name, or "macro"
    em: float | None
    f1: float | None
    accuracy: float | None
    count: int | None
    loss: float | None
    scores: dict[str, Any]  # everything the evaluator reported for this data set
    created_at: float


@dataclass(frozen=True)
class ArtifactInfo:
    run_id: int
    kind: str  # checkpoint | adapter
    step: int | None
    path: str
    created_at: float
    exists: bool  # the directory is still on disk
