"""Named method presets: ``paper`` (PT-MoE exactly as the paper describes it) and ``studio`` (what
measured best here, the default). A preset is the base a config's explicit keys are laid over
(``MethodConfig.from_dict``), so a run's stored config always holds every resolved value.

Only the open choices and the router aids differ between presets; the shapes (T, N, R) do not.
``docs/routing.md`` (``python bench/routing.py``) holds the measurements behind ``studio``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRESETS = ("studio", "paper")
DEFAULT_PRESET = "studio"
# A stored config without a preset key predates presets: its values were the paper's.
LEGACY_PRESET = "paper"

# The paper's method; every open detail as PTMOE_METHOD.md's defaults document it, router aids off.
_PAPER: dict[str, Any] = {
    "noise_std": 0.01,  # multiplicative logit noise while training
    "noise_type": "multiplicative",
    "init": "text",  # the task instruction, repeated to T tokens
    "balance_loss": 0.0,
    "router_lr_mult": 1.0,
    "router_norm": False,
    "bias_balance": 0.0,
    "mi_loss": 0.0,
}

# Per method, what ``studio`` changes relative to ``paper`` (bench/routing.py measured these).
_STUDIO: dict[str, dict[str, Any]] = {
    "ptmoe": {"init": "text_vocab", "router_norm": True, "router_lr_mult": 10.0},
    "smop": {"init": "text_vocab", "router_norm": True, "router_lr_mult": 10.0},
    "pt": {"init": "text_vocab"},
    "dpt": {"init": "text_vocab"},
    "lora": {},
}


def preset_values(preset: str, method: str) -> dict[str, Any]:
    """The method-config values ``preset`` sets for ``method`` (unknown preset: ValueError)."""
    if preset not in PRESETS:
        raise ValueError(f"{preset!r} is not one of {', '.join(PRESETS)}")
    values = dict(_PAPER)
    if preset == "studio":
        values.update(_STUDIO.get(method, {}))
    return values


def differences(preset: str, method: str, values: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys ``preset`` sets for ``method`` whose value in ``values`` (a method config as a dict) is
    another: name -> (value, the preset's value). Empty when the config is the preset's."""
    return {k: (values[k], v) for k, v in preset_values(preset, method).items() if k in values and values[k] != v}
