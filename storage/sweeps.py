"""Sweeps as a whole: launch (the one Python call the command line and the Train tab use), resume,
cancel, delete, and the summary the sweep view and ``python -m storage sweep --wait`` show: per grid
point, the mean and 95 % interval of the macro score over seeds, per-set scores, I(domain; expert),
whether the router collapsed, how many seeds finished; and a paired comparison of two grid points.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ptmoe_core.metrics import paired_macro_bootstrap
from ptmoe_core.routing_summary import RoutingSummary

from .models import RunStatus
from .records import RunInfo
from .repo import Storage
from .sweep_spec import SweepSpec, expand, point_label

if TYPE_CHECKING:
    from .jobs import JobManager

# Student's t, 97.5 % quantile, by degrees of freedom: a 95 % interval of a mean over a few seeds.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass(frozen=True)
class SweepLaunch:
    sweep_id: int
    run_ids: list[int]


def launch_sweep(storage: Storage, spec: SweepSpec, jobs: JobManager | None = None) -> SweepLaunch:
    """Validate and expand ``spec`` (``SweepError``, one line, before anything is queued), check the
    executor can take it (cluster mode: a server database, a shared runs folder), queue every run in
    one transaction and wake the supervisor."""
    runs = expand(spec)
    if jobs is not None:
        jobs.executor.check_submit(storage)
    sweep_id, run_ids = storage.submit_sweep(spec.name, spec.experiment, spec.to_dict(),
                                             [(r.config, r.grid_point) for r in runs])
    if jobs is not None:
        jobs.wake()
    return SweepLaunch(sweep_id, run_ids)


def resume_sweep(storage: Storage, sweep_id: int, jobs: JobManager | None = None) -> list[int]:
    """Queue again every grid point × seed that has neither finished nor a queued/running run (it
    failed or was cancelled); returns the new run ids (none: nothing was missing)."""
    sweep = storage.get_sweep(sweep_id)
    spec = SweepSpec.from_dict(sweep.spec)
    have = {(point_label(r.grid_point or {}), _seed(r)) for r in storage.list_runs(sweep=sweep_id)
            if r.status is RunStatus.FINISHED or r.status in ACTIVE}
    missing = [r for r in expand(spec) if (point_label(r.grid_point), r.seed) not in have]
    if not missing:
        return []
    if jobs is not None:
        jobs.executor.check_submit(storage)
    _, ids = storage.submit_sweep(sweep.name, sweep.experiment, sweep.spec,
                                  [(r.config, r.grid_point) for r in missing], sweep_id=sweep_id)
    if jobs is not None:
        jobs.wake()
    return ids


def cancel_sweep(storage: Storage, sweep_id: int, jobs: JobManager | None = None) -> list[RunInfo]:
    """Cancel every queued or running run of the sweep (queued ones end at once, running ones stop
    at their next step); returns the runs as they are after the request."""
    storage.get_sweep(sweep_id)
    out = [storage.request_cancel(r.id) for r in storage.list_runs(sweep=sweep_id, status=ACTIVE)]
    if jobs is not None:
        jobs.wake()
    return out


def delete_sweep(storage: Storage, sweep_id: int) -> list[str]:
    """Delete a sweep whose runs have all ended, with its runs and their files."""
    return storage.delete_sweep(sweep_id)


def wait_sweep(storage: Storage, sweep_id: int, timeout: float | None = None, poll_s: float = 1.0) -> list[RunInfo]:
    """Block until every run of the sweep has ended."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        runs = storage.list_runs(sweep=sweep_id, newest_first=False)
        if all(r.is_final for r in runs):
            return runs
        if deadline is not None and time.monotonic() > deadline:
            left = sum(not r.is_final for r in runs)
            raise TimeoutError(f"sweep {sweep_id}: {left} run(s) still queued or running after {timeout}s")
        time.sleep(poll_s)


# ---- the summary -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunScore:
    """One run's final evaluation, as the summary uses it."""

    run: RunInfo
    seed: int
    macro: float | None  # macro F1 (SQuAD F1 for spans, correct for numbers), 0..1
    per_set: dict[str, float]
    mi_bits: float | None  # I(domain; expert) of the evaluated inputs; None for unrouted methods
    collapsed: bool | None  # the studio's collapse rule (routing_summary.collapsed_expert)


@dataclass(frozen=True)
class PointSummary:
    grid_point: dict[str, Any]
    label: str
    runs: list[RunScore] = field(default_factory=list)  # the newest run per seed
    n_seeds: int = 0  # seeds the sweep asks for

    @property
    def finished(self) -> list[RunScore]:
        return [r for r in self.runs if r.run.status is RunStatus.FINISHED and r.macro is not None]

    @property
    def n_finished(self) -> int:
        return len(self.finished)

    @property
    def macro_mean(self) -> float | None:
        xs = [r.macro for r in self.finished]
        return statistics.fmean(xs) if xs else None

    @property
    def macro_interval(self) -> tuple[float, float] | None:
        """95 % t interval of the mean over seeds (None with fewer than two finished seeds)."""
        return mean_interval([r.macro for r in self.finished])

    @property
    def per_set(self) -> dict[str, float]:
        sets = sorted({k for r in self.finished for k in r.per_set})
        return {k: statistics.fmean([r.per_set[k] for r in self.finished if k in r.per_set]) for k in sets}

    @property
    def mi_bits(self) -> float | None:
        xs = [r.mi_bits for r in self.finished if r.mi_bits is not None]
        return statistics.fmean(xs) if xs else None

    @property
    def n_collapsed(self) -> int:
        return sum(bool(r.collapsed) for r in self.finished)

    @property
    def status_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.runs:
            out[r.run.status.value] = out.get(r.run.status.value, 0) + 1
        return out


