"""Typed run configuration: model, method, data and training, with validation.

A ``RunConfig`` round-trips through plain dicts (JSON / YAML), so the CLI, the app and the job
runner all describe a run the same way, and every run's stored config records each open choice
of the method (see docs: PTMOE_METHOD.md, "open" details).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .checks import at_least as _at_least
from .checks import between as _between
from .checks import choice as _choice
from .errors import ConfigError
from .methods import COMMON_OPTIONS, DEFAULT, METHODS, method_spec
from .methods.routing import DOMAINS, ORTHOGONAL
from .methods.spec import PROMPT_LR
from .metrics import NUMBER_MATCHES
from .presets import DEFAULT_PRESET, LEGACY_PRESET, PRESETS, preset_values

SCHEDULES = ("linear", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")

# Upper bounds checked before anything is allocated or run (a typo of 1e300 steps must not train forever).
MAX_STEPS = 1_000_000
MAX_BATCH = 4096
MAX_TOKENS = 32_768  # source, answer and generated tokens
MAX_CONFIG_BYTES = 1024 * 1024  # a configuration file is a few hundred bytes

# Default learning rates (each method's ``MethodSpec.lr``): soft prompts need a far larger step than
# LoRA's weight deltas.
DEFAULT_LR = {name: spec.lr for name, spec in METHODS.items() if spec.lr != PROMPT_LR}
DEFAULT_PROMPT_LR = PROMPT_LR


@dataclass
class ModelConfig:
    """Which frozen base model, where, and in what precision."""

    name: str = "smollm2-135m"  # "smollm2-135m", "tiny-random", a Hub id or a local directory
    device: str = "auto"  # auto = cuda, then mps, then cpu
    dtype: str = "auto"  # auto = bfloat16 on CUDA, float32 elsewhere
    trust_remote_code: bool = False

    def validate(self) -> None:
        if not self.name or not str(self.name).strip():
            raise ConfigError("model.name", "must name a model (e.g. smollm2-135m)")
        _choice("model.device", self.device, DEVICES)
        _choice("model.dtype", self.dtype, DTYPES)


@dataclass
class MethodConfig:
    """The adapter: which method and its hyperparameters (names as in the PT-MoE paper)."""

    method: str = DEFAULT  # a name in methods.METHODS
    # The base that from_dict lays explicit keys over (ptmoe_core/presets.py); the field values
    # below are the default preset's for PT-MoE.
    preset: str = DEFAULT_PRESET
    prompt_len: int = 40  # T
    n_experts: int = 2  # N (ptmoe, smop)
    rank: int = 36  # R (ptmoe, dpt), R <= T
    top_k: int = 1  # 1 = selective; 0 or N = soft mix of all experts
    probationary: bool = True  # scale the chosen prompt by its router probability
    # Forward weight exactly 1 (1/k), gradient through p. None: on exactly when probationary is
    # off, since non-probationary weights alone give the router no gradient (it would stay as
    # initialised); false with probationary off is allowed and leaves the router untrained.
    straight_through: bool | None = None
    noise_std: float = 0.01  # sigma of the router-logit noise, training only
    noise_type: str = "multiplicative"  # l·(1+σε), scale detached (PT-MoE's paper, SMoP) or l+σε
    init: str = "text"  # see methods.soft_prompt.PROMPT_INITS
    init_text: str | None = None  # default: the task instruction, else a vocabulary sample
    expert_perturb: float = 0.01  # relative std of per-expert noise on A_i so experts can diverge
    router_bias: bool = True  # counted in the paper's N*H + N router parameters
    balance_loss: float = 0.0  # Switch-style load-balancing loss weight; 0 = the paper's method
    # Router aids (not in the paper; all off in the `paper` preset):
    router_lr_mult: float = 0.1  # the router's learning rate = this × the prompt's; 0 keeps it as initialised
    router_norm: bool = True  # standardise the router input with the training inputs' mean/std
    bias_balance: float = 0.0  # step of a per-expert selection bias nudged toward equal load
    mi_loss: float = 0.0  # weight of −I(input; expert) = −(H(mean p) − mean H(p)) in the loss
    router_init: str = DOMAINS  # see methods.routing.ROUTER_INITS
    router_init_confidence: float = 0.7  # mean probability of each input's own group after a fitted init
    router_anchor: float = 0.0  # weight of a loss keeping each input on the fitted router's choice for it
    lora_r: int = 1
    lora_alpha: float = 2.0
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def __post_init__(self) -> None:
        if self.straight_through is None:
            self.straight_through = not self.probationary

    @property
    def is_prompt(self) -> bool:
        return self.method in METHODS and METHODS[self.method].is_prompt

    @property
    def is_routed(self) -> bool:
        return self.method in METHODS and METHODS[self.method].routed

    @classmethod
    def from_dict(cls, d: dict[str, Any], prefix: str = "method.") -> MethodConfig:
        """``d``'s keys laid over its preset's values for its method. Without a preset key: the
        default preset, except for a complete config stored before presets existed, whose
        missing router aids then stay off (the paper's values), so it trains and routes as before."""
        if not isinstance(d, dict):
            raise ConfigError(prefix.rstrip("."), f"expected a mapping, got {d!r}")
        legacy = "preset" not in d and _PRE_PRESET_KEYS <= d.keys()
        preset = d.get("preset", LEGACY_PRESET if legacy else DEFAULT_PRESET)
        _choice(prefix + "preset", preset, PRESETS)
        method = d.get("method", cls.method)
        base = preset_values(preset, method) if method in METHODS else {}
        # A config stored whole before a key existed gets what the code did then, not today's preset value.
        before = {k: v for keys, added in _ADDED_LATER if keys <= d.keys() for k, v in added.items() if k not in d}
        return _build(cls, {**base, **before, **d, "preset": preset}, prefix)

    @classmethod
    def for_preset(cls, method: str = DEFAULT, preset: str = DEFAULT_PRESET, **overrides: Any) -> MethodConfig:
        """A config of ``method`` with ``preset``'s values, then ``overrides``."""
        return cls.from_dict({"method": method, "preset": preset, **overrides})

    def validate(self) -> None:
        _check_finite(self, "method")
        spec = method_spec(self.method)
        _choice("method.preset", self.preset, PRESETS)
        for option in COMMON_OPTIONS:
            option.validate(self)
        spec.validate(self)  # the method's own rules (its module in ptmoe_core/methods/)


# Every key a stored method config had before presets (asdict of the old MethodConfig).
_PRE_PRESET_KEYS = frozenset({
    "method", "prompt_len", "n_experts", "rank", "top_k", "probationary", "straight_through", "noise_std",
    "init", "init_text", "expert_perturb", "router_bias", "balance_loss", "lora_r", "lora_alpha",
    "lora_dropout", "lora_targets",
})
# (every key a stored config had when these were added, {added key: the behaviour before it}).
_WITH_PRESETS = _PRE_PRESET_KEYS | {"preset", "noise_type", "router_lr_mult", "router_norm", "bias_balance", "mi_loss"}
_WITH_ROUTER_INIT = _WITH_PRESETS | {"router_init", "router_init_confidence"}
_ADDED_LATER = (
    (_WITH_PRESETS, {"router_init": ORTHOGONAL, "router_init_confidence": 0.6}),
    (_WITH_ROUTER_INIT, {"router_anchor": 0.0}),
)


def without_later_defaults(method: dict[str, Any]) -> dict[str, Any]:
    """``method`` (a method config as a dict) less each group of later-added keys that is still at
    the behaviour before it: the same run as a config stored before those keys existed, so a hash of
    it (a benchmark's cache key) stays the same when a new option is added at its neutral value."""
    out = dict(method)
    for _, added in _ADDED_LATER:
        if all(k in out and out[k] == v for k, v in added.items()):
            for k in added:
                del out[k]
    return out


@dataclass
class DataConfig:
    """Where examples come from (data spec strings) and how long they may be."""

    train: list[str] = field(default_factory=lambda: ["builtin:all"])
    eval: list[str] = field(default_factory=list)  # empty: the validation split of the train specs
    max_train_examples: int | None = None
    max_eval_examples: int = 64
    max_source_tokens: int = 256  # instruction + context + question, after the chat template
    max_answer_tokens: int = 32
    instruction: str | None = None  # None: each source's own default instruction
    seed: int = 0
    # How a number answer is matched (metrics.NUMBER_MATCHES): lenient = the final number's value;
    # flexible / strict = lm-evaluation-harness's GSM8K flexible-extract / strict-match.
    number_match: str = "lenient"

    def validate(self) -> None:
        if not self.train:
            raise ConfigError("data.train", "give at least one data spec (e.g. builtin:all)")
        for i, s in enumerate([*self.train, *self.eval]):
            if not isinstance(s, str) or ":" not in s:
                raise ConfigError("data", f"spec #{i + 1} {s!r} is not of the form PREFIX:ARG (e.g. gsm8k:PATH)")
        _choice("data.number_match", self.number_match, NUMBER_MATCHES)
        _between("data.max_source_tokens", self.max_source_tokens, 16, MAX_TOKENS)
        _between("data.max_answer_tokens", self.max_answer_tokens, 1, MAX_TOKENS)
        _at_least("data.max_eval_examples", self.max_eval_examples, 1)
        if self.max_train_examples is not None:
            _at_least("data.max_train_examples", self.max_train_examples, 1)


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping."""

    steps: int = 200  # optimizer steps
    batch_size: int = 8
    grad_accum: int = 1
    lr: float | None = None  # None: 1e-2 for prompt methods, 2e-3 for LoRA
    weight_decay: float = 0.0
    warmup_steps: int = 10
    schedule: str = "linear"
    max_grad_norm: float = 1.0
    seed: int = 0
    eval_every: int = 0  # 0: only at the end
    save_every: int = 0  # 0: only at the end
    max_new_tokens: int = 32
    eval_batch_size: int = 16
    report_to: list[str] = field(default_factory=list)  # experiment trackers (ptmoe_core.trackers); none by default

    def resolved_lr(self, method: str) -> float:
        if self.lr is not None:
            return self.lr
        return DEFAULT_LR.get(method, DEFAULT_PROMPT_LR)

    def validate(self) -> None:
        _between("train.steps", self.steps, 1, MAX_STEPS)
        _between("train.batch_size", self.batch_size, 1, MAX_BATCH)
        _between("train.grad_accum", self.grad_accum, 1, MAX_BATCH)
        _between("train.eval_batch_size", self.eval_batch_size, 1, MAX_BATCH)
        _between("train.max_new_tokens", self.max_new_tokens, 1, MAX_TOKENS)
        if self.lr is not None and not 0 < self.lr <= 10:
            raise ConfigError("train.lr", f"learning rate must be in (0, 10], got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError("train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ConfigError(
                "train.warmup_steps", f"must be between 0 and steps={self.steps}, got {self.warmup_steps}"
            )
        _choice("train.schedule", self.schedule, SCHEDULES)
        if self.max_grad_norm <= 0:
            raise ConfigError("train.max_grad_norm", f"must be > 0, got {self.max_grad_norm}")
        for name in ("eval_every", "save_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}", "must be >= 0 (0 = only at the end)")
        from .trackers import TRACKERS

        for t in self.report_to:
            _choice("train.report_to", t, tuple(TRACKERS))
        if len(set(self.report_to)) != len(self.report_to):
            raise ConfigError("train.report_to", f"names a tracker twice: {self.report_to}")


@dataclass
class RunConfig:
    """Everything that defines one training run."""

    name: str = "run"
    output_dir: str = "runs/run"
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        _check_finite(self, "")
        if not self.output_dir:
            raise ConfigError("output_dir", "must be a directory path")
        self.model.validate()
        self.method.validate()
        self.data.validate()
        self.train.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        if not isinstance(d, dict):
            raise ConfigError("config", f"expected a mapping, got {type(d).__name__}")
        return _build(cls, d, "")

    @classmethod
    def from_overrides(cls, d: Mapping[str, Any], sets: Sequence[str]) -> RunConfig:
        """``d``'s keys with the ``KEY=VALUE`` items ``sets`` (``apply_overrides``), validated."""
        return cls.from_dict(apply_overrides(d, sets)).validate()

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        """A YAML or JSON file; every problem (a folder, a huge file, YAML aliases, malformed or empty
        content) is one ``ConfigError`` line."""
        return cls.from_dict(read_config_file(path))


# ---- dotted keys: ``train.steps=50`` ----------------------------------------------------------------


def config_keys() -> list[str]:
    """Every dotted key of a ``RunConfig``'s leaves (``name``, ``train.steps``, ``method.n_experts``)."""
    return _leaves(RunConfig().to_dict())


def unknown_key_hint(key: str, known: Sequence[str]) -> str:
    """What to say after "unknown configuration key": the closest known keys, or what keys look like."""
    close = difflib.get_close_matches(key, known, n=3)
    return f"; did you mean {', '.join(close)}?" if close else " (keys look like method.n_experts, train.lr)"


def set_key(d: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` of the nested dict ``d`` to ``value``, making the sections it lacks."""
    parts = key.split(".")
    node = d
    for i, p in enumerate(parts[:-1]):
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(".".join(parts[: i + 1]), f"expected a mapping, got {node!r}")
    node[parts[-1]] = value


def apply_overrides(d: Mapping[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    """A copy of ``d`` (a config's keys as written: a file's, a stored run's) with ``KEY=VALUE`` items set,
    as the CLI's ``--set train.steps=50`` and a copied run's changes: a dotted key names a nested field
    (or a whole section), a value is parsed as JSON when it parses (``50``, ``true``, ``["q_proj"]``),
    else kept as text. ``ConfigError`` (one line) for an item without ``=`` and for a key ``RunConfig``
    does not have (naming the closest ones); a value of the wrong type is refused by
    ``RunConfig.from_dict`` naming its field, as in a file."""
    out = copy.deepcopy(dict(d))
    leaves = config_keys()
    known = {*leaves, *(k.rsplit(".", i)[0] for k in leaves for i in range(1, k.count(".") + 1))}
    for item in sets:
        if "=" not in item:
            raise ConfigError("--set", f"expected KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in known:
            raise ConfigError(key or "--set", f"unknown configuration key{unknown_key_hint(key, leaves)}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        set_key(out, key, value)
    return out


def _leaves(d: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out += _leaves(v, f"{prefix}{k}.") if isinstance(v, Mapping) else [f"{prefix}{k}"]
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML / JSON config file's keys as written, not yet laid over a preset (so a caller can still
    change ``method.preset`` and have the preset fill every key the file leaves out)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError("config", f"{p} is a folder; give the YAML or JSON file inside it")
    if not p.is_file():
        raise ConfigError("config", f"file not found: {p}")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError("config", f"{p} is {p.stat().st_size:,} bytes, too large for a configuration "
                                    f"(at most {MAX_CONFIG_BYTES:,})")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("config", f"cannot read {p}: {str(e).splitlines()[0]}") from e
    yaml_file = p.suffix.lower() in (".yaml", ".yml")
    d = _parse_yaml(text, p) if yaml_file else _parse_json(text, p)
    if d is None or d == {}:
        raise ConfigError("config", f"{p} is empty; write at least the settings that differ from the "
                                    "defaults (e.g. train: {steps: 50})")
    return d


def _parse_json(text: str, p: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError("config", f"{p}, line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise ConfigError("config", f"{p}: JSON nested too deeply") from None


def _parse_yaml(text: str, p: Path) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_no_alias_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("config", f"{p}{where}: not valid YAML ({e.problem or e.context})") from None
    except yaml.YAMLError as e:
        raise ConfigError("config", f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError("config", f"{p}: YAML nested too deeply") from None


@functools.cache
def _no_alias_loader() -> type:
    """yaml's SafeLoader refusing aliases: a few hundred bytes of nested aliases expand to gigabytes,
    and a run configuration has no use for them."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a configuration",
                                                  event.start_mark)
            return super().compose_node(parent, index)

    return NoAliasLoader


def _build(cls: type, d: dict[str, Any], prefix: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        where = prefix.rstrip(".") or "config"
        raise ConfigError(where, f"unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in d.items():
        f = known[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(default, MethodConfig):
            kwargs[name] = MethodConfig.from_dict(value, f"{prefix}{name}.")
        elif dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(prefix + name, f"expected a mapping, got {value!r}")
            kwargs[name] = _build(type(default), value, f"{prefix}{name}.")
        else:
            if default is None and value is not None:
                # Optional fields: coerce to the type named in the annotation ("float | None").
                default = {"float": 0.0, "int": 0, "str": "", "bool": False}.get(str(f.type).split("|")[0].strip())
            kwargs[name] = _coerce(prefix + name, value, default)
    return cls(**kwargs)


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Accept the types a JSON/YAML/UI value can have for a field, reject the rest clearly."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(name, f"expected true/false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(name, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(name, f"expected an integer, got {value!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(name, f"expected a finite integer, got {value!r}")
        return int(f)
    if isinstance(default, float):
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(name, f"expected a number, got {value!r}") from None
        if not math.isfinite(f):
            raise ConfigError(name, f"expected a finite number, got {value!r}")
        return f
    if isinstance(default, list):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(name, f"expected a list, got {value!r}")
        return list(value)
    if isinstance(default, str):
        return str(value)
    return value


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _check_finite(cfg: Any, prefix: str) -> None:
    """Every float field of a config dataclass (nested ones too) is a finite number: NaN passes every
    ``<`` / ``>`` check silently. Every integer (lists' items too) fits in 64 bits: a larger one passes
    the range checks written for sensible values and fails later in torch, JSON or the database."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        name = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            _check_finite(value, name)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(name, f"must be a finite number, got {value}")
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
                raise ConfigError(name, f"must fit in a 64-bit integer, got one of {item.bit_length()} bits")
