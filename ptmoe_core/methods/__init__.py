"""The methods, one module each — ``pt``, ``dpt``, ``smop``, ``ptmoe``, ``lora`` — and one registry.

A method's module holds its whole description as a ``MethodSpec``: its nn.Module class (the modules
themselves live in ``ptmoe_core.prompts``), the settings it uses with their help text, its presets, its
shape in the PT-MoE paper's comparison, its parameter formula, its PEFT mapping and its model-card text.
Settings shared by several methods live in ``soft_prompt`` (T, R, the initialisation) and ``routing``
(the router's). The config, the presets, the parameter counts, the adapter, the PEFT format, the model
card, the CLI, the Train form and the benchmarks take their lists from ``METHODS``.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from . import dpt, lora, pt, ptmoe, routing, smop, soft_prompt
from .spec import UNSET, MethodSpec, Option, PeftMapping

# The Train form and the CLI list the methods in this order.
METHODS: dict[str, MethodSpec] = {s.name: s for s in (ptmoe.SPEC, pt.SPEC, dpt.SPEC, smop.SPEC, lora.SPEC)}
NAMES: tuple[str, ...] = tuple(METHODS)
DEFAULT = ptmoe.SPEC.name
# Every option once, shared ones first.
OPTIONS: dict[str, Option] = {o.name: o for s in METHODS.values() for o in s.options}
# The values of the paper's own method: the base of every method's presets.
PAPER_VALUES: dict[str, Any] = {name: o.paper for name, o in OPTIONS.items() if o.paper is not UNSET}
# Checked for every method (a LoRA config stores an init too).
COMMON_OPTIONS = (soft_prompt.INIT,)
# The Train form's method fields, in the form's order.
FORM_OPTIONS: tuple[Option, ...] = (
    soft_prompt.PROMPT_LEN, routing.N_EXPERTS, soft_prompt.RANK, routing.TOP_K, routing.PROBATIONARY,
    routing.NOISE_STD, routing.BALANCE_LOSS, soft_prompt.INIT, *routing.ADVANCED, lora.LORA_R, lora.LORA_ALPHA,
    lora.LORA_TARGETS,
)


def method_spec(name: str) -> MethodSpec:
    """The method called ``name``; a ConfigError naming it and the known ones otherwise."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ConfigError("method.method", f"{name!r} is not one of {', '.join(NAMES)}") from None


def names(*, routed: bool | None = None, prompt: bool | None = None) -> tuple[str, ...]:
    """The methods' names, optionally only the routed (or unrouted) / soft-prompt (or not) ones."""
    return tuple(n for n, s in METHODS.items()
                 if (routed is None or s.routed == routed) and (prompt is None or s.is_prompt == prompt))


def by_peft_type(peft_type: Any) -> MethodSpec | None:
    """The method PEFT calls ``peft_type`` (PROMPT_TUNING, LORA), if the studio runs it."""
    return next((s for s in METHODS.values() if s.peft and s.peft.peft_type == peft_type), None)


__all__ = ["METHODS", "NAMES", "OPTIONS", "PAPER_VALUES", "MethodSpec", "Option", "PeftMapping", "by_peft_type",
           "method_spec", "names"]
