"""Named method presets: ``paper`` (each method as its paper / its authors' public code configures
it) and ``studio`` (what measured best here, the default). A preset is the base a config's explicit
keys are laid over (``MethodConfig.from_dict``), so a run's stored config always holds every
resolved value.

Only the open choices and the router aids differ between presets; the shapes (T, N, R) do not.
``PAPER_SHAPES`` holds the shapes of the PT-MoE paper's comparison (``params --method all`` and
``bench/quality.py`` use them). ``docs/routing.md`` (``python bench/routing.py``) holds the
measurements behind ``studio``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRESETS = ("studio", "paper")
DEFAULT_PRESET = "studio"
# A stored config without a preset key predates presets: its values were the paper's.
LEGACY_PRESET = "paper"

# PT-MoE as the paper describes it; every open detail as PTMOE_METHOD.md's defaults document it,
# router aids off. The base of every method's ``paper`` values.
_PAPER: dict[str, Any] = {
    "noise_std": 0.01,  # multiplicative logit noise while training
    "noise_type": "multiplicative",
    "init": "text",  # the task instruction, repeated to T tokens
    "balance_loss": 0.0,
    "router_bias": True,  # the paper counts N·H + N router parameters
    "router_lr_mult": 1.0,
    "router_norm": False,
    "bias_balance": 0.0,
    "mi_loss": 0.0,
    "router_init": "orthogonal",  # SMoP's; the paper leaves it open
    "router_init_confidence": 0.6,
}

# SMoP's router as its authors run it (github.com/jyjohnchoi/SMoP, README's training command with
# --perturb_router True, peft_models/tuners/prompt_routing.py): the prompt-level router's logits get
# GaussianNoise(sigma=1), a relative perturbation l + σ²·ε·sg(l), i.e. l·(1 + ε) with ε ~ N(0, 1)
# and the scale detached (our multiplicative noise); the load-balancing loss is on by default
# (scripts/train.py --load_balancing True) at alpha = 0.01, as α·N·Σ_i P̄_i·f_i: Switch's formula,
# the one ptmoe_core/router.py balance_loss computes.
_SMOP_ROUTER: dict[str, Any] = {"noise_std": 1.0, "noise_type": "multiplicative", "balance_loss": 0.01}

# Per method, what ``paper`` changes relative to ``_PAPER``: the baselines' own authors' choices.
_PAPER_METHOD: dict[str, dict[str, Any]] = {
    # SMoP's linear router has no bias (prompt_routing.py: nn.Linear(..., bias=False), orthogonal
    # init) and its prompts start random unless an init text is given (PromptRoutingInit.RANDOM,
    # the README's command gives none).
    "smop": {**_SMOP_ROUTER, "router_bias": False, "init": "random"},
    # DPT (github.com/XYaoooo/DPT, modeling_t5.py init_prefix_weights): both factors uniform in
    # (-0.5, 0.5), no SVD.
    "dpt": {"init": "uniform"},
}

# Per method, what ``studio`` changes relative to ``_PAPER`` (bench/routing.py measured these).
_STUDIO: dict[str, dict[str, Any]] = {
    # docs/routing.md: standardising the router input is what keeps both experts in use (the
    # paper's settings collapsed onto one expert in every seed); with the 10× router lr, the
    # full-rank init and the balance loss every seed separated domains (≥ 0.6 bits). Adding the
    # additive noise and the MI term on top did not raise it further, so they stay off.
    "ptmoe": {"init": "text_vocab", "router_norm": True, "router_lr_mult": 10.0, "balance_loss": 0.1},
    "smop": {**_SMOP_ROUTER, "init": "text_vocab", "router_norm": True, "router_lr_mult": 10.0},
    "pt": {"init": "text_vocab"},
    "dpt": {"init": "text_vocab"},
    "lora": {},
}

# Each method's shape in the paper's comparison (LLaMA-3.2-1B, H=2048). The paper's table gives
# counts truncated to thousands: PT 81,920 ("81k"), SMoP 2·20·2048 + 2·2048 = 86,016 ("86k"),
# PT-MoE 80,706 ("80k"), LoRA 106,496 ("106k"). DPT's rank is not stated; R=39 at PT's T=40 is the
# one rank with 40·R + R·2048 in the "81k" bracket (81,432; R=36 gives 75,168, R=40 83,520).
PAPER_SHAPES: dict[str, dict[str, Any]] = {
    "pt": {"prompt_len": 40},
    "dpt": {"prompt_len": 40, "rank": 39},
    "smop": {"prompt_len": 20, "n_experts": 2},
    "ptmoe": {"prompt_len": 40, "n_experts": 2, "rank": 36},
    "lora": {"lora_r": 1, "lora_targets": ("q_proj", "v_proj")},
}


def preset_values(preset: str, method: str) -> dict[str, Any]:
    """The method-config values ``preset`` sets for ``method`` (unknown preset: ValueError)."""
    if preset not in PRESETS:
        raise ValueError(f"{preset!r} is not one of {', '.join(PRESETS)}")
    changes = _PAPER_METHOD if preset == "paper" else _STUDIO
    return {**_PAPER, **changes.get(method, {})}


def paper_method(method: str) -> dict[str, Any]:
    """A method-config dict of ``method`` exactly as the paper's comparison runs it: the ``paper``
    preset at its paper shape (``MethodConfig.from_dict`` resolves it)."""
    if method not in PAPER_SHAPES:
        raise ValueError(f"{method!r} is not one of {', '.join(PAPER_SHAPES)}")
    return {"method": method, "preset": "paper", **PAPER_SHAPES[method]}


def differences(preset: str, method: str, values: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys ``preset`` sets for ``method`` whose value in ``values`` (a method config as a dict) is
    another: name -> (value, the preset's value). Empty when the config is the preset's."""
    return {k: (values[k], v) for k, v in preset_values(preset, method).items() if k in values and values[k] != v}
