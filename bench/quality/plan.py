"""The quality benchmark's plan: which runs, at which budget, and the plan as sweeps.

The five methods as the paper's comparison configures them (``ptmoe_core.presets``: the ``paper``
preset, at the paper's shapes ``PAPER_SHAPES``); the full plan adds PT-MoE in the ``studio`` preset,
the four routing variants of PT-MoE (selective x probationary; the non-probationary ones route with
straight-through, so their routers train), PT-MoE with the optional balance loss, and small sweeps of
N, T and R; ``--quick`` runs only the five methods at a tiny budget. ``--seeds K`` repeats the five
methods and the studio preset with training seeds 1..K-1 (initialisation, batch order and router noise
change; the data and the evaluation questions do not).

``sweeps`` turns the plan into ``SweepSpec``s for the job layer: one per family (a seed-0 run and
its repeats over seeds), with the family's configuration as the base, a one-point grid over its
method and the family's seeds; every run keeps the plan's name, so cached runs are found again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.runner import PlannedRun, config_key, plan_sweep
from ptmoe_core.methods import METHODS as SPECS
from storage.sweep_spec import SweepSpec

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data"
EXPERIMENT = "paper-comparison"
METHODS = ("pt", "dpt", "smop", "ptmoe", "lora")  # the plan's methods, in the page's order
# PT-MoE's studio preset before issue 22 (a learned router at 10× the prompt's learning rate, a balance loss
# and the full-rank init), spelled out so that the preset's later values do not change these runs.
STUDIO_BEFORE = {"init": "text_vocab", "router_norm": True, "router_lr_mult": 10.0, "balance_loss": 0.1,
                 "router_init": "orthogonal", "router_init_confidence": 0.6, "top_k": 1}
# Repeated over training seeds (--seeds): the five methods and PT-MoE in the studio preset.
SEEDED = (*METHODS, "ptmoe-studio")
# How the answers are scored (docs: the page says so): SQuAD v2.0's unanswerable questions are dropped
# (the QA columns are answerable-only, the official script's HasAns); number answers are matched as
# lm-evaluation-harness's GSM8K "flexible-extract" filter does (ptmoe_core.metrics).
SQUAD_UNANSWERABLE = "drop"
NUMBER_MATCH = "flexible"
LABELS = {m: SPECS[m].title for m in METHODS}

__all__ = ["config_key"]  # re-exported: the key cached runs are matched by


@dataclass(frozen=True)
class Budget:
    """What every run shares: optimisation, sequence lengths, data sizes, evaluation sizes."""

    steps: int
    batch_size: int
    n_eval: int  # examples per evaluation data set (10 sets)
    max_source_tokens: int = 192
    max_answer_tokens: int = 16
    max_new_tokens: int = 16
    eval_batch_size: int = 16
    train_cap: int = 400  # SQuAD and GSM8K each; the built-in tasks give train_cap / 4 per task
    seed: int = 0

    @property
    def warmup(self) -> int:
        return max(1, self.steps // 10)


QUICK = Budget(steps=8, batch_size=4, n_eval=4)
FULL = Budget(steps=50, batch_size=4, n_eval=16)


@dataclass(frozen=True)
class RunSpec:
    name: str  # run name in the database, unique within the experiment
    label: str  # as the tables and plots show it
    group: str  # methods | routing | balance | N | T | R
    method: dict[str, Any] = field(default_factory=dict)  # MethodConfig overrides
    seed: int = 0  # added to the budget's seed for training (init, batch order, noise); data stay the same
    base: str = ""  # for a repeat over seeds: the name of the seed-0 run it repeats

    @property
    def family(self) -> str:
        """The seed-0 run's name: what the runs over seeds share."""
        return self.base or self.name


def build_plan(quick: bool, only: list[str] | None = None, seeds: int = 1) -> list[RunSpec]:
    """The five methods as the paper's comparison configures them (``presets.paper_method``: PT-MoE
    T=40 N=2 R=36; SMoP T=20 per expert, the paper's 86k on the 1B shape; PT T=40; DPT T=40 R=39,
    the paper's 81k; LoRA r=1 on q_proj, v_proj), then, unless quick, the ablations; then the runs
    of ``SEEDED`` in the plan again for training seeds 1 .. seeds-1."""
    if seeds < 1:
        raise SystemExit(f"--seeds must be at least 1 (got {seeds})")
    plan = _seed0_plan(quick, only)
    plan += [dataclasses.replace(s, name=f"{s.name}-seed{k}", label=f"{s.label}, seed {k}", group="seeds",
                                 seed=k, base=s.name)
             for k in range(1, seeds) for s in plan if s.name in SEEDED]
    return plan


