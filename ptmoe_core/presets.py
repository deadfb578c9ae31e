"""Named method presets: ``paper`` (each method as its paper / its authors' public code configures
it), ``studio`` (what scored best here, the default) and ``routed`` (a router that specialises by data
set in every seed, at a cost in score: docs/routing_study.md). A preset is the base a config's explicit
keys are laid over (``MethodConfig.from_dict``), so a run's stored config always holds every
resolved value.

A preset's values for a method are the paper's values of every option (``methods.PAPER_VALUES``: PT-MoE
as the paper describes it, every open detail as PTMOE_METHOD.md's defaults document it, router aids
off) with the method's own changes for that preset laid over them (``MethodSpec.presets``, in the
method's module). Only the open choices and the router aids differ between presets; the shapes (T, N,
R) do not. ``PAPER_SHAPES`` (each ``MethodSpec.paper_shape``) holds the shapes of the PT-MoE paper's comparison (``params
--method all`` and ``bench/quality.py`` use them). ``docs/routing.md`` (``python -m bench.routing``)
holds the measurements behind ``studio``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .methods import METHODS, PAPER_VALUES

PRESETS = ("studio", "paper", "routed")
DEFAULT_PRESET = "studio"
# A stored config without a preset key predates presets: its values were the paper's.
LEGACY_PRESET = "paper"
# Each method's shape in the paper's comparison (LLaMA-3.2-1B, H=2048), by method.
PAPER_SHAPES: dict[str, Mapping[str, Any]] = {name: spec.paper_shape for name, spec in METHODS.items()}


def preset_values(preset: str, method: str) -> dict[str, Any]:
    """The method-config values ``preset`` sets for ``method`` (unknown preset: ValueError)."""
    if preset not in PRESETS:
        raise ValueError(f"{preset!r} is not one of {', '.join(PRESETS)}")
    spec = METHODS.get(method)
    if spec is None:
        return dict(PAPER_VALUES)
    # `routed` is about the router: a method without values of its own for it takes its default preset's.
    own = spec.presets.get(preset, spec.presets.get(DEFAULT_PRESET, {}) if preset == "routed" else {})
    return {**PAPER_VALUES, **own}


def paper_method(method: str) -> dict[str, Any]:
    """A method-config dict of ``method`` exactly as the paper's comparison runs it: the ``paper``
    preset at its paper shape (``MethodConfig.from_dict`` resolves it)."""
    if method not in PAPER_SHAPES:
        raise ValueError(f"{method!r} is not one of {', '.join(PAPER_SHAPES)}")
    return {"method": method, "preset": "paper", **PAPER_SHAPES[method]}


def differences(preset: str, method: str, values: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys ``preset`` sets for ``method`` whose value in ``values`` (a method config as a dict) is
    another, in ``values``' order: name -> (value, the preset's value). Empty when the config is the preset's."""
    preset_has = preset_values(preset, method)
    return {k: (v, preset_has[k]) for k, v in values.items() if k in preset_has and v != preset_has[k]}
