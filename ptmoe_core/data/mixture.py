"""Mixing several data specs into one training set, and naming the evaluation sets.

Mixing rule (reproducible for a seed):

1. each spec contributes its train split (or the split its ``split=`` option names), after its
   own cap (``@N`` / ``cap=N``);
2. without weights, sources keep their natural proportions; ``max_train_examples`` then takes
   a proportional seeded subset of each;
3. with weights (``*W`` / ``weight=W``; a spec without one weighs 1), the total is
   ``max_train_examples`` (default: the sum of the capped sizes) and source i gets
   ``total * W_i / sum(W)`` examples: a seeded subset when it has more, repeated (whole
   copies plus a seeded remainder) when it has fewer;
4. the mixture is shuffled with the seed.

Evaluation sets are named by domain, so ``builtin:all`` reports each of its tasks separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets

from ..config import DataConfig
from ..errors import DataError
from .schema import SPLITS, canonical_split, empty_dataset, seeded_rng
from .sources import Spec, load_spec, parse_spec, spec_domains


def _without_split(spec: Spec) -> Spec:
    return Spec(spec.text, spec.prefix, spec.arg, {k: v for k, v in spec.options.items() if k != "split"})


def load_all(spec: str | Spec, seed: int = 0, cache: dict[str, datasets.DatasetDict] | None = None):
    """Every split of a spec as a ``DatasetDict`` (loaded once per ``cache``)."""
    s = spec if isinstance(spec, Spec) else parse_spec(spec)
    key = f"{s.text}|{seed}"
    if cache is not None and key in cache:
        return cache[key]
    dd = load_spec(_without_split(s), seed=seed)
    if cache is not None:
        cache[key] = dd
    return dd


def select_split(dd: datasets.DatasetDict, split: str, spec_text: str) -> datasets.Dataset:
    """One split (or ``all``) of a loaded spec; an empty one is an error naming the spec."""
    if split == "all":
        ds = datasets.concatenate_datasets([dd[k] for k in SPLITS])
    else:
        ds = dd[canonical_split(split)]
    if len(ds) == 0:
        counts = ", ".join(f"{k}={len(dd[k])}" for k in SPLITS)
        raise DataError(f"{spec_text}: the {split} split is empty ({counts})")
    return ds


def take(ds: datasets.Dataset, n: int, seed: int, salt: str = "") -> datasets.Dataset:
    """Exactly ``n`` rows: a seeded subset, or whole copies plus a seeded remainder (oversampling)."""
    size = len(ds)
    if n == size:
        return ds
    if size == 0 or n <= 0:
        return ds.select([])
    rng = seeded_rng("take", seed, salt, size, n)
    copies, rest = divmod(n, size)
    idx = [i for _ in range(copies) for i in range(size)] + sorted(rng.sample(range(size), rest))
    return ds.select(idx)


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Integer shares of ``total`` proportional to ``weights`` (largest remainder, sums exactly)."""
    s = float(sum(weights))
    raw = [total * w / s for w in weights]
    out = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def mix(
    specs: Sequence[str | Spec],
    *,
    split: str = "train",
    seed: int = 0,
    max_examples: int | None = None,
    cache: dict[str, datasets.DatasetDict] | None = None,
) -> datasets.Dataset:
    """One shuffled training set from several specs (rule in the module docstring)."""
    if not specs:
        raise DataError("no data specs given (e.g. builtin:all)")
    parsed = [s if isinstance(s, Spec) else parse_spec(s) for s in specs]
    parts = [select_split(load_all(s, seed, cache), s.split or split, s.text) for s in parsed]
    sizes = [len(p) for p in parts]
    if any(s.weight is not None for s in parsed):
        weights = [s.weight if s.weight is not None else 1.0 for s in parsed]
        counts = allocate(max_examples or sum(sizes), weights)
    elif max_examples is not None and max_examples < sum(sizes):
        counts = allocate(max_examples, sizes)
    else:
        counts = sizes
    chosen = [take(p, n, seed, s.text) for p, n, s in zip(parts, counts, parsed, strict=True) if n > 0]
    mixed = datasets.concatenate_datasets(chosen) if chosen else empty_dataset()
    order = list(range(len(mixed)))
    seeded_rng("mix", seed, len(mixed)).shuffle(order)
    return mixed.select(order)


def eval_sets(
    specs: Sequence[str | Spec],
    *,
    split: str = "test",
    seed: int = 0,
    max_examples: int | None = None,
    cache: dict[str, datasets.DatasetDict] | None = None,
    skip_empty: bool = False,
) -> dict[str, datasets.Dataset]:
    """Named evaluation sets, one per domain of each spec, each capped at ``max_examples``
    (a seeded subset). ``skip_empty`` leaves out specs whose split is empty instead of failing."""
    out: dict[str, datasets.Dataset] = {}
    for text in specs:
        s = text if isinstance(text, Spec) else parse_spec(text)
        try:
            ds = select_split(load_all(s, seed, cache), s.split or split, s.text)
        except DataError:
            if skip_empty:
                continue
            raise
        for name, part in split_by_domain(ds).items():
            if max_examples is not None and len(part) > max_examples:
                part = part.select(sorted(seeded_rng("eval", seed, name).sample(range(len(part)), max_examples)))
            out[unique_name(name, out)] = part
    return out


def split_by_domain(ds: datasets.Dataset) -> dict[str, datasets.Dataset]:
    domains = ds["domain"]
    names = sorted(set(domains))
    if len(names) == 1:
        return {names[0]: ds}
    return {n: ds.select([i for i, d in enumerate(domains) if d == n]) for n in names}


def unique_name(name: str, taken: dict[str, Any]) -> str:
    if name not in taken:
        return name
    k = 2
    while f"{name}-{k}" in taken:
        k += 1
    return f"{name}-{k}"


def build_datasets(data_cfg: DataConfig) -> tuple[datasets.Dataset, dict[str, datasets.Dataset]]:
    """(training examples, {name: evaluation examples}) for a run.

    Training mixes ``data_cfg.train`` (``max_train_examples``, ``seed``). Evaluation uses the test
    split of each ``data_cfg.eval`` spec, or, when that list is empty, the validation split of
    each training spec (specs without validation rows are skipped); each set is capped at
    ``max_eval_examples``.
    """
    cache: dict[str, datasets.DatasetDict] = {}
    train = mix(data_cfg.train, seed=data_cfg.seed, max_examples=data_cfg.max_train_examples, cache=cache)
    return train, run_eval_sets(data_cfg, cache)


def run_eval_sets(data_cfg: DataConfig, cache: dict[str, datasets.DatasetDict] | None = None, *,
                  capped: bool = True) -> dict[str, datasets.Dataset]:
    """The evaluation sets of a run, as ``build_datasets`` names and caps them (``capped=False``:
    whole, e.g. to draw other examples from them in Inspect)."""
    cap = data_cfg.max_eval_examples if capped else None
    if data_cfg.eval:
        return eval_sets(data_cfg.eval, split="test", seed=data_cfg.seed, max_examples=cap, cache=cache)
    plain = [_without_split(parse_spec(s)) for s in data_cfg.train]  # validation, whatever split= says
    return eval_sets(plain, split="validation", seed=data_cfg.seed, max_examples=cap, cache=cache, skip_empty=True)


def run_eval_set_names(data_cfg: DataConfig) -> list[str]:
    """The names of a run's evaluation sets as far as the specs tell without loading any data
    (``sources.spec_domains`` of each), in spec order."""
    return list(dict.fromkeys(d for s in (data_cfg.eval or data_cfg.train) for d in spec_domains(s)))
