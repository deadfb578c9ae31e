"""The router study's plan: its variants (name -> label, method config), its budget (the comparison's
FULL budget with 100 questions per set) and the run configuration of a variant and seed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bench.quality import plan as q  # the comparison's budget and data

ROOT = q.ROOT

EXPERIMENT = "routing-study"
BUDGET = dataclasses.replace(q.FULL, n_eval=100)

STUDIO_BEFORE = q.STUDIO_BEFORE  # the studio preset when this study began


def variants() -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (label, method config). Every PT-MoE variant has the paper's shape (T=40, N=2, R=36)."""
    from ptmoe_core.presets import paper_method

    pm = paper_method("ptmoe")
    # The candidate's start (this study): the router is fitted before training as a classifier of the
    # training data sets (grouped into N) at the confidence the paper's router reaches (≈0.7).
    fitted = {**pm, "router_norm": True, "router_init": "domains", "router_init_confidence": 0.7}
    return {
        "pt": ("PT (paper preset)", paper_method("pt")),
        "paper": ("PT-MoE, paper preset", pm),
        "studio": ("PT-MoE, studio preset before this study", {**pm, "preset": "studio", **STUDIO_BEFORE}),
        # Does routing help at all? The same prompt machinery with one expert (no choice to make).
        "n1": ("PT-MoE N = 1, paper preset", {**pm, "n_experts": 1}),
        # The candidate: the fitted router kept fixed (an Adam step of lr per weight would rewrite a fitted
        # router within a few steps).
        "domains": ("PT-MoE, paper + fixed router fitted to the data sets", {**fitted, "router_lr_mult": 0.0}),
        # Two follow-ups of the candidate (round 2): a top-1 router splits the few updates of a 50-step
        # budget between the experts (each expert learns only from its group's inputs); mixing both experts
        # by the fitted probabilities (top-k = N) lets every input train both prompts, its own the most.
        "domains-dense": ("PT-MoE, fixed data-set router, both experts mixed by its probabilities",
                          {**fitted, "router_lr_mult": 0.0, "top_k": 2}),
        # ... and a fitted start that the router then keeps learning at the paper's rate.
        "domains-learn": ("PT-MoE, router fitted to the data sets, then trained", fitted),
        # Round 3 (after `domains-learn` scored best but drifted from the fit): the same fitted start,
        # the router learning at a tenth of the prompt's rate, so its confidence can grow while its split
        # moves less.
        "domains-slow": ("PT-MoE, router fitted to the data sets, then trained at 0.1 × the prompt's lr",
                         {**fitted, "router_lr_mult": 0.1}),
        # ... and the router learning at the paper's rate with a loss that keeps each input on the expert
        # the fitted start chose for it (`router_anchor`), so its confidence learns but its split stays.
        "domains-anchor": ("PT-MoE, router fitted to the data sets, then trained, anchored to the fit",
                           {**fitted, "router_anchor": 1.0}),
        # ... and both: the slower router, anchored to the fit.
        "domains-slow-anchor": ("PT-MoE, router fitted to the data sets, then trained at 0.1 × lr, anchored to the fit",
                                {**fitted, "router_lr_mult": 0.1, "router_anchor": 1.0}),
        # Round 4 (the learning routers split or collapsed on fresh seeds): the fixed fitted router, at the
        # confidence the learning routers reached (≈0.85), to test whether the fixed router's lower score
        # came from its prompt scale (0.7) rather than from holding the split.
        "domains-confident": ("PT-MoE, fixed router fitted to the data sets at confidence 0.85",
                              {**fitted, "router_init_confidence": 0.85, "router_lr_mult": 0.0}),
    }


def make_config(name: str, method: dict[str, Any], seed: int, args):
    spec = q.RunSpec(f"{name}-s{seed}", name, "study", method, seed=seed)
    cfg = q.make_config(spec, dataclasses.replace(BUDGET, n_eval=args.n_eval), args.model, args.device,
                        Path(args.data_dir).resolve(), Path(args.out_root))
    # The evaluation is this script's (not the trainer's), so the out-of-domain sets are not part of the
    # run's configuration: --ood later answers them for runs already stored.
    cfg.data.eval = [e for e in cfg.data.eval if "all-ood" not in e]
    return cfg

