"""PT — prompt tuning (Lester et al., 2021): one soft prompt P ∈ R^{T×H} shared by every input.

    parameters  T·H
    module      prompts.PromptTuning
    PEFT        PROMPT_TUNING (its ``prompt_embeddings`` tensor is PEFT's own key)
"""

from __future__ import annotations

from .routing import UNROUTED_HIDDEN
from .soft_prompt import OPTIONS, card_lists_all_but, validator
from .spec import MethodSpec, PeftMapping

SPEC = MethodSpec(
    name="pt",
    label="PT (prompt tuning)",
    title="PT",
    description="prompt tuning (Lester et al., 2021): one T×H soft prompt prepended to every input",
    module="PromptTuning",
    options=OPTIONS,
    count=lambda cfg, shape: cfg.prompt_len * shape.hidden,  # T·H
    validate=validator(),
    paper_shape={"prompt_len": 40},
    presets={"studio": {"init": "text_vocab"}},
    peft=PeftMapping("PROMPT_TUNING", (("prompt_len", "num_virtual_tokens"),)),
    card_lists=card_lists_all_but(*UNROUTED_HIDDEN, "rank"),
    card_note="PEFT's prompt tuning numbers positions over prompt and input together, as the studio does for "
              "unpadded or right-padded inputs; pad on the right when batching.",
)
