"""The run repository: everything the app, the job supervisor and the worker read or write.

Every method is one short transaction (retried while SQLite is locked) and returns plain dataclasses
from ``records``. Status changes go through ``transition``, which refuses any move the lifecycle
forbids, atomically (``UPDATE ... WHERE status IN (allowed sources)``), so a worker finishing and a
supervisor marking the run stale cannot both win.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import sys
import time
import uuid
from array import array
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from ptmoe_core.config import RunConfig
from ptmoe_core.eval_record import EvalRecord

from .db import Database, DbSettings
from .errors import InvalidTransition, ParamConflict, RunNotFound, StorageError
from .logs import tail_file
from .models import (
    FINAL_STATES,
    TRANSITIONS,
    Artifact,
    EvaluationResult,
    Experiment,
    IdCounter,
    Metric,
    MetricChunk,
    MetricSeriesRow,
    Param,
    RoutingRecord,
    Run,
    RunStatus,
    Sweep,
)
from .paths import default_runs_dir, resolve_db_url
from .records import (
    ArtifactInfo,
    EvalResult,
    ExperimentInfo,
    MetricSeries,
    RunInfo,
    SweepInfo,
)
from .schema import SchemaState, ensure_schema

CHUNK_POINTS = 1024  # a series' unpacked tail is packed into one chunk once it has this many points
PARAM_EXCLUDE = ("name", "output_dir")  # run metadata, not hyperparameters (a rename must not conflict)
MetricPoint = tuple[str, int, float] | tuple[str, int, float, float]  # key, step, value[, timestamp]


class Storage:
    """One database (SQLite file or any SQLAlchemy URL) plus the directory where run files go."""

    def __init__(
        self,
        db: str | URL | None = None,
        *,
        runs_dir: str | Path | None = None,
        upgrade: bool = True,
        settings: DbSettings | None = None,
    ):
        self.url = db if isinstance(db, URL) else resolve_db_url(db)
        self.db = Database(self.url, settings)
        try:
            self.schema: SchemaState = ensure_schema(self.db, upgrade=upgrade)
        except BaseException:
            self.db.dispose()
            raise
        self.runs_dir = Path(runs_dir).expanduser().resolve() if runs_dir else default_runs_dir(self.url)

    @property
    def label(self) -> str:
        """The database as messages name it (no password)."""
        return self.db.label

    @property
    def url_string(self) -> str:
        """The full URL (with password) for job processes; never print it."""
        return self.url.render_as_string(hide_password=False)

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, fn):
        return self.db.run(fn, write=False)

    def _write(self, fn):
        return self.db.run(fn, write=True)

    # ---- experiments -------------------------------------------------------------------------

    def create_experiment(self, name: str, description: str | None = None) -> ExperimentInfo:
        name = _clean_name(name, "experiment name")

        def tx(s: Session) -> ExperimentInfo:
            exp = _experiment(s, name, description)
            return ExperimentInfo(exp.id, exp.name, exp.description, exp.created_at, _run_count(s, exp.id))

        return self._write(tx)

    def list_experiments(self) -> list[ExperimentInfo]:
        def tx(s: Session) -> list[ExperimentInfo]:
            counts = select(Run.experiment_id, func.count().label("n")).group_by(Run.experiment_id).subquery()
            rows = s.execute(
                select(Experiment, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.experiment_id == Experiment.id)
                .order_by(Experiment.id)
            ).all()
            return [ExperimentInfo(e.id, e.name, e.description, e.created_at, n) for e, n in rows]

        return self._read(tx)

    # ---- runs --------------------------------------------------------------------------------

    def submit(self, config: RunConfig | Mapping[str, Any], experiment: str = "default", name: str | None = None) -> int:
        """Validate the config and queue a run; returns its id.

        The run gets its own directory ``<runs_dir>/<id>-<name>/`` (checkpoints, adapter, job.log):
        ``config.output_dir`` is replaced by it, so two runs never share (and resume from) one
        directory, and deleting a run only ever removes files the studio created.
        """
        cfg = copy.deepcopy(config) if isinstance(config, RunConfig) else RunConfig.from_dict(dict(config))
        if name is not None:
            cfg.name = name
        cfg.name = _clean_name(cfg.name, "run name")
        cfg.validate()
        experiment = _clean_name(experiment, "experiment name")

        def tx(s: Session) -> int:
            return self._insert_run(s, _experiment(s, experiment, None), cfg)

        return self._write(tx)

    def _insert_run(
        self, s: Session, exp: Experiment, cfg: RunConfig, sweep_id: int | None = None,
        grid_point: Mapping[str, Any] | None = None,
    ) -> int:
        """Inside a transaction: a QUEUED run of a validated ``cfg`` with its own directory and params."""
        run = new_run(
            s,
            experiment_id=exp.id,
            name=cfg.name,
            method=cfg.method.method,
            base_model=cfg.model.name,
            data_specs=list(cfg.data.train),
            config={},
            status=RunStatus.QUEUED.value,
            created_at=time.time(),
            step=0,
            total_steps=cfg.train.steps,
            sweep_id=sweep_id,
            grid_point=_json_safe(dict(grid_point)) if grid_point is not None else None,
        )
        run_cfg = copy.deepcopy(cfg)
        run_dir = self._new_run_dir(run.id, cfg.name)
        run_cfg.output_dir = str(run_dir)
        run.config = run_cfg.to_dict()
        run.output_dir = str(run_dir)
        run.log_path = str(run_dir / "job.log")
        params = {k: v for k, v in flatten(run_cfg.to_dict()).items() if k not in PARAM_EXCLUDE}
        s.execute(insert(Param), [{"run_id": run.id, "key": k, "value": v} for k, v in params.items()])
        return run.id

    # ---- sweeps ------------------------------------------------------------------------------

    def submit_sweep(
        self, name: str, experiment: str, spec: Mapping[str, Any],
        runs: Sequence[tuple[RunConfig, Mapping[str, Any]]], sweep_id: int | None = None,
    ) -> tuple[int, list[int]]:
        """Queue validated ``(config, grid point)`` runs as one sweep, all or none, in one transaction;
        returns (sweep id, run ids). ``sweep_id``: add the runs to that sweep (a resume)."""
        name = _clean_name(name, "sweep name")
        experiment = _clean_name(experiment, "experiment name")
        cfgs = []
        for cfg, point in runs:
            cfg = copy.deepcopy(cfg)
            cfg.name = _clean_name(cfg.name, "run name")
            cfgs.append((cfg.validate(), point))

        def tx(s: Session) -> tuple[int, list[int]]:
            if sweep_id is None:
                exp = _experiment(s, experiment, None)
                sweep = Sweep(experiment_id=exp.id, name=name, spec=_json_safe(dict(spec)), created_at=time.time())
                s.add(sweep)
                s.flush()
            else:
                sweep = s.get(Sweep, sweep_id)
                if sweep is None:
                    raise StorageError(f"sweep {sweep_id} does not exist")
                exp = s.get(Experiment, sweep.experiment_id)
            return sweep.id, [self._insert_run(s, exp, cfg, sweep.id, point) for cfg, point in cfgs]

        return self._write(tx)

    def get_sweep(self, sweep_id: int) -> SweepInfo:
        found = [w for w in self._sweeps(Sweep.id == sweep_id)]
        if not found:
            raise StorageError(f"sweep {sweep_id} does not exist")
        return found[0]

    def list_sweeps(self, experiment: str | None = None) -> list[SweepInfo]:
        """Newest first."""
        return self._sweeps(Experiment.name == experiment if experiment is not None else None)

    def _sweeps(self, where: Any) -> list[SweepInfo]:
        counts = select(Run.sweep_id, func.count().label("n")).group_by(Run.sweep_id).subquery()
        q = (select(Sweep, Experiment.name, func.coalesce(counts.c.n, 0))
             .join(Experiment, Experiment.id == Sweep.experiment_id)
             .outerjoin(counts, counts.c.sweep_id == Sweep.id).order_by(Sweep.id.desc()))
        if where is not None:
            q = q.where(where)
        return self._read(lambda s: [
            SweepInfo(w.id, w.name, exp, copy.deepcopy(w.spec), w.created_at, n) for w, exp, n in s.execute(q).all()
        ])

    def delete_sweep(self, sweep_id: int, *, delete_files: bool = True) -> list[str]:
        """Delete a sweep whose runs have all ended, with its runs and their files; returns the paths removed."""
        self.get_sweep(sweep_id)
        runs = self.list_runs(sweep=sweep_id)
        active = [r.id for r in runs if not r.is_final]
        if active:
            raise StorageError(f"sweep {sweep_id} still has {len(active)} queued or running run(s) "
                               f"({', '.join(map(str, active[:5]))}); cancel the sweep first")
        removed: list[str] = []
        for r in runs:
            removed += self.delete_run(r.id, delete_files=delete_files)

        def tx(s: Session) -> None:
            if s.execute(select(func.count()).select_from(Run).where(Run.sweep_id == sweep_id)).scalar_one():
                raise StorageError(f"sweep {sweep_id} got new runs while it was being deleted; try again")
            s.execute(delete(Sweep).where(Sweep.id == sweep_id))

        self._write(tx)
        return removed

    def _new_run_dir(self, run_id: int, name: str) -> Path:
        base = self.runs_dir / f"{run_id:05d}-{_slug(name)}"
        # A directory left by another database with the same ids must not be resumed from.
        return base if not base.exists() else base.with_name(f"{base.name}-{uuid.uuid4().hex[:6]}")

    def get_run(self, run_id: int) -> RunInfo:
        def tx(s: Session) -> RunInfo:
            row = s.execute(_run_select().where(Run.id == run_id)).first()
            if row is None:
                raise RunNotFound(run_id)
            return _run_info(*row)

        return self._read(tx)

    def list_runs(
        self,
        *,
        experiment: str | None = None,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        method: str | None = None,
        base_model: str | None = None,
        search: str | None = None,
        sweep: int | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[RunInfo]:
        """Runs matching every filter given; ``search`` matches a substring of the name."""
        q = _run_select()
        if experiment is not None:
            q = q.where(Experiment.name == experiment)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            q = q.where(Run.status.in_([RunStatus(x).value for x in statuses]))
        if method is not None:
            q = q.where(Run.method == method)
        if base_model is not None:
            q = q.where(Run.base_model == base_model)
        if search:
            q = q.where(Run.name.contains(search, autoescape=True))
        if sweep is not None:
            q = q.where(Run.sweep_id == sweep)
        q = q.order_by(Run.id.desc() if newest_first else Run.id.asc()).offset(offset)
        if limit is not None:
            q = q.limit(limit)
        return self._read(lambda s: [_run_info(*row) for row in s.execute(q).all()])

    def rename_run(self, run_id: int, name: str) -> RunInfo:
        name = _clean_name(name, "run name")

        def tx(s: Session) -> None:
            if s.execute(update(Run).where(Run.id == run_id).values(name=name)).rowcount == 0:
                raise RunNotFound(run_id)

        self._write(tx)
        return self.get_run(run_id)

    def delete_run(self, run_id: int, *, delete_files: bool = True) -> list[str]:
        """Delete a run that is not running, with its records; returns the paths removed.

        Only files inside this storage's runs directory are removed (the run directory holds the
        checkpoints, the adapter and the log)."""

        def tx(s: Session) -> RunInfo:
            row = s.execute(_run_select().where(Run.id == run_id)).first()
            if row is None:
                raise RunNotFound(run_id)
            info = _run_info(*row)
            if info.status is RunStatus.RUNNING:
                raise StorageError(f"run {run_id} is running; cancel it and wait for it to end before deleting it")
            res = s.execute(delete(Run).where(Run.id == run_id, Run.status != RunStatus.RUNNING.value))
            if res.rowcount == 0:  # claimed by a supervisor between the two statements
                raise StorageError(f"run {run_id} just started; cancel it first")
            return info

        info = self._write(tx)
        removed: list[str] = []
        if delete_files:
            for p in (info.output_dir, info.log_path):
                if p and self._owns(Path(p)) and Path(p).exists():
                    if Path(p).is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        Path(p).unlink(missing_ok=True)
                    removed.append(p)
        return removed

    def _owns(self, p: Path) -> bool:
        try:
            p.resolve().relative_to(self.runs_dir)
        except ValueError:
            return False
        return p.resolve() != self.runs_dir

    # ---- lifecycle ---------------------------------------------------------------------------

    def transition(
        self,
        run_id: int,
        to: RunStatus | str,
        *,
        expect: RunStatus | str | None = None,
        reason: str | None = None,
        error_message: str | None = None,
        error_detail: str | None = None,
        exit_code: int | None = None,
        pid: int | None = None,
        device: str | None = None,
    ) -> RunInfo:
        """Move a run to ``to``; raises InvalidTransition when the lifecycle forbids it (any move out
        of a final state) or when the run is not in ``expect``."""
        to = RunStatus(to)
        sources = [src.value for src, targets in TRANSITIONS.items() if to in targets]
        if expect is not None:
            sources = [x for x in sources if x == RunStatus(expect).value]
        now = time.time()
        values: dict[str, Any] = {"status": to.value}
        if to is RunStatus.RUNNING:
            values.update(started_at=now, heartbeat_at=now)
        if to in FINAL_STATES:
            values["ended_at"] = now
        given = dict(reason=reason, error_message=error_message, error_detail=error_detail, exit_code=exit_code)
        given.update(pid=pid, device=device)
        values.update({k: v for k, v in given.items() if v is not None})

        def tx(s: Session) -> RunInfo:
            res = s.execute(update(Run).where(Run.id == run_id, Run.status.in_(sources)).values(**values))
            if res.rowcount == 0:
                current = s.execute(select(Run.status).where(Run.id == run_id)).scalar()
                if current is None:
                    raise RunNotFound(run_id)
                raise InvalidTransition(run_id, current, to.value)
            return _run_info(*s.execute(_run_select().where(Run.id == run_id)).one())

        return self._write(tx)

    def claim_next(self, device: str | None = None, host: str | None = None) -> RunInfo | None:
        """Atomically take the oldest QUEUED run and mark it RUNNING (several supervisors may poll);
        ``host`` records which machine's supervisor took it."""

        def tx(s: Session) -> RunInfo | None:
            for _ in range(5):
                run_id = s.execute(
                    select(Run.id)
                    .where(Run.status == RunStatus.QUEUED.value)
                    .order_by(Run.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).scalar()
                if run_id is None:
                    return None
                now = time.time()
                res = s.execute(
                    update(Run)
                    .where(Run.id == run_id, Run.status == RunStatus.QUEUED.value)
                    .values(status=RunStatus.RUNNING.value, started_at=now, heartbeat_at=now, device=device, pid=None,
                            host=host)
                )
                if res.rowcount == 1:
                    return _run_info(*s.execute(_run_select().where(Run.id == run_id)).one())
            return None

        return self._write(tx)

    def set_pid(self, run_id: int, pid: int, host: str | None = None) -> None:
        """Record the job's process; ``host`` (the machine that pid lives on) is kept as the supervisor
        that claimed the run recorded it unless given."""
        values: dict[str, Any] = {"pid": pid} if host is None else {"pid": pid, "host": host}
        self._write(
            lambda s: s.execute(
                update(Run).where(Run.id == run_id, Run.status == RunStatus.RUNNING.value).values(**values)
            )
        )

    def set_submission_id(self, run_id: int, submission_id: str) -> None:
        """The executor's handle on the run's job (a Ray submission id), stored before the job is
        submitted, so a restarted studio finds the job again."""
        self._write(
            lambda s: s.execute(
                update(Run).where(Run.id == run_id, Run.status == RunStatus.RUNNING.value)
                .values(submission_id=submission_id)
            )
        )

    def heartbeat(self, run_id: int) -> tuple[bool, bool]:
        """Record that the job is alive; returns (still RUNNING, cancel requested)."""

        def tx(s: Session) -> tuple[bool, bool]:
            res = s.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == RunStatus.RUNNING.value)
                .values(heartbeat_at=time.time())
            )
            cancel = s.execute(select(Run.cancel_requested_at).where(Run.id == run_id)).scalar()
            return res.rowcount == 1, cancel is not None

        return self._write(tx)

    def is_cancel_requested(self, run_id: int) -> bool:
        def tx(s: Session) -> bool:
            row = s.execute(select(Run.status, Run.cancel_requested_at).where(Run.id == run_id)).first()
            if row is None:
                return True  # deleted under us: stop
            return row.cancel_requested_at is not None or row.status in FINAL_STATES

        return self._read(tx)

    def request_cancel(self, run_id: int) -> RunInfo:
        """A queued run ends KILLED at once; a running one gets the cancel flag its job polls (the
        supervisor escalates to signals after a grace period); a finished one is left as it is."""

        def tx(s: Session) -> RunInfo:
            now = time.time()
            s.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == RunStatus.QUEUED.value)
                .values(status=RunStatus.KILLED.value, reason="cancelled", ended_at=now, cancel_requested_at=now)
            )
            s.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == RunStatus.RUNNING.value, Run.cancel_requested_at.is_(None))
                .values(cancel_requested_at=now)
            )
            row = s.execute(_run_select().where(Run.id == run_id)).first()
            if row is None:
                raise RunNotFound(run_id)
            return _run_info(*row)

        return self._write(tx)

    def update_progress(
        self, run_id: int, *, step: int | None = None, total_steps: int | None = None, trainable_params: int | None = None
    ) -> None:
        given = dict(step=step, total_steps=total_steps, trainable_params=trainable_params)
        values = {k: v for k, v in given.items() if v is not None}
        if values:
            self._write(lambda s: s.execute(update(Run).where(Run.id == run_id).values(**values)))

    def set_adapter(self, run_id: int, path: str | Path) -> None:
        self._write(lambda s: s.execute(update(Run).where(Run.id == run_id).values(adapter_path=str(path))))

    def log_tail(self, run_id: int, n: int = 100) -> str:
        return tail_file(self.get_run(run_id).log_path, n)

    # ---- params ------------------------------------------------------------------------------

    def log_params(self, run_id: int, params: Mapping[str, Any]) -> None:
        """Params are write-once: writing a key again with the same value is a no-op, with another
        value a ParamConflict."""
        values = {str(k): _param_value(v) for k, v in params.items()}
        if not values:
            return

        def tx(s: Session) -> None:
            existing = dict(
                s.execute(select(Param.key, Param.value).where(Param.run_id == run_id, Param.key.in_(values))).all()
            )
            for k, v in values.items():
                if k in existing and existing[k] != v:
                    raise ParamConflict(f"run {run_id}: param {k!r} is already {existing[k]!r}; refusing {v!r}")
            new = [{"run_id": run_id, "key": k, "value": v} for k, v in values.items() if k not in existing]
            if new:
                s.execute(insert(Param), new)

        self._write(tx)

    def params(self, run_id: int) -> dict[str, str]:
        return self._read(
            lambda s: dict(s.execute(select(Param.key, Param.value).where(Param.run_id == run_id).order_by(Param.key)).all())
        )

    # ---- metrics -----------------------------------------------------------------------------

    def log_metrics(self, run_id: int, points: Iterable[MetricPoint], *, step: int | None = None) -> int:
        """Append points in one transaction (and the run's progress ``step`` if given); returns the count."""
        rows = metric_rows(run_id, points, time.time())
        if not rows and step is None:
            return 0

        def tx(s: Session) -> int:
            self.insert_metrics(s, run_id, rows)
            if step is not None:
                s.execute(update(Run).where(Run.id == run_id).values(step=step))
            return len(rows)

        return self._write(tx)

    def insert_metrics(self, s: Session, run_id: int, rows: list[dict[str, Any]]) -> None:
        """Inside a transaction: add ``metric_rows`` and keep their series' summaries and chunks current."""
        if rows:
            s.execute(insert(Metric), rows)
            self._update_series(s, run_id, rows)

    def _update_series(self, s: Session, run_id: int, rows: list[dict[str, Any]]) -> None:
        by_key: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_key.setdefault(r["key"], []).append(r)
        existing = {
            row.key: row
            for row in s.scalars(
                select(MetricSeriesRow)
                .where(MetricSeriesRow.run_id == run_id, MetricSeriesRow.key.in_(by_key))
                .with_for_update()
            )
        }
        for key, pts in by_key.items():
            last = pts[-1]
            series = existing.get(key)
            if series is None:
                series = MetricSeriesRow(run_id=run_id, key=key, count=0, packed_count=0, packed_last_id=0)
                s.add(series)
            series.count += len(pts)
            series.last_step, series.last_value, series.last_timestamp = last["step"], last["value"], last["timestamp"]
            if series.count - series.packed_count >= CHUNK_POINTS:
                self._pack(s, series)
        s.flush()

    def _pack(self, s: Session, series: MetricSeriesRow) -> None:
        """Move the series' unpacked tail into one packed chunk (the point rows stay)."""
        s.flush()
        tail = s.execute(
            select(Metric.id, Metric.step, Metric.value, Metric.timestamp)
            .where(Metric.run_id == series.run_id, Metric.key == series.key, Metric.id > series.packed_last_id)
            .order_by(Metric.id)
        ).all()
        if not tail:
            return
        ids, steps, values, stamps = zip(*tail, strict=True)
        s.add(
            MetricChunk(
                run_id=series.run_id,
                key=series.key,
                first_id=ids[0],
                last_id=ids[-1],
                count=len(ids),
                steps=_pack_array("q", steps),
                values=_pack_array("d", [math.nan if v is None else v for v in values]),
                timestamps=_pack_array("d", stamps),
            )
        )
        series.packed_last_id = ids[-1]
        series.packed_count += len(ids)

    def metric_history(self, run_id: int, keys: Sequence[str] | None = None) -> dict[str, MetricSeries]:
        """Every point of every metric (or of ``keys``) of a run, per key in write order."""

        def tx(s: Session) -> dict[str, MetricSeries]:
            q = select(MetricSeriesRow.key, MetricSeriesRow.packed_last_id).where(MetricSeriesRow.run_id == run_id)
            cq = select(MetricChunk.key, MetricChunk.steps, MetricChunk.values, MetricChunk.timestamps).where(
                MetricChunk.run_id == run_id
            )
            if keys is not None:
                q = q.where(MetricSeriesRow.key.in_(list(keys)))
                cq = cq.where(MetricChunk.key.in_(list(keys)))
            watermarks = dict(s.execute(q.order_by(MetricSeriesRow.key)).all())
            parts: dict[str, tuple[array, array, array]] = {
                k: (array("q"), array("d"), array("d")) for k in watermarks
            }
            for key, steps, values, stamps in s.execute(cq.order_by(MetricChunk.key, MetricChunk.last_id)):
                st, va, ts = parts[key]
                st.extend(_unpack_array("q", steps))
                va.extend(_unpack_array("d", values))
                ts.extend(_unpack_array("d", stamps))
            out = {}
            for key, wm in watermarks.items():
                st, va, ts = parts[key]
                for step, value, stamp in s.execute(
                    select(Metric.step, Metric.value, Metric.timestamp)
                    .where(Metric.run_id == run_id, Metric.key == key, Metric.id > wm)
                    .order_by(Metric.id)
                ):
                    st.append(step)
                    va.append(math.nan if value is None else value)
                    ts.append(stamp)
                out[key] = MetricSeries(key, st.tolist(), va.tolist(), ts.tolist())
            return out

        return self._read(tx)

    def latest_metrics(self, run_id: int) -> dict[str, tuple[int, float]]:
        """The last (step, value) of each metric: cheap, for tables and progress displays."""
        rows = self._read(
            lambda s: s.execute(
                select(MetricSeriesRow.key, MetricSeriesRow.last_step, MetricSeriesRow.last_value).where(
                    MetricSeriesRow.run_id == run_id
                )
            ).all()
        )
        return {k: (st, math.nan if v is None else v) for k, st, v in rows}

    # ---- evaluations and routing -------------------------------------------------------------

    def log_evaluation(
        self,
        run_id: int,
        step: int,
        scores: Mapping[str, Mapping[str, Any]],
        records: Iterable[EvalRecord | Mapping[str, Any]] = (),
        *,
        loss: float | None = None,
        split: str = "validation",
    ) -> None:
        """Store an evaluation: one row per data set (and "macro"), one routing record per example
        (``EvalRecord`` objects, or their dict form)."""
        results = evaluation_rows(run_id, step, scores, loss, time.time())
        recs = [routing_row(run_id, step, split, r) for r in records]

        def tx(s: Session) -> None:
            if results:
                s.execute(insert(EvaluationResult), results)
            if recs:
                s.execute(insert(RoutingRecord), recs)

        self._write(tx)

    def evaluations(self, run_id: int, step: int | None = None) -> list[EvalResult]:
        q = select(EvaluationResult).where(EvaluationResult.run_id == run_id)
        if step is not None:
            q = q.where(EvaluationResult.step == step)
        q = q.order_by(EvaluationResult.step, EvaluationResult.id)

        def tx(s: Session) -> list[EvalResult]:
            return [
                EvalResult(e.run_id, e.step, e.dataset, e.em, e.f1, e.accuracy, e.count, e.loss, e.scores, e.created_at)
                for e in s.scalars(q)
            ]

        return self._read(tx)

    def routing_steps(self, run_id: int) -> list[int]:
        return self._read(
            lambda s: list(
                s.scalars(select(RoutingRecord.step).where(RoutingRecord.run_id == run_id).distinct().order_by(RoutingRecord.step))
            )
        )

    def routing_records(
        self,
        run_id: int,
        *,
        step: int | None = None,
        split: str | None = None,
        dataset: str | None = None,
        domain: str | None = None,
        expert: int | None = None,
        ood: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[EvalRecord]:
        """Per-example records of one evaluation (``step`` None: the latest evaluated step)."""

        def tx(s: Session) -> list[EvalRecord]:
            st = step
            if st is None:
                st = s.execute(select(func.max(RoutingRecord.step)).where(RoutingRecord.run_id == run_id)).scalar()
                if st is None:
                    return []
            q = select(RoutingRecord).where(RoutingRecord.run_id == run_id, RoutingRecord.step == st)
            if split is not None:
                q = q.where(RoutingRecord.split == split)
            if dataset is not None:
                q = q.where(RoutingRecord.dataset == dataset)
            if domain is not None:
                q = q.where(RoutingRecord.domain == domain)
            if expert is not None:
                q = q.where(RoutingRecord.expert == expert)
            if ood is not None:
                q = q.where(RoutingRecord.ood == ood)
            q = q.order_by(RoutingRecord.id).offset(offset)
            if limit is not None:
                q = q.limit(limit)
            return [eval_record(r) for r in s.scalars(q)]

        return self._read(tx)

    # ---- artifacts ---------------------------------------------------------------------------

    def add_artifact(self, run_id: int, kind: str, path: str | Path, step: int | None = None) -> ArtifactInfo:
        now = time.time()

        def tx(s: Session) -> None:
            s.add(Artifact(run_id=run_id, kind=kind, step=step, path=str(path), created_at=now))

        self._write(tx)
        return ArtifactInfo(run_id, kind, step, str(path), now, Path(path).exists())

    def artifacts(self, run_id: int, kind: str | None = None) -> list[ArtifactInfo]:
        q = select(Artifact).where(Artifact.run_id == run_id)
        if kind is not None:
            q = q.where(Artifact.kind == kind)
        q = q.order_by(Artifact.id)
        rows = self._read(lambda s: [(a.run_id, a.kind, a.step, a.path, a.created_at) for a in s.scalars(q)])
        return [ArtifactInfo(*r, exists=Path(r[3]).exists()) for r in rows]

    def checkpoints(self, run_id: int) -> list[ArtifactInfo]:
        """The run's checkpoints, oldest step first (``exists`` tells which are still on disk)."""
        return sorted(self.artifacts(run_id, "checkpoint"), key=lambda a: (a.step or 0, a.created_at))

    def latest_checkpoint(self, run_id: int) -> ArtifactInfo | None:
        present = [c for c in self.checkpoints(run_id) if c.exists]
        return present[-1] if present else None


# ---- helpers ---------------------------------------------------------------------------------


def _run_select():
    return select(Run, Experiment.name).join(Experiment, Experiment.id == Run.experiment_id)


def _run_info(r: Run, experiment: str) -> RunInfo:
    return RunInfo(
        id=r.id,
        name=r.name,
        experiment=experiment,
        method=r.method,
        base_model=r.base_model,
        data_specs=list(r.data_specs or []),
        config=copy.deepcopy(r.config),
        status=RunStatus(r.status),
        reason=r.reason,
        created_at=r.created_at,
        started_at=r.started_at,
        ended_at=r.ended_at,
        heartbeat_at=r.heartbeat_at,
        cancel_requested_at=r.cancel_requested_at,
        pid=r.pid,
        host=r.host,
        device=r.device,
        exit_code=r.exit_code,
        error_message=r.error_message,
        error_detail=r.error_detail,
        log_path=r.log_path,
        output_dir=r.output_dir,
        adapter_path=r.adapter_path,
        trainable_params=r.trainable_params,
        step=r.step,
        total_steps=r.total_steps,
        sweep_id=r.sweep_id,
        grid_point=copy.deepcopy(r.grid_point),
        submission_id=r.submission_id,
    )


def new_run(s: Session, **fields: Any) -> Run:
    """The one place a run row is created (``submit``, bundle import): its id comes from the counter,
    and on PostgreSQL the table's own sequence is moved past it, so nothing else can hand it out again."""
    run = Run(id=_next_run_id(s), **fields)
    s.add(run)
    s.flush()
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT setval(pg_get_serial_sequence('runs', 'id'), :rid)"), {"rid": run.id})
    return run


def _next_run_id(s: Session) -> int:
    """One more than any run id ever given, so a deleted run's id never comes back (an open page or a
    bookmark holding it must not show another run). Locks the counter row until the transaction
    ends, so concurrent submits on PostgreSQL take turns (SQLite writes take turns anyway)."""
    counter = s.execute(select(IdCounter).where(IdCounter.name == "runs").with_for_update()).scalar_one_or_none()
    if counter is None:  # a database upgraded in between, or its row removed by hand
        counter = IdCounter(name="runs", last_id=0)
        s.add(counter)
    newest = s.execute(select(func.max(Run.id))).scalar() or 0
    counter.last_id = max(counter.last_id, newest) + 1
    s.flush()
    return counter.last_id


def _experiment(s: Session, name: str, description: str | None) -> Experiment:
    exp = s.scalars(select(Experiment).where(Experiment.name == name)).first()
    if exp is None:
        exp = Experiment(name=name, description=description, created_at=time.time())
        s.add(exp)
        s.flush()
    return exp


def _run_count(s: Session, experiment_id: int) -> int:
    return s.execute(select(func.count()).select_from(Run).where(Run.experiment_id == experiment_id)).scalar_one()


def _clean_name(name: str, what: str) -> str:
    name = str(name or "").strip()
    if not name:
        raise StorageError(f"the {what} must not be empty")
    if len(name) > 200:
        raise StorageError(f"the {what} is too long ({len(name)} characters, at most 200)")
    return name


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:40] or "run"


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"train": {"lr": 0.1}} -> {"train.lr": "0.1"}: params as the flat key/value list they are shown as."""
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = _param_value(v)
    return out


def _param_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def _finite_or_none(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if not math.isnan(f) else None


def _json_safe(v: Any) -> Any:
    """JSON columns (PostgreSQL's json in particular) cannot hold NaN or infinities."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if hasattr(v, "item"):  # numpy / torch scalars
        return _json_safe(v.item())
    return v


def _num(d: Mapping[str, Any], *keys: str) -> float | None:
    for k in keys:
        v = d.get(k)
        if v is not None:
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            return f if math.isfinite(f) else None
    return None


def _int(d: Mapping[str, Any], *keys: str) -> int | None:
    f = _num(d, *keys)
    return None if f is None else int(f)


def metric_rows(run_id: int, points: Iterable[MetricPoint], now: float) -> list[dict[str, Any]]:
    """``metrics`` table rows of (key, step, value[, timestamp]) points; NaN is stored as NULL."""
    return [{"run_id": run_id, "key": str(p[0]), "step": int(p[1]), "value": _finite_or_none(p[2]),
             "timestamp": float(p[3]) if len(p) > 3 else now} for p in points]


def evaluation_rows(run_id: int, step: int, scores: Mapping[str, Mapping[str, Any]], loss: float | None,
                    now: float) -> list[dict[str, Any]]:
    """``evaluation_results`` rows: one per data set (and "macro")."""
    out = []
    for dataset, sc in scores.items():
        sc = dict(sc)
        out.append({
            "run_id": run_id,
            "step": step,
            "dataset": str(dataset),
            "em": _num(sc, "em", "exact_match"),
            "f1": _num(sc, "f1"),
            "accuracy": _num(sc, "accuracy", "acc"),
            "count": _int(sc, "n", "count", "num_examples"),
            "loss": _finite_or_none(loss) if loss is not None else None,
            "scores": _json_safe(sc),
            "created_at": now,
        })
    return out


def routing_row(run_id: int, step: int, split: str, rec: EvalRecord | Mapping[str, Any]) -> dict[str, Any]:
    """The ``routing_records`` row of an evaluation record (``eval_record`` reads it back)."""
    r = EvalRecord.of(rec)
    return {
        "run_id": run_id,
        "step": step,
        "split": r.split or split,
        "example_id": r.id,
        "dataset": r.dataset,
        "domain": r.domain,
        "ood": r.ood,
        "answer_type": r.answer_type,
        "input": r.input,
        "context": r.context,
        "gold": r.gold,
        "prediction": r.prediction,
        "expert": r.expert,
        "probs": None if r.probs is None else _json_safe(r.probs),
        "confidence": r.confidence,
        "entropy": r.entropy,
        "em": r.em,
        "f1": r.f1,
        "correct": r.correct,
        "score": r.score,
    }


def eval_record(row: RoutingRecord) -> EvalRecord:
    """The evaluation record a ``routing_records`` row holds (no latency: the table has no column for it)."""
    return EvalRecord(
        dataset=row.dataset, id=row.example_id, domain=row.domain, ood=bool(row.ood), split=row.split,
        answer_type=row.answer_type, input=row.input, context=row.context, gold=list(row.gold or []),
        prediction=row.prediction, expert=row.expert, probs=row.probs, confidence=row.confidence,
        entropy=row.entropy, em=row.em, f1=row.f1, correct=row.correct, score=row.score)


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


def _pack_array(typecode: str, values: Iterable[Any]) -> bytes:
    a = array(typecode, values)
    if sys.byteorder == "big":
        a.byteswap()
    return a.tobytes()


def _unpack_array(typecode: str, data: bytes) -> array:
    a = array(typecode)
    a.frombytes(data)
    if sys.byteorder == "big":
        a.byteswap()
    return a