@dataclass(frozen=True)
class SweepSummary:
    sweep_id: int
    name: str
    experiment: str
    keys: list[str]
    seeds: list[int]
    points: list[PointSummary]

    @property
    def done(self) -> bool:
        return all(r.run.is_final for p in self.points for r in p.runs)


def mean_interval(xs: Sequence[float | None]) -> tuple[float, float] | None:
    vals = [float(x) for x in xs if x is not None]
    if len(vals) < 2:
        return None
    m, sd = statistics.fmean(vals), statistics.stdev(vals)
    t = _T975[len(vals) - 2] if len(vals) - 1 <= len(_T975) else 1.96
    half = t * sd / math.sqrt(len(vals))
    return m - half, m + half


def summarize(storage: Storage, sweep_id: int) -> SweepSummary:
    """The sweep's grid points in the grid's order, each with its newest run per seed."""
    sweep = storage.get_sweep(sweep_id)
    spec = SweepSpec.from_dict(sweep.spec)
    runs = storage.list_runs(sweep=sweep_id, newest_first=False)
    newest: dict[tuple[str, int], RunInfo] = {}
    points: dict[str, dict[str, Any]] = {}
    for r in runs:  # oldest first: a resumed point's newer run replaces the cancelled one
        label = point_label(r.grid_point or {})
        points.setdefault(label, dict(r.grid_point or {}))
        newest[(label, _seed(r))] = r
    out = []
    for label, point in points.items():
        scored = [run_score(storage, r) for (lab, _), r in sorted(newest.items(), key=lambda kv: kv[0][1])
                  if lab == label]
        out.append(PointSummary(point, label, scored, len(spec.seeds)))
    return SweepSummary(sweep.id, sweep.name, sweep.experiment, list(spec.grid), list(spec.seeds), out)


def run_score(storage: Storage, run: RunInfo) -> RunScore:
    evals = storage.evaluations(run.id) if run.status is RunStatus.FINISHED else []
    last = max((e.step for e in evals), default=None)
    final = [e for e in evals if e.step == last]
    macro = next((e.f1 for e in final if e.dataset == "macro"), None)
    groups = ("macro", "in_domain", "out_of_domain")
    per_set = {e.dataset: e.f1 for e in final if e.dataset not in groups and e.f1 is not None}
    mi = collapsed = None
    if last is not None:
        recs = [r for r in storage.routing_records(run.id, step=last) if r.expert is not None]
        summary = RoutingSummary.of(recs, 1 + max(r.expert for r in recs)) if recs else None
        if summary is not None:
            mi, collapsed = summary.mi_bits, summary.collapsed is not None
    return RunScore(run, _seed(run), macro, per_set, mi, collapsed)


def format_table(summary: SweepSummary) -> str:
    """The summary as a plain-text table (the command line's ``--wait``)."""
    sets = sorted({k for p in summary.points for k in p.per_set})
    head = ["grid point", "macro F1", "95% interval", *sets, "I(dom;exp)", "collapsed", "finished"]
    rows = []
    for p in summary.points:
        ci = p.macro_interval
        rows.append([
            p.label, _pct(p.macro_mean), f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "-",
            *[_pct(p.per_set.get(k)) for k in sets],
            "-" if p.mi_bits is None else f"{p.mi_bits:.3f}",
            f"{p.n_collapsed}/{p.n_finished}" if p.n_finished else "-",
            f"{p.n_finished}/{p.n_seeds}",
        ])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    title = f"sweep {summary.sweep_id} ({summary.name}, experiment {summary.experiment}, seeds " \
            f"{','.join(map(str, summary.seeds))})"
    return "\n".join([title, line(head), line(["-" * w for w in widths]), *map(line, rows)])


# ---- paired comparison -------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedComparison:
    a: str
    b: str
    diff: float  # macro mean of per-question score differences b − a (0..1 scale)
    low: float
    high: float
    n_pairs: int
    seeds: list[int]


def compare_points(storage: Storage, summary: SweepSummary, a: str, b: str) -> PairedComparison | None:
    """Grid point ``b`` against ``a``, paired by seed and question (the same evaluation questions for
    each seed's two runs): macro mean of per-question differences with a stratified bootstrap 95 %
    interval (``ptmoe_core.metrics.paired_macro_bootstrap``). None when nothing pairs."""
    pts = {p.label: p for p in summary.points}
    if a not in pts or b not in pts:
        return None
    fa = {r.seed: r.run for r in pts[a].finished}
    fb = {r.seed: r.run for r in pts[b].finished}
    seeds = sorted(set(fa) & set(fb))
    per_set: dict[str, list[float]] = {}
    for seed in seeds:
        ra, rb = _question_scores(storage, fa[seed]), _question_scores(storage, fb[seed])
        for key in sorted(set(ra) & set(rb)):
            per_set.setdefault(key[0], []).append(rb[key] - ra[key])
    res = paired_macro_bootstrap(per_set)
    if res is None:
        return None
    return PairedComparison(a, b, *res, n_pairs=sum(map(len, per_set.values())), seeds=seeds)


def _question_scores(storage: Storage, run: RunInfo) -> dict[tuple[str, str], float]:
    return {(r.dataset or r.domain or "", r.id): r.score for r in storage.routing_records(run.id)
            if r.score is not None}


def _seed(run: RunInfo) -> int:
    try:
        return int(run.config.get("train", {}).get("seed", 0))
    except (TypeError, ValueError):
        return 0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"
