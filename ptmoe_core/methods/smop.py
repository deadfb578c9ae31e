"""SMoP — sparse mixture of prompts (Choi et al., 2023): N full soft prompts P_i ∈ R^{T×H} and a router on
the mean input embedding; P = Σ_i w_i P_i (top-1 × its probability by default).

    parameters  N·T·H + N·H (+ N with the router's bias)
    module      prompts.SMoPPrompt
"""

from __future__ import annotations

from typing import Any

from . import routing
from .soft_prompt import EXPERT_PERTURB, OPTIONS, card_lists_all_but, validator
from .spec import MethodSpec


def _count(cfg, shape) -> int:
    N, T, H = cfg.n_experts, cfg.prompt_len, shape.hidden
    return N * T * H + routing.count(cfg, shape)  # prompts N×T×H, router


# SMoP's router as its authors run it (github.com/jyjohnchoi/SMoP, README's training command with
# --perturb_router True, peft_models/tuners/prompt_routing.py): the prompt-level router's logits get
# GaussianNoise(sigma=1), a relative perturbation l + σ²·ε·sg(l), i.e. l·(1 + ε) with ε ~ N(0, 1)
# and the scale detached (our multiplicative noise); the load-balancing loss is on by default
# (scripts/train.py --load_balancing True) at alpha = 0.01, as α·N·Σ_i P̄_i·f_i: Switch's formula,
# the one ptmoe_core/router.py balance_loss computes.
_ROUTER: dict[str, Any] = {"noise_std": 1.0, "noise_type": "multiplicative", "balance_loss": 0.01}

SPEC = MethodSpec(
    name="smop",
    label="SMoP (mixture of prompts)",
    title="SMoP",
    description="sparse mixture of prompts (Choi et al., 2023): N full T×H soft prompts and a router on the mean "
                "input embedding",
    module="SMoPPrompt",
    routed=True,
    options=(*OPTIONS, *routing.OPTIONS, EXPERT_PERTURB),
    count=_count,
    validate=validator(routing.validate),
    paper_shape={"prompt_len": 20, "n_experts": 2},  # 2·20·2048 + 2·2048 = 86,016 ("86k")
    presets={
        # SMoP's linear router has no bias (prompt_routing.py: nn.Linear(..., bias=False), orthogonal
        # init) and its prompts start random unless an init text is given (PromptRoutingInit.RANDOM,
        # the README's command gives none).
        "paper": {**_ROUTER, "router_bias": False, "init": "random"},
        "studio": {**_ROUTER, "init": "text_vocab", "router_norm": True, "router_lr_mult": 10.0},
    },
    card_lists=card_lists_all_but("rank"),
)
