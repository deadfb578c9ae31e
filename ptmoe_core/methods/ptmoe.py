"""PT-MoE — prompt tuning with a mixture of decomposed experts (arXiv 2505.09519): expert i's prompt is
A_i·B with A_i ∈ R^{T×R} and a shared B ∈ R^{R×H}; a router on the mean input embedding weights the A_i,
P = (Σ_i w_i A_i)·B ∈ R^{T×H}.

    parameters  N·T·R + R·H + N·H (+ N with the router's bias)
    module      prompts.PTMoEPrompt
"""

from __future__ import annotations

from . import routing
from .soft_prompt import EXPERT_PERTURB, OPTIONS, RANK, card_lists_all_but, check_rank, validator
from .spec import MethodSpec


def _count(cfg, shape) -> int:
    N, T, R, H = cfg.n_experts, cfg.prompt_len, cfg.rank, shape.hidden
    return N * T * R + R * H + routing.count(cfg, shape)  # A N×T×R, B R×H, router


SPEC = MethodSpec(
    name="ptmoe",
    label="PT-MoE",
    title="PT-MoE",
    description="prompt tuning with a mixture of decomposed experts (arXiv 2505.09519): expert i's prompt is A_i·B "
                "(A_i T×R, shared B R×H); a router on the mean input embedding weights the A_i, and the resulting "
                "T×H soft prompt is prepended to the input",
    module="PTMoEPrompt",
    routed=True,
    options=(*OPTIONS, RANK, *routing.OPTIONS, EXPERT_PERTURB),
    count=_count,
    validate=validator(check_rank, routing.validate),
    paper_shape={"prompt_len": 40, "n_experts": 2, "rank": 36},  # 80,706 ("80k")
    presets={
        # The paper's values are the options' own (soft_prompt, routing): no changes.
        # docs/routing_study.md (issue 22; 559 questions, paired over seeds and questions; 5 seeds, the last two
        # seen by no choice): the paper's settings with a router standardised and fitted to the training data
        # sets before training (k-means on the inputs for one data set), which then learns at a tenth of the
        # prompt's rate. It scored best (above the paper's and PT's) but routes by data set in 3 seeds of 5
        # (one collapsed, one split a data set 62/38); no setting met every target, so score decides.
        "studio": {"router_norm": True, "router_init": routing.DOMAINS, "router_init_confidence": 0.7,
                   "router_lr_mult": 0.1},
        # The best-scoring setting that routes by data set in every seed: the same fitted router at confidence
        # 0.85, held fixed. It scored like the paper's on in-domain macro and 1.8 QA F1 points below it.
        "routed": {"router_norm": True, "router_init": routing.DOMAINS, "router_init_confidence": 0.85,
                   "router_lr_mult": 0.0},
    },
    card_lists=card_lists_all_but(),
)
