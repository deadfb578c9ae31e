"""DPT — decomposed prompt tuning (Xiao et al., 2023): one soft prompt P = A·B, A ∈ R^{T×R}, B ∈ R^{R×H},
no router.

    parameters  T·R + R·H
    module      prompts.DecomposedPrompt
"""

from __future__ import annotations

from .routing import UNROUTED_HIDDEN
from .soft_prompt import OPTIONS, RANK, card_lists_all_but, check_rank, validator
from .spec import MethodSpec


def _count(cfg, shape) -> int:
    T, R, H = cfg.prompt_len, cfg.rank, shape.hidden
    return T * R + R * H  # A T×R, B R×H


SPEC = MethodSpec(
    name="dpt",
    label="DPT (decomposed PT)",
    title="DPT",
    description="decomposed prompt tuning (Xiao et al., 2023): one soft prompt P = A·B, A T×R, B R×H",
    module="DecomposedPrompt",
    options=(*OPTIONS, RANK),
    count=_count,
    validate=validator(check_rank),
    # The rank is not stated; R=39 at PT's T=40 is the one rank with 40·R + R·2048 in the paper's "81k"
    # bracket (81,432; R=36 gives 75,168, R=40 83,520).
    paper_shape={"prompt_len": 40, "rank": 39},
    presets={
        # DPT (github.com/XYaoooo/DPT, modeling_t5.py init_prefix_weights): both factors uniform in
        # (-0.5, 0.5), no SVD.
        "paper": {"init": "uniform"},
        "studio": {"init": "text_vocab"},
    },
    card_lists=card_lists_all_but(*UNROUTED_HIDDEN),
)
