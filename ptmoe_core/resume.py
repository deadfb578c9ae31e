"""Continuing a run: what may change when a run picks up from its last checkpoint.

The trainer resumes only a configuration that differs from its checkpoint's in
``trainer.RESUMABLE_CHANGES`` (steps, eval_every, save_every, report_to, name): anything else would
change the optimisation the checkpoint belongs to. ``continue_config`` applies that rule up front,
so a refused change is one line before any job starts; such changes need a new run instead.
(With a decaying schedule the learning rate follows the new total: continuing a finished linear run
restarts the decay from where the longer schedule puts ``from_step``.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .config import RunConfig, apply_overrides
from .errors import ConfigError


def refused_changes(old: RunConfig, new: RunConfig) -> list[str]:
    """The differences the trainer would refuse on resuming (``key: old -> new``)."""
    from .trainer import _config_diffs

    return _config_diffs(old.to_dict(), new.to_dict())


def continue_config(cfg: RunConfig, from_step: int, more_steps: int, sets: Sequence[str] = ()) -> RunConfig:
    """``cfg`` continued from ``from_step`` for ``more_steps`` more (0: to its own end), with ``sets`` (``KEY=VALUE`` as the
    CLI's ``--set``); ConfigError (one line) for a change the engine does not allow on resuming."""
    more = int(more_steps)
    if more < 0:
        raise ConfigError("more_steps", f"must be >= 0, got {more_steps}")
    d = apply_overrides(cfg.to_dict(), list(sets))
    d["train"]["steps"] = int(from_step) + more if more else cfg.train.steps  # 0: the steps the run had left
    if d["train"]["steps"] <= from_step:
        raise ConfigError("more_steps", f"the run is at step {from_step} of {cfg.train.steps}: give more steps")
    new = RunConfig.from_dict(d).validate()
    bad = refused_changes(cfg, new)
    if bad:
        from .trainer import RESUMABLE_CHANGES

        allowed = ", ".join(sorted(".".join(k) for k in RESUMABLE_CHANGES))
        raise ConfigError("continue", f"cannot change {'; '.join(bad[:3])} when continuing (only {allowed} "
                                                "may change); copy it to a new run instead")
    return new


def run_folder_config(run_dir: str | Path) -> tuple[RunConfig, int]:
    """A run folder's saved configuration and the step of its last complete checkpoint."""
    from .trainer import latest_checkpoint, list_checkpoints

    d = Path(run_dir)
    path = d / "run_config.json"
    if not path.is_file():
        raise ConfigError("resume", f"{d} holds no run_config.json: not a run folder")
    try:
        cfg = RunConfig.from_dict(json.loads(path.read_text()))
    except ValueError as e:
        raise ConfigError("resume", f"{path} is not valid JSON ({e})") from None
    if latest_checkpoint(d) is None:
        raise ConfigError("resume", f"{d} has no complete checkpoint to continue from")
    cfg.output_dir = str(d)
    return cfg, list_checkpoints(d)[-1][0]
