"""Evaluation: greedy answers through an adapter, scored per example, averaged per data set.

Records keep everything needed to inspect routing afterwards (which expert, its probabilities
and confidence, the answer and its score), so the app can show why a domain did well or badly.
Averages are reported per data set, as a macro average (each data set counts once), and split
into in-domain and out-of-domain groups (by each example's ``ood`` flag).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .eval_record import EvalRecord
from .metrics import SCORE_KEYS, aggregate, macro_average
from .routing_summary import routing_counts, shares

IN_DOMAIN, OUT_OF_DOMAIN, MACRO = "in_domain", "out_of_domain", "macro"


@dataclass
class EvalResult:
    """Per-example ``records`` and the averages computed from them."""

    records: list[EvalRecord]
    per_dataset: dict[str, dict[str, float]]
    macro: dict[str, float]
    in_domain: dict[str, float] | None = None  # None when no example of the group was evaluated
    out_of_domain: dict[str, float] | None = None
    expert_load: dict[str, list[float]] = field(default_factory=dict)  # per data set, routed methods only

    def scores(self) -> dict[str, dict[str, float]]:
        """{data set: {n, em, f1, accuracy}} plus "macro" and, when present, "in_domain" / "out_of_domain"."""
        out = {k: dict(v) for k, v in self.per_dataset.items()}
        out[MACRO] = dict(self.macro)
        if self.in_domain is not None and self.out_of_domain is not None:
            out[IN_DOMAIN] = dict(self.in_domain)
            out[OUT_OF_DOMAIN] = dict(self.out_of_domain)
        return out

    def to_table(self) -> str:
        """A plain-text table: one row per data set, then the macro and domain-group averages."""
        header = ["data set", "n", "EM", "F1", "acc", "experts"]
        rows = [[name, str(int(s["n"])), *(_pct(s[k]) for k in SCORE_KEYS), _load(self.expert_load.get(name))]
                for name, s in self.per_dataset.items()]
        summary = [(MACRO, self.macro), (IN_DOMAIN, self.in_domain), (OUT_OF_DOMAIN, self.out_of_domain)]
        foot = [[label, str(int(s["n"])), *(_pct(s[k]) for k in SCORE_KEYS), ""]
                for label, s in summary if s is not None and (label == MACRO or self.out_of_domain is not None)]
        if not any(self.expert_load.values()):
            header, rows, foot = header[:-1], [r[:-1] for r in rows], [r[:-1] for r in foot]
        widths = [max(len(r[i]) for r in [header, *rows, *foot]) for i in range(len(header))]

        def line(r: list[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(header), rule, *map(line, rows), rule, *map(line, foot)])

    def write_jsonl(self, path: str | Path) -> Path:
        """One JSON object per record (UTF-8)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", encoding="utf-8") as f:
            for r in self.records:
                f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
        return p


def _pct(x: float) -> str:
    return f"{100 * float(x):.1f}"


def _load(load: list[float] | None) -> str:
    return " ".join(f"{p:.2f}" for p in load) if load else ""


def evaluate(
    adapter,
    specs_or_datasets: Any,
    *,
    max_examples: int | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    format_cfg=None,
    progress: Callable[[int, int], None] | None = None,
    split: str = "test",
    seed: int = 0,
) -> EvalResult:
    """Generate and score every example of the evaluation sets.

    ``specs_or_datasets``: a spec string, a list of spec strings (the ``split`` of each, default
    test; named by domain), a ``{name: Dataset or list of example dicts}`` mapping (e.g. from
    ``build_datasets``), a single Dataset / list of examples, or a list mixing specs and Datasets.
    ``max_examples`` caps each set (seeded subset). ``progress(done, total)`` follows generation.
    ``format_cfg.number_match`` says how number answers are matched.
    """
    from .data.formatting import FormatConfig, encode_example
    from .generate import generate

    sets = resolve_eval_sets(specs_or_datasets, split=split, seed=seed, max_examples=max_examples)
    fmt = format_cfg or FormatConfig()
    tok = adapter.base.tokenizer
    items = [(name, dict(ex)) for name, ds in sets.items() for ex in ds]
    encoded = [encode_example(tok, ex, fmt, with_answer=False) for _, ex in items]
    total = len(encoded)
    gens = generate(adapter, encoded, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    progress=(lambda done: progress(done, total)) if progress else None) if encoded else []
    records = [EvalRecord.scored(name, ex, g, fmt.number_match) for (name, ex), g in zip(items, gens, strict=True)]
    return summarize(records, list(sets), n_experts=adapter.n_experts if adapter.is_routed else 0)


def summarize(records: Sequence[EvalRecord | Mapping[str, Any]], names: Sequence[str] | None = None,
              n_experts: int = 0) -> EvalResult:
    """Averages of scored records: per data set, macro, and in-domain / out-of-domain groups."""
    records = [EvalRecord.of(r) for r in records]
    names = list(names) if names is not None else list(dict.fromkeys(str(r.dataset) for r in records))
    by_set = {n: [r for r in records if r.dataset == n] for n in names}
    per_dataset = {n: aggregate(r.scores() for r in rs) for n, rs in by_set.items()}
    groups = {}
    for label, flag in ((IN_DOMAIN, False), (OUT_OF_DOMAIN, True)):
        sub = {n: aggregate(r.scores() for r in rs if r.ood == flag) for n, rs in by_set.items()}
        sub = {n: s for n, s in sub.items() if s["n"] > 0}
        groups[label] = macro_average(sub) if sub else None
    load = {}
    if n_experts:
        load = shares(routing_counts([str(r.dataset) for r in records], [r.expert for r in records], n_experts))
    return EvalResult(records=records, per_dataset=per_dataset, macro=macro_average(per_dataset),
                      in_domain=groups[IN_DOMAIN], out_of_domain=groups[OUT_OF_DOMAIN], expert_load=load)


def resolve_eval_sets(obj: Any, *, split: str = "test", seed: int = 0, max_examples: int | None = None) -> dict[str, Any]:
    """Normalise what ``evaluate`` accepts into {name: sequence of examples}, each capped."""
    import datasets

    from .data.mixture import eval_sets, unique_name
    from .data.sources import Spec, cap_rows

    def cap(rows: Any) -> Any:
        if max_examples is None or len(rows) <= max_examples:
            return rows
        if isinstance(rows, datasets.Dataset):
            keep = cap_rows(list(range(len(rows))), max_examples, seed, "eval")
            return rows.select(keep)
        return cap_rows(list(rows), max_examples, seed, "eval")

    if isinstance(obj, (str, Spec)):
        obj = [obj]
    if isinstance(obj, Mapping):
        return {str(k): cap(v) for k, v in obj.items()}
    if isinstance(obj, datasets.Dataset):
        return {_set_name(obj): cap(obj)}
    if isinstance(obj, Sequence) and obj and all(isinstance(x, Mapping) for x in obj):
        return {_set_name(obj): cap(list(obj))}  # one list of example dicts
    out: dict[str, Any] = {}
    for item in obj or []:
        if isinstance(item, (str, Spec)):
            for name, ds in eval_sets([item], split=split, seed=seed, max_examples=max_examples).items():
                out[unique_name(name, out)] = ds
        else:
            out[unique_name(_set_name(item), out)] = cap(item)
    return out


def _set_name(rows: Any) -> str:
    try:
        first = rows[0]
        return str(first["domain"])
    except (IndexError, KeyError, TypeError):
        return "eval"
