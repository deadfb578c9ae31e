"""The trainer's reporting interface: what a run tells its observers, step by step.

The CLI's progress bar, the job runner's database writer and tests all implement
``TrainerCallback``; the trainer calls every hook on every callback in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .eval_record import EvalRecord


@dataclass
class StepMetrics:
    """One optimizer step. ``expert_load`` is the fraction of the batch routed to each expert
    (empty for methods without a router); ``router_entropy`` is the batch-mean entropy of p;
    ``domain_routing`` maps each domain in the batch to how many of its examples went to each
    expert (empty without a router), so specialisation or collapse shows while it happens."""

    step: int
    total_steps: int
    loss: float
    lr: float
    tokens_per_s: float
    grad_norm: float
    router_entropy: float | None = None
    expert_load: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    domain_routing: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class EvalReport:
    """An evaluation at ``step``: aggregate scores per data set (and "macro"), plus the
    per-example records (input, gold, prediction, expert, probabilities, confidence, score)."""

    step: int
    scores: dict[str, dict[str, float]]
    records: list[EvalRecord] = field(default_factory=list)
    loss: float | None = None


def step_points(m: StepMetrics) -> list[tuple[str, float]]:
    """The metric series one step adds, by the names the studio stores and plots them under."""
    pts = [("loss", m.loss), ("lr", m.lr), ("tokens_per_s", m.tokens_per_s), ("grad_norm", m.grad_norm)]
    if m.router_entropy is not None:
        pts.append(("router_entropy", m.router_entropy))
    pts += [(f"expert_load/{i}", v) for i, v in enumerate(m.expert_load)]
    return [(k, float(v)) for k, v in pts]


def eval_points(report: EvalReport) -> list[tuple[str, float]]:
    """The metric series an evaluation adds: ``eval/loss`` and ``eval/<data set>/<score>``."""
    pts = [("eval/loss", float(report.loss))] if report.loss is not None else []
    for dataset, scores in report.scores.items():
        for k, v in scores.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                pts.append((f"eval/{dataset}/{k}", float(v)))
    return pts


class TrainerCallback:
    """Override what you need; every hook is a no-op by default."""

    def on_train_begin(self, total_steps: int, start_step: int, info: dict[str, Any]) -> None:
        """``info`` holds e.g. trainable_params, n_train_examples, device, dtype."""

    def on_step(self, m: StepMetrics) -> None: ...

    def on_evaluate(self, report: EvalReport) -> None: ...

    def on_checkpoint(self, step: int, path: Path) -> None: ...

    def on_train_end(self, status: str, step: int, adapter_dir: Path | None) -> None:
        """``status`` is "finished" or "cancelled"."""