def _seed0_plan(quick: bool, only: list[str] | None) -> list[RunSpec]:
    from ptmoe_core.presets import paper_method

    base = {m: paper_method(m) for m in METHODS}
    chosen = [m for m in METHODS if not only or m in only]
    plan = [RunSpec(m, LABELS[m], "methods", base[m]) for m in chosen]
    if quick or (only and "ptmoe" not in only):
        return plan
    pm = base["ptmoe"]
    plan.append(RunSpec("ptmoe-studio", "PT-MoE, studio preset", "studio", {**pm, "preset": "studio"}))
    # The default before issue 22 (docs/routing_study.md), spelled out: what the new default is measured against.
    plan.append(RunSpec("ptmoe-studio-before", "PT-MoE, studio preset before issue 22", "studio",
                        {**pm, "preset": "studio", **STUDIO_BEFORE}))
    # Non-probationary weights alone give the router no gradient; the paper routes with a
    # straight-through estimator, so these rows do too (forward weight 1 or 1/k, gradient through p).
    for top_k, prob, label in ((1, False, "selective, non-probationary"), (2, True, "soft mix, probationary"),
                               (2, False, "soft mix, non-probationary")):
        name = f"ptmoe-{'sel' if top_k == 1 else 'soft'}-{'prob' if prob else 'noprob'}"
        plan.append(RunSpec(name, f"PT-MoE {label}", "routing",
                            {**pm, "top_k": top_k, "probationary": prob, "straight_through": not prob}))
    # Not in the paper's PT-MoE: the Switch-style balance loss (SMoP's, at weight 0.01) against router
    # collapse; this run is its control (same everything, balance_loss 0.1 instead of 0).
    plan.append(RunSpec("ptmoe-balance", "PT-MoE + balance loss 0.1", "balance", {**pm, "balance_loss": 0.1}))
    for n in (1, 4):
        plan.append(RunSpec(f"ptmoe-n{n}", f"PT-MoE N={n}", "N", {**pm, "n_experts": n}))
    for t in (20, 80):
        plan.append(RunSpec(f"ptmoe-t{t}", f"PT-MoE T={t}", "T", {**pm, "prompt_len": t, "rank": min(36, t)}))
    for r in (8, 16):
        plan.append(RunSpec(f"ptmoe-r{r}", f"PT-MoE R={r}", "R", {**pm, "rank": r}))
    return plan


def data_specs(data_dir: Path, b: Budget) -> tuple[list[str], list[str]]:
    """(training specs, evaluation specs). SQuAD's single file is split by passage (80/10/10), so
    its test questions come from passages never trained on; GSM8K's test file is used whole."""
    squad = f"squad:{data_dir / 'squad' / 'squad-v2-sample.json'}?unanswerable={SQUAD_UNANSWERABLE}"
    train = [f"{squad}@{b.train_cap}", f"gsm8k:{data_dir / 'gsm8k' / 'train.jsonl'}@{b.train_cap}",
             f"builtin:all?n={b.train_cap // 4}&n_eval={max(b.n_eval, 20)}"]
    evals = [f"{squad}&split=test", f"gsm8k:{data_dir / 'gsm8k' / 'test.jsonl'}?split=all",
             f"builtin:all?n={b.train_cap // 4}&n_eval={max(b.n_eval, 20)}",
             f"builtin:all-ood?n={b.train_cap // 4}&n_eval={max(b.n_eval, 20)}"]
    return train, evals


def make_config(spec: RunSpec, b: Budget, model: str, device: str, data_dir: Path, out_root: Path):
    from ptmoe_core.config import RunConfig

    train, evals = data_specs(data_dir, b)
    cfg = RunConfig.from_dict({
        "name": spec.name,
        "output_dir": str(out_root / spec.name),
        "model": {"name": model, "device": device},
        "method": spec.method,
        "data": {"train": train, "eval": evals, "max_eval_examples": b.n_eval, "seed": b.seed,
                 "max_source_tokens": b.max_source_tokens, "max_answer_tokens": b.max_answer_tokens,
                 "number_match": NUMBER_MATCH},
        "train": {"steps": b.steps, "batch_size": b.batch_size, "warmup_steps": b.warmup, "seed": b.seed + spec.seed,
                  "max_new_tokens": b.max_new_tokens, "eval_batch_size": b.eval_batch_size},
    })
    return cfg.validate()


def sweeps(plan: list[RunSpec], b: Budget, model: str, device: str, data_dir: Path,
           experiment: str) -> list[PlannedRun]:
    """The plan as sweeps (one per family, see the module's docstring), its runs in the plan's order."""
    fams: dict[str, list[RunSpec]] = {}
    for s in plan:
        fams.setdefault(s.family, []).append(s)
    planned: dict[str, PlannedRun] = {}
    for family, specs in fams.items():
        base = make_config(specs[0], b, model, device, data_dir, Path(family)).to_dict()
        for k in ("name", "output_dir"):  # the storage gives each run its own
            base.pop(k)
        names = {b.seed + s.seed: s.name for s in specs}
        spec = SweepSpec(base, {"method.method": [base["method"]["method"]]}, sorted(names), experiment, family)
        planned.update((p.name, p) for p in plan_sweep(spec, lambda r, names=names: names[r.seed]))
    return [planned[s.name] for s in plan]
