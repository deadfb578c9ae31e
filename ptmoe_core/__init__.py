"""PT-MoE engine: prompt tuning with a mixture of decomposed experts on a frozen causal LM.

No UI or database code lives here; the app and storage layers build on these modules.

The public API (``ptmoe_core.api``, re-exported here and imported on first use, so a plain
``import ptmoe_core`` stays light):

    load(source, *, base=None, device="auto", revision=None)
        an adapter from a folder (PT-MoE, PT, DPT, SMoP or LoRA; studio or PEFT format) or a
        Hugging Face Hub repo id (online, or from the local Hub cache; a clear error otherwise)
    answer(adapter, inputs, *, context="", answer_type="text", force_expert=None, max_new_tokens=32)
        greedy answers, each with the chosen expert and the router's probabilities
    answer_all_experts(adapter, inputs, ...)
        (routed, forced): the routed answer and each expert's answer as if the router had chosen
        it, in one batched generation (what Inspect's forced columns show)
    evaluate_on(adapter, specs, *, split="test", max_examples=None)
        scores per data set, macro average and expert load, from data spec strings
    save(adapter, directory)
        the current format: a PEFT adapter folder for PT and LoRA, and a model card (README.md)

Example (the README's "Python API" section runs in the tests)::

    import ptmoe_core
    adapter = ptmoe_core.load("runs/ptmoe-builtin/adapter")
    for g in ptmoe_core.answer(adapter, ["How many grams is 3 kilograms?"], answer_type="number"):
        print(g.text, g.expert, g.probs)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["answer", "answer_all_experts", "evaluate_on", "load", "save"]


def __getattr__(name: str) -> Any:
    if name in __all__:  # torch and transformers load only when the API is first used
        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
