"""Run bundles in and out of the database (the file format is ``ptmoe_core.bundle``).

``export_run`` writes a finished run (config, adapter, metric history, evaluations with routing,
checkpoint list, the cached floor) to one file. ``import_bundle`` validates a bundle completely in
memory, writes its adapter into a new folder of the runs folder, then records the run in ONE
database transaction; if anything fails the folder is removed, so nothing is ever half-imported.
A bundle already in the database (same ``bundle_id``) is not imported twice.

``seed_gallery`` fills an empty studio with the example runs of ``gallery/`` at first start.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ptmoe_core.bundle import SUFFIX, Evaluation, Floor, RunBundle, bundle_from_adapter_dir, read_bundle, write_bundle
from ptmoe_core.config import RunConfig
from ptmoe_core.errors import BundleError
from ptmoe_core.floor import floor_key

from .errors import ParamConflict, StorageError
from .floors import FloorCache
from .models import Artifact, EvaluationResult, Experiment, Param, RoutingRecord, Run, RunStatus
from .repo import (
    PARAM_EXCLUDE,
    Storage,
    _experiment,
    _slug,
    evaluation_rows,
    flatten,
    metric_rows,
    new_run,
    routing_row,
)

log = logging.getLogger(__name__)
GALLERY = "gallery"
GALLERY_DESCRIPTION = ("Example runs shipped with the studio (gallery/): hide them with “show gallery runs” in the "
                       "Runs tab, or delete them; they are not imported again.")
IMPORTED = "imported"
P_ID, P_KEY, P_SOURCE, P_PROVENANCE = "bundle.id", "bundle.key", "bundle.source", "bundle.provenance"
IMPORT_DIR = "imported"


@dataclass(frozen=True)
class Imported:
    run_id: int
    name: str
    created: bool  # False: the bundle was already in the database as ``run_id``


# ---- export ----------------------------------------------------------------------------------


def run_bundle(storage: Storage, run_id: int) -> RunBundle:
    """A finished run of ``storage`` as a bundle (in memory)."""
    r = storage.get_run(run_id)
    if r.status is not RunStatus.FINISHED or not r.adapter_path or not Path(r.adapter_path).is_dir():
        raise BundleError(f"run {run_id} has no final adapter (status {r.status}); only a finished run exports")
    params = storage.params(run_id)
    info = {k[len("info."):]: _param_value(v) for k, v in params.items() if k.startswith("info.")}
    info.update(status="finished", step=r.step, total_steps=r.total_steps, started_at=r.started_at,
                ended_at=r.ended_at, device=r.device or info.get("device"))
    metrics = {k: {"steps": s.steps, "values": s.values} for k, s in storage.metric_history(run_id).items()}
    by_step: dict[int, Evaluation] = {}
    for e in storage.evaluations(run_id):
        ev = by_step.setdefault(e.step, Evaluation(step=e.step, scores={}, loss=e.loss))
        ev.scores[e.dataset] = dict(e.scores)
    for step, ev in by_step.items():
        ev.records = storage.routing_records(run_id, step=step)
    origin = _param_value(params.get(P_PROVENANCE, "null"))
    provenance = {"exported_from": "PT-MoE Studio", "exported_at": _iso(time.time()), "run_id": run_id,
                  **({"origin": origin} if origin else {})}
    config = copy.deepcopy(r.config)
    floor = None
    try:
        key = floor_key(RunConfig.from_dict(config))
        cached = FloorCache(storage.runs_dir).get(key)
        floor = Floor(key, cached) if cached is not None else None
    except Exception as e:  # an old config that no longer parses still exports, without its floor
        log.warning("run %s: no floor in its bundle (%s)", run_id, e)
    return bundle_from_adapter_dir(
        r.adapter_path, name=r.name, config=config, metrics=metrics,
        evaluations=[by_step[s] for s in sorted(by_step)],
        checkpoints=sorted({c.step for c in storage.checkpoints(run_id) if c.step is not None}),
        info=info, provenance=provenance, floor=floor, created_at=r.created_at)


def export_run(storage: Storage, run_id: int, path: str | Path) -> Path:
    """Write run ``run_id`` to the bundle file ``path``. The run remembers the bundle's id, so importing
    the file back into this database finds the run instead of duplicating it."""
    b = run_bundle(storage, run_id)
    out = write_bundle(b, path)
    try:
        storage.log_params(run_id, {P_ID: b.bundle_id})
    except ParamConflict as e:  # cannot happen for an unchanged adapter; the file is written all the same
        log.warning("%s", e)
    return out


# ---- import ----------------------------------------------------------------------------------


def import_bundle(storage: Storage, path: str | Path, experiment: str = IMPORTED, *,
                  description: str | None = None) -> Imported:
    """Validate ``path`` and add its run to ``storage`` (FINISHED, reason "imported"); all or nothing."""
    b = read_bundle(path)
    existing = find_bundle(storage, b.bundle_id)
    if existing is not None:
        return Imported(existing, storage.get_run(existing).name, created=False)
    run_dir = storage.runs_dir / IMPORT_DIR / f"{_slug(b.name)}-{b.bundle_id[:8]}-{uuid.uuid4().hex[:6]}"
    try:
        b.write_adapter(run_dir / "adapter")
        run_id, created = storage.db.run(lambda s: _insert(storage, s, b, run_dir, experiment, description,
                                                            Path(path).name), write=True)
    except BaseException:
        _remove(run_dir)
        raise
    if not created:  # another process imported the same bundle meanwhile
        _remove(run_dir)
    elif b.floor is not None:
        floors = FloorCache(storage.runs_dir)
        if floors.get(b.floor.key) is None:
            floors.put(b.floor.key, b.floor.evaluation, {"from_bundle": b.bundle_id})
    return Imported(run_id, b.name, created)


def _insert(storage: Storage, s: Session, b: RunBundle, run_dir: Path, experiment: str, description: str | None,
            source: str) -> tuple[int, bool]:
    """The whole run in the caller's transaction; no file is touched here, so a retried transaction
    (the database was locked) is safe."""
    dup = s.execute(select(Param.run_id).where(Param.key == P_ID, Param.value == b.bundle_id).limit(1)).scalar()
    if dup is not None:
        return int(dup), False
    exp = _experiment(s, experiment, description)
    cfg = copy.deepcopy(b.config)
    cfg["output_dir"] = str(run_dir)
    info, now = b.info, time.time()
    steps = int(info["step"]) if isinstance(info.get("step"), int) else cfg["train"]["steps"]
    run = new_run(s, experiment_id=exp.id, name=b.name, method=b.method, base_model=b.base_model["name"],
                  data_specs=list(cfg["data"]["train"]), config=cfg, status=RunStatus.FINISHED.value, reason="imported",
                  created_at=b.created_at, started_at=_float(info.get("started_at")),
                  ended_at=_float(info.get("ended_at")), heartbeat_at=None, device=_short(info.get("device")),
                  output_dir=str(run_dir), adapter_path=str(run_dir / "adapter"), log_path=None,
                  trainable_params=b.trainable_params, step=steps, total_steps=cfg["train"]["steps"])
    rid = run.id
    params = {k: v for k, v in flatten(cfg).items() if k not in PARAM_EXCLUDE}
    params.update(flatten({k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))}, "info."))
    params.update({P_ID: b.bundle_id, P_SOURCE: source[:500],
                   P_PROVENANCE: json.dumps(b.provenance, sort_keys=True, default=str)})
    if isinstance(b.provenance.get("gallery_key"), str):
        params[P_KEY] = b.provenance["gallery_key"]
    s.execute(insert(Param), [{"run_id": rid, "key": k[:250], "value": v} for k, v in params.items()])
    points = [(k, st, v, now) for k, series in b.metrics.items() for st, v in zip(series["steps"], series["values"],
                                                                                   strict=True)]
    storage.insert_metrics(s, rid, metric_rows(rid, points, now))
    for ev in b.evaluations:
        rows = evaluation_rows(rid, ev.step, ev.scores, ev.loss, now)
        if rows:
            s.execute(insert(EvaluationResult), rows)
        recs = [routing_row(rid, ev.step, "validation", r) for r in ev.records]
        if recs:
            s.execute(insert(RoutingRecord), recs)
    s.add(Artifact(run_id=rid, kind="adapter", step=steps, path=str(run_dir / "adapter"), created_at=now))
    for st in b.checkpoints:  # the list travels, the files do not: these paths never exist
        s.add(Artifact(run_id=rid, kind="checkpoint", step=st, path=str(run_dir / "checkpoints" / f"step-{st:06d}"),
                       created_at=now))
    return rid, True


def find_bundle(storage: Storage, bundle_id: str) -> int | None:
    """The run imported from (or exported as) the bundle ``bundle_id``, if this database has it."""
    return storage.db.run(lambda s: s.execute(
        select(Param.run_id).where(Param.key == P_ID, Param.value == bundle_id).limit(1)).scalar(), write=False)


# ---- the gallery -----------------------------------------------------------------------------


def gallery_files(gallery_dir: str | Path) -> list[Path]:
    d = Path(gallery_dir)
    return sorted(p for p in d.glob(f"*{SUFFIX}") if p.is_file()) if d.is_dir() else []


def seed_gallery(storage: Storage, gallery_dir: str | Path) -> list[Imported]:
    """At first start (no run at all, and no gallery experiment yet: a user who deleted the gallery
    does not get it back), import every bundle of ``gallery_dir`` into the experiment "gallery".
    A bundle that is refused is logged and skipped; it never stops the studio."""
    files = gallery_files(gallery_dir)
    if not files or not _is_first_start(storage):
        return []
    storage.create_experiment(GALLERY, GALLERY_DESCRIPTION)
    out = []
    for f in files:
        try:
            out.append(import_bundle(storage, f, GALLERY, description=GALLERY_DESCRIPTION))
        except (BundleError, StorageError) as e:
            log.warning("gallery: skipped %s: %s", f.name, e)
    return out


def _is_first_start(storage: Storage) -> bool:
    def tx(s: Session) -> bool:
        runs = s.execute(select(func.count()).select_from(Run)).scalar_one()
        gallery = s.execute(select(Experiment.id).where(Experiment.name == GALLERY)).first()
        return runs == 0 and gallery is None

    return storage.db.run(tx, write=False)


def gallery_roles(storage: Storage) -> dict[str, int]:
    """{gallery key (e.g. "ptmoe-studio"): run id} of the gallery runs still in the database."""
    def tx(s: Session) -> dict[str, int]:
        rows = s.execute(select(Param.value, Param.run_id).join(Run, Run.id == Param.run_id)
                         .join(Experiment, Experiment.id == Run.experiment_id)
                         .where(Param.key == P_KEY, Experiment.name == GALLERY).order_by(Param.run_id)).all()
        return {k: rid for k, rid in rows}

    return storage.db.run(tx, write=False)


# ---- helpers ---------------------------------------------------------------------------------


def _remove(run_dir: Path) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        run_dir.parent.rmdir()  # the imports folder, when this was its only run
    except OSError:
        pass


def _param_value(v: str) -> Any:
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return v


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _short(v: Any) -> str | None:
    return str(v)[:32] if v is not None else None


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
