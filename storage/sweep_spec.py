"""What a sweep is: a base configuration, a grid over configuration keys and a list of training seeds.

``expand`` turns a ``SweepSpec`` into one validated ``RunConfig`` per grid point and seed, or refuses
the whole sweep with one line naming the key and value at fault (unknown key, a value the config
refuses, an empty grid, more runs than ``MAX_RUNS``) before anything is queued. Pure: no database.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ptmoe_core.config import RunConfig, set_key, unknown_key_hint
from ptmoe_core.config import config_keys as all_config_keys
from ptmoe_core.errors import ConfigError

from .errors import StorageError

MAX_RUNS = 256  # per sweep: a bigger grid is a typo more often than a plan
MAX_GRID_KEYS = 8
SEED_KEY = "train.seed"  # set by the seeds, never by the grid
RESERVED_KEYS = ("name", "output_dir", SEED_KEY)


class SweepError(StorageError):
    """A sweep refused before anything was queued; the message is one line naming the problem."""


@dataclass(frozen=True)
class SweepSpec:
    """``base``: configuration keys as written (a config file's content or a form's config; a
    ``method.preset`` in the grid fills every method key the base leaves out). ``grid``: config key
    (dotted, e.g. ``method.n_experts``) -> the values to try, in order. ``seeds``: ``train.seed``
    values; every grid point runs once per seed."""

    base: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int] = field(default_factory=lambda: [0])
    experiment: str = "default"
    name: str = "sweep"

    @property
    def run_count(self) -> int:
        n = len(self.seeds)
        for values in self.grid.values():
            n *= len(values)
        return n

    def to_dict(self) -> dict[str, Any]:
        return {"base": copy.deepcopy(self.base), "grid": {k: list(v) for k, v in self.grid.items()},
                "seeds": list(self.seeds), "experiment": self.experiment, "name": self.name}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SweepSpec:
        return cls(base=dict(d.get("base") or {}), grid={str(k): list(v) for k, v in (d.get("grid") or {}).items()},
                   seeds=[int(s) for s in d.get("seeds") or []], experiment=str(d.get("experiment") or "default"),
                   name=str(d.get("name") or "sweep"))


@dataclass(frozen=True)
class SweepRun:
    """One run of an expanded sweep."""

    grid_point: dict[str, Any]  # key -> the value as the validated config holds it
    seed: int
    config: RunConfig  # validated; ``name`` set


def parse_grid_arg(text: str) -> tuple[str, list[str]]:
    """``KEY=V1,V2`` (the command line's ``--grid``, a form's field) -> (key, [V1, V2])."""
    key, sep, values = str(text).partition("=")
    key = key.strip()
    if not sep or not key:
        raise SweepError(f"grid entry {text!r} is not of the form KEY=V1,V2 (e.g. method.n_experts=1,2,4)")
    return key, split_values(values)


def split_values(text: str) -> list[str]:
    return [v.strip() for v in str(text).split(",") if v.strip()]


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """``"0,1,2"`` or ``[0, 1, 2]`` -> [0, 1, 2]; one line naming a bad seed."""
    items = split_values(text) if isinstance(text, str) else list(text)
    seeds = []
    for s in items:
        try:
            seed = int(s)
        except (TypeError, ValueError):
            raise SweepError(f"seed {s!r} is not an integer") from None
        if seed < 0:
            raise SweepError(f"seed {seed} is negative; seeds are integers >= 0")
        seeds.append(seed)
    return seeds


def config_keys() -> list[str]:
    """Every dotted key a grid may name (``RunConfig``'s leaves, less the reserved ones)."""
    return [k for k in all_config_keys() if k not in RESERVED_KEYS]


def expand(spec: SweepSpec, max_runs: int = MAX_RUNS) -> list[SweepRun]:
    """Every grid point × seed as a validated config, grid points in the grid's order, seeds inner."""
    _check_shape(spec, max_runs)
    keys = list(spec.grid)
    runs: list[SweepRun] = []
    seen: set[str] = set()
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        given = dict(zip(keys, combo, strict=True))
        cfg = _build(spec.base, given, spec.seeds[0], what=", ".join(f"{k}={v}" for k, v in given.items()))
        point = {k: _get(cfg.to_dict(), k) for k in keys}
        label = point_label(point)
        if label in seen:  # "1" and "1.0", or two spellings of one value
            raise SweepError(f"grid point {label} appears twice; give each value once")
        seen.add(label)
        for seed in spec.seeds:
            run_cfg = copy.deepcopy(cfg)
            run_cfg.train.seed = seed
            run_cfg.name = _run_name(spec.name, point, seed)
            runs.append(SweepRun(point, seed, run_cfg.validate()))
    return runs


def point_label(point: Mapping[str, Any]) -> str:
    """``method.n_experts=2, train.lr=0.01``: how tables and plots name a grid point."""
    return ", ".join(f"{k}={_fmt(v)}" for k, v in point.items())


def _check_shape(spec: SweepSpec, max_runs: int) -> None:
    if not spec.grid:
        raise SweepError("the grid is empty: give at least one KEY=V1,V2 (e.g. method.n_experts=1,2)")
    if len(spec.grid) > MAX_GRID_KEYS:
        raise SweepError(f"the grid has {len(spec.grid)} keys; at most {MAX_GRID_KEYS}")
    known = config_keys()
    for key, values in spec.grid.items():
        if key in RESERVED_KEYS:
            hint = "give seeds instead" if key == SEED_KEY else "the studio sets it for each run"
            raise SweepError(f"grid key {key!r} cannot be swept: {hint}")
        if key not in known:
            raise SweepError(f"unknown configuration key {key!r} in the grid{unknown_key_hint(key, known)}")
        if not values:
            raise SweepError(f"grid key {key!r} has no values: give KEY=V1,V2")
        dup = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if dup is not None:
            raise SweepError(f"grid key {key!r} lists the value {dup!r} twice")
    if not spec.seeds:
        raise SweepError("give at least one seed (e.g. 0,1,2)")
    dup_seed = next((s for i, s in enumerate(spec.seeds) if s in spec.seeds[:i]), None)
    if dup_seed is not None:
        raise SweepError(f"seed {dup_seed} is listed twice")
    if spec.run_count > max_runs:
        shape = " × ".join(str(len(v)) for v in spec.grid.values())
        raise SweepError(f"the sweep would queue {spec.run_count} runs ({shape} grid points × {len(spec.seeds)} "
                         f"seeds); at most {max_runs}")


def _build(base: Mapping[str, Any], given: Mapping[str, Any], seed: int, what: str) -> RunConfig:
    d = copy.deepcopy(dict(base))
    try:
        for key, value in [*given.items(), (SEED_KEY, seed)]:
            set_key(d, key, value)
        return RunConfig.from_dict(d).validate()
    except ConfigError as e:
        raise SweepError(f"grid {what}: {str(e).splitlines()[0]}") from None


def _get(d: Mapping[str, Any], key: str) -> Any:
    for part in key.split("."):
        d = d[part]
    return d


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "+".join(map(str, v))
    return str(v)


def _run_name(sweep: str, point: Mapping[str, Any], seed: int) -> str:
    parts = [f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in point.items()]
    return f"{sweep}-{'-'.join(parts)}-s{seed}"[:200]
