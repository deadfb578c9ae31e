"""Continuing a run as the same run: the one way out of a final state (FINISHED or KILLED → QUEUED).

The caller (the app, the CLI) has built the continued configuration with
``ptmoe_core.resume.continue_config``, so only what the trainer accepts on resuming has changed.
``continue_run`` swaps it in and re-queues the run atomically (``UPDATE ... WHERE status IN
(FINISHED, KILLED)``), updates the params that changed, and records the continuation as params
``continued.<n>.from_step``, ``continued.<n>.steps``, ``continued.<n>.from_status`` and
``continued.<n>.at``. The job then resumes from the run's last checkpoint in its own folder: its
curves go on from ``from_step``, new evaluations are added beside the earlier ones.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ptmoe_core.config import RunConfig

from .errors import InvalidTransition, RunNotFound, StorageError
from .models import Param, Run, RunStatus
from .records import RunInfo
from .repo import PARAM_EXCLUDE, Storage, _run_info, _run_select, flatten

CONTINUABLE = (RunStatus.FINISHED, RunStatus.KILLED)
PREFIX = "continued."


def continuation_count(params: dict[str, str]) -> int:
    """How many times a run was continued (from its ``continued.<n>.*`` params)."""
    return len({k.split(".")[1] for k in params if k.startswith(PREFIX)})


def continue_point(storage: Storage, run_id: int) -> int:
    """The step a run would continue from: its last checkpoint's, which must be the last step it
    recorded (a run that died after its last checkpoint has curves past it; copy it to a new run)."""
    run = storage.get_run(run_id)
    if run.status not in CONTINUABLE:
        raise StorageError(f"run {run_id} is {run.status.value}: only a finished or stopped (KILLED) run continues")
    ckpt = storage.latest_checkpoint(run_id)
    if ckpt is None or ckpt.step is None:
        raise StorageError(f"run {run_id} has no checkpoint on disk to continue from")
    if run.step is not None and ckpt.step != run.step:
        raise StorageError(f"run {run_id} recorded step {run.step} but its last checkpoint is step {ckpt.step}; "
                           "copy it to a new run instead")
    return ckpt.step


def continue_run(storage: Storage, run_id: int, config: RunConfig, from_step: int) -> RunInfo:
    """Re-queue a FINISHED or KILLED run with ``config`` (its continued configuration)."""
    new = config.to_dict()
    now = time.time()

    def tx(s: Session) -> RunInfo:
        current = s.execute(select(Run.status, Run.config).where(Run.id == run_id)).first()
        if current is None:
            raise RunNotFound(run_id)
        new["output_dir"] = current.config.get("output_dir")  # the run's own folder, whatever the caller said
        res = s.execute(
            update(Run)
            .where(Run.id == run_id, Run.status.in_([x.value for x in CONTINUABLE]))
            .values(status=RunStatus.QUEUED.value, config=new, total_steps=config.train.steps, reason=None,
                    ended_at=None, exit_code=None, error_message=None, error_detail=None, cancel_requested_at=None,
                    pid=None)
        )
        if res.rowcount == 0:
            raise InvalidTransition(run_id, current.status, RunStatus.QUEUED.value)
        have = dict(s.execute(select(Param.key, Param.value).where(Param.run_id == run_id)).all())
        n = continuation_count(have) + 1
        for k, v in flatten(new).items():
            if k in PARAM_EXCLUDE:
                continue
            if k not in have:
                s.execute(insert(Param), [{"run_id": run_id, "key": k, "value": v}])
            elif have[k] != v:  # what the run now trains with (the earlier value is in continued.<n>.was.*)
                s.execute(update(Param).where(Param.run_id == run_id, Param.key == k).values(value=v))
                s.execute(insert(Param), [{"run_id": run_id, "key": f"{PREFIX}{n}.was.{k}", "value": have[k]}])
        record: dict[str, Any] = {"from_step": from_step, "steps": config.train.steps, "from_status": current.status,
                                  "at": f"{now:.0f}"}
        s.execute(insert(Param), [{"run_id": run_id, "key": f"{PREFIX}{n}.{k}", "value": str(v)}
                                  for k, v in record.items()])
        return _run_info(*s.execute(_run_select().where(Run.id == run_id)).one())

    return storage._write(tx)
