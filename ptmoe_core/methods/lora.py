"""LoRA — low-rank adaptation (Hu et al., 2021): rank-r updates ΔW = B·A (A ∈ R^{r×in}, B ∈ R^{out×r}) of
the target projections, built and saved by PEFT.

    parameters  Σ_layers Σ_targets r·(in + out)
    module      PEFT's (``peft_format.lora_config``)
    PEFT        LORA
"""

from __future__ import annotations

from ..checks import between
from ..errors import ConfigError
from .spec import MethodSpec, Option, PeftMapping

MAX_LORA_R = 4096
LR = 2e-3  # weight deltas need a far smaller step than soft prompts

LORA_R = Option("lora_r", "LoRA rank r.", "int")
LORA_ALPHA = Option("lora_alpha", "LoRA scaling α (effective scale α / r).", "float")
LORA_DROPOUT = Option("lora_dropout", "Dropout on LoRA's input while training.")
LORA_TARGETS = Option("lora_targets", "Linear layers that get LoRA deltas.", "list",
                      choices=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
OPTIONS = (LORA_R, LORA_ALPHA, LORA_DROPOUT, LORA_TARGETS)
NAMES = frozenset(o.name for o in OPTIONS)


def _validate(cfg) -> None:
    between("method.lora_r", cfg.lora_r, 1, MAX_LORA_R)
    if cfg.lora_alpha <= 0:
        raise ConfigError("method.lora_alpha", f"must be > 0, got {cfg.lora_alpha}")
    if not 0 <= cfg.lora_dropout < 1:
        raise ConfigError("method.lora_dropout", f"must be in [0, 1), got {cfg.lora_dropout}")
    if not cfg.lora_targets:
        raise ConfigError("method.lora_targets", "name at least one module (e.g. q_proj)")


def _count(cfg, shape) -> int:
    return shape.layers * sum(cfg.lora_r * sum(shape.linear_dims(t)) for t in cfg.lora_targets)


SPEC = MethodSpec(
    name="lora",
    label="LoRA",
    title="LoRA",
    description="low-rank adaptation (Hu et al., 2021): rank-r updates of the target projections",
    options=OPTIONS,
    count=_count,
    validate=_validate,
    paper_shape={"lora_r": 1, "lora_targets": ("q_proj", "v_proj")},  # 106,496 ("106k")
    peft=PeftMapping("LORA", (("lora_r", "r"), ("lora_alpha", "lora_alpha"), ("lora_dropout", "lora_dropout"),
                              ("lora_targets", "target_modules"))),
    lr=LR,
    card_lists=NAMES.__contains__,
)
