"""The routing benchmark's plan: PT-MoE (N=2, T=40, R=36) in each variant (the presets and each
router aid, ``VARIANTS``), per data mix and seed, at the studio's CPU default budget, as sweeps.

``sweeps`` gives one sweep per (mix, variant, seed): the variant's configuration as the base and the
seed both as the data seed and the training seed (each seed draws its own training data and
evaluation questions, as the benchmark always did), each run named ``<mix>-<variant>-s<seed>``.
"""

from __future__ import annotations

from pathlib import Path

from bench.runner import PlannedRun, plan_sweep
from storage.sweep_spec import SweepSpec

ROOT = Path(__file__).resolve().parents[2]
SHAPE = {"method": "ptmoe", "prompt_len": 40, "n_experts": 2, "rank": 36}
# name -> method overrides (laid over SHAPE). Each aid is tried on top of `paper` and removed
# from `studio`, so both its effect alone and its share of the preset are measured.
VARIANTS: dict[str, dict] = {
    "paper": {"preset": "paper"},
    "studio": {"preset": "studio"},
    # Leave-one-out: what each of the studio's aids contributes.
    "studio-norm": {"preset": "studio", "router_norm": False},
    "studio-lr10": {"preset": "studio", "router_lr_mult": 1.0},
    "studio-fullrank": {"preset": "studio", "init": "text"},
    "studio-noise": {"preset": "studio", "noise_type": "multiplicative", "noise_std": 0.01},
    "studio-mi": {"preset": "studio", "mi_loss": 0.0},
    "studio-balance": {"preset": "studio", "balance_loss": 0.0},
    # Alternatives not in the preset.
    "studio+bias": {"preset": "studio", "bias_balance": 0.05},
    "studio+inputs-init": {"preset": "studio", "init": "inputs"},
    # Issue 22's candidate (docs/routing_study.md): the paper's settings with a router fitted to the
    # training data sets and held fixed, both experts mixed by its probabilities.
    "domains-dense": {"preset": "paper", "router_norm": True, "router_init": "domains",
                      "router_init_confidence": 0.7, "router_lr_mult": 0.0, "top_k": 2},
    # Its round-3 follow-up: the same fitted start, the router then learning at 0.1 × the prompt's rate.
    "domains-slow": {"preset": "paper", "router_norm": True, "router_init": "domains",
                     "router_init_confidence": 0.7, "router_lr_mult": 0.1},
}
BUILTIN_EVAL = ["builtin:qa", "builtin:arith", "builtin:units", "builtin:dates"]
MIXES = ("builtin", "comparison")


def data_config(mix: str, data_dir: Path, n_eval: int, seed: int) -> dict:
    if mix == "builtin":
        return {"train": ["builtin:all"], "eval": BUILTIN_EVAL, "max_eval_examples": n_eval, "seed": seed}
    squad = f"squad:{data_dir / 'squad' / 'squad-v2-sample.json'}"
    gsm = f"gsm8k:{data_dir / 'gsm8k'}"
    return {
        "train": [f"{squad}@2000", f"{gsm}/train.jsonl@2000", "builtin:all?n=500"],
        "eval": [f"{squad}?split=test", f"{gsm}/test.jsonl?split=all", *BUILTIN_EVAL],
        "max_eval_examples": n_eval, "seed": seed,
    }



def run_config(mix: str, variant: str, seed: int, args) -> dict:
    """A run's configuration as written (no name or folder: the storage gives each run its own)."""
    return {
        "model": {"name": args.model, "dtype": args.dtype},
        "method": {**SHAPE, **VARIANTS[variant]}, "data": data_config(mix, args.data_dir, args.n_eval, seed),
        "train": {"steps": args.steps, "batch_size": args.batch, "seed": seed,
                  "warmup_steps": max(1, args.steps // 10), "max_new_tokens": args.max_new_tokens,
                  "eval_batch_size": args.eval_batch},
    }


def sweeps(args, experiment: str) -> list[PlannedRun]:
    """Every (mix, seed, variant) of ``args`` as a planned run, in the order the tables list them."""
    out = []
    for mix in args.mix:
        for seed in args.seeds:
            for variant in args.variants:
                name = f"{mix}-{variant}-s{seed}"
                spec = SweepSpec(run_config(mix, variant, seed, args), {"data.seed": [seed]}, [seed], experiment, name)
                out += plan_sweep(spec, lambda _r, name=name: name)
    return out
