"""What describes a method: ``Option`` (one setting: its help, its place on the Train form, its paper
value, its rule) and ``MethodSpec`` (everything else the studio needs to know about one method)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..checks import choice
from ..errors import ConfigError

# What a method's functions take: a ``config.MethodConfig`` and a ``params.ModelShape``. Both of those
# modules import this package, so the names are aliases here, not imports (no import loop).
MethodConfig = Any
ModelShape = Any

# Default learning rates: soft prompts need a far larger step than LoRA's weight deltas.
PROMPT_LR = 1e-2
UNSET: Any = object()  # an option without a paper value


@dataclass(frozen=True)
class Range:
    """A float setting's bounds; the message names them: >= lo, [lo, hi] or (lo, hi]."""

    lo: float = 0.0
    hi: float | None = None
    lo_open: bool = False  # lo itself is not allowed

    def __call__(self, name: str, value: float) -> None:
        low_ok = value > self.lo if self.lo_open else value >= self.lo
        if low_ok and (self.hi is None or value <= self.hi):
            return
        if self.hi is None:
            raise ConfigError(name, f"must be {'>' if self.lo_open else '>='} {self.lo:g}, got {value}")
        raise ConfigError(name, f"must be in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}], got {value}")


@dataclass(frozen=True)
class Choice:
    allowed: tuple[str, ...]

    def __call__(self, name: str, value: Any) -> None:
        choice(name, value, self.allowed)


@dataclass(frozen=True)
class Option:
    """One method setting (a ``MethodConfig`` field of the same name)."""

    name: str
    help: str  # the Train form's help text
    kind: str | None = None  # the Train form's kind (int | float | str | bool | list); None: not on the form
    paper: Any = UNSET  # its value in the ``paper`` preset of every method, unless the method's own presets say
    check: Callable[[str, Any], None] | None = None  # raises ConfigError for a bad value
    label: str = ""  # the form's label (options laid out from the registry: the advanced routing ones)
    choices: tuple[str, ...] = ()  # the values the form offers (a dropdown, or a list option's checkboxes)
    row: int = 0  # the row of its section on the form
    elem_id: str | None = None  # the form widget's HTML id (browser tests address it)

    def validate(self, cfg: MethodConfig) -> None:
        if self.check is not None:
            self.check(f"method.{self.name}", getattr(cfg, self.name))


@dataclass(frozen=True)
class PeftMapping:
    """How a method maps onto PEFT's own adapter format."""

    peft_type: str  # PEFT's name: PROMPT_TUNING, LORA
    agree: tuple[tuple[str, str], ...]  # (studio setting, PEFT key) that must hold the same value


@dataclass(frozen=True)
class MethodSpec:
    """One method: what the config, the presets, the parameter count, the adapter, the PEFT format, the
    model card, the CLI and the Train form know about it."""

    name: str  # as stored in configs (method.method)
    label: str  # the Train form's choice
    title: str  # the model card's short name
    description: str  # the model card's sentence (a paper reference and the shapes)
    options: tuple[Option, ...]  # the settings it uses
    count: Callable[[MethodConfig, ModelShape], int]  # trainable parameters (the paper's formula)
    validate: Callable[[MethodConfig], None]  # its own rules (the common ones are MethodConfig's)
    paper_shape: Mapping[str, Any]  # its shape in the PT-MoE paper's comparison
    # Per preset, what it changes relative to the paper values of the options (``presets.preset_values``).
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    module: str | None = None  # its nn.Module: a class name in ``prompts.MODULES``; None: PEFT builds it (LoRA)
    routed: bool = False
    peft: PeftMapping | None = None
    lr: float = PROMPT_LR  # the default learning rate
    card_lists: Callable[[str], bool] = bool  # whether its model card lists a stored setting (by name)
    card_note: str = ""  # a last line of the card's PEFT loading section

    @property
    def is_prompt(self) -> bool:
        return self.module is not None

    def uses(self, setting: str) -> bool:
        """Whether it has the setting called ``setting`` (e.g. "rank")."""
        return any(o.name == setting for o in self.options)

    @property
    def form_fields(self) -> frozenset[str]:
        """The Train form fields it shows."""
        return frozenset(o.name for o in self.options if o.kind is not None)
