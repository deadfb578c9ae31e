"""The Train form <-> ``RunConfig``: one ordered list of fields, the conversions both ways, checks
that name the field at fault, the trainable-parameter counts and the equivalent CLI command.

Pure functions of the form values (plus a model-shape lookup that the caller caches)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import Any

from ptmoe_core import methods
from ptmoe_core.config import DEFAULT_LR, DEFAULT_PROMPT_LR, RunConfig
from ptmoe_core.errors import ConfigError
from ptmoe_core.methods import lora, routing
from ptmoe_core.params import LLAMA_32_1B, ModelShape, count_params
from ptmoe_core.presets import DEFAULT_PRESET, PRESETS, differences, preset_values

from .escaping import esc
from .limits import DEMO_LIMITS, Limits, limit_errors

METHOD_LABELS = {name: spec.label for name, spec in methods.METHODS.items()}
LORA_TARGETS = list(lora.LORA_TARGETS.choices)
EMBEDDED_MODELS = ("smollm2-135m", "tiny-random")


@dataclass(frozen=True)
class Field:
    key: str  # the form's name for it (also the gradio_client parameter order)
    path: str  # where it lives in RunConfig ("train.steps")
    kind: str  # int | float | str | bool | list | opt_int | opt_float


# The Train form, in the order the handlers receive the values.
FIELDS: tuple[Field, ...] = (
    Field("name", "name", "str"),
    Field("model", "model.name", "str"),
    Field("device", "model.device", "str"),
    Field("train_specs", "data.train", "list"),
    Field("eval_specs", "data.eval", "list"),
    Field("max_train_examples", "data.max_train_examples", "opt_int"),
    Field("max_eval_examples", "data.max_eval_examples", "int"),
    Field("max_source_tokens", "data.max_source_tokens", "int"),
    Field("max_answer_tokens", "data.max_answer_tokens", "int"),
    Field("method", "method.method", "str"),
    Field("preset", "method.preset", "str"),
    *(Field(o.name, f"method.{o.name}", o.kind) for o in methods.FORM_OPTIONS),  # the methods' settings
    Field("steps", "train.steps", "int"),
    Field("batch_size", "train.batch_size", "int"),
    Field("grad_accum", "train.grad_accum", "int"),
    Field("lr", "train.lr", "opt_float"),
    Field("warmup_steps", "train.warmup_steps", "int"),
    Field("schedule", "train.schedule", "str"),
    Field("eval_every", "train.eval_every", "int"),
    Field("save_every", "train.save_every", "int"),
    Field("max_new_tokens", "train.max_new_tokens", "int"),
    Field("seed", "train.seed", "int"),
    Field("report_to", "train.report_to", "list"),
)
KEYS = tuple(f.key for f in FIELDS)
BY_PATH = {f.path: f for f in FIELDS}

# Router options that are not in the paper (the "Advanced routing" section; the preset sets them).
ROUTER_AIDS = tuple(o.name for o in routing.ADVANCED)
# Which form fields each method uses (the rest are hidden).
METHOD_FIELDS = {name: set(spec.form_fields) for name, spec in methods.METHODS.items()}
METHOD_KEYS = set().union(*METHOD_FIELDS.values())
ROUTED = methods.names(routed=True)  # the methods that show the "Advanced routing" section

HELP = {
    "name": "A label for the run in the Runs table (you can rename it later).",
    "model": "The frozen base model. smollm2-135m is embedded (no download); tiny-random is a 2-layer test "
             "model; or type a Hugging Face Hub id or a local model folder.",
    "device": "Where the job trains: auto picks CUDA, then Apple MPS, then CPU.",
    "train_specs": "Data specs, comma-separated (set by the data choices above): builtin:all, jsonl:FILE, "
                   "squad:FILE, gsm8k:FILE, hf:NAME …",
    "eval_specs": "Optional evaluation specs; empty = the validation split of the training data.",
    "max_train_examples": "Cap on training examples (empty = all).",
    "max_eval_examples": "Examples per evaluation set (evaluation generates answers, so keep it small on CPU).",
    "max_source_tokens": "Instruction + context + question are cut to this many tokens.",
    "max_answer_tokens": "Gold answers are cut to this many tokens for training.",
    "method": "PT-MoE: N experts share a low-rank basis B (prompt_i = A_i·B), a router picks one per input.",
    "preset": "studio (the default): what scored best in docs/routing_study.md — the paper's PT-MoE with its router "
              "fitted to your training data sets before training, then learning at a tenth of the prompt's rate. "
              "What it does to routing: in 3 of 5 seeds every data set went mostly (83–100 %) to one expert; in one "
              "seed the router collapsed onto one expert, in another it split a data set 62/38. Check the run's "
              "routing in Inspect. routed: the same fitted router (confidence 0.85) held fixed, so every data set "
              "goes to one expert in every seed (with more data sets than experts, similar sets share one); it "
              "scored like paper on in-domain macro and about 2 QA F1 points below it. A single data set is split "
              "into k-means clusters of its inputs. paper: PT-MoE exactly as the paper describes it; its router "
              "sends almost every input to one expert. Choosing one fills the method fields below with its values; "
              "fields you then change are recorded as differing from the preset.",
    **{o.name: o.help for o in methods.FORM_OPTIONS},  # each method setting's help, from its module
    "steps": "Optimizer steps.",
    "report_to": "Also send the run's parameters, curves, scores and routing summary to these experiment trackers "
                 "(TensorBoard under the run's folder, MLflow at $MLFLOW_TRACKING_URI, trackio's local store).",
    "batch_size": "Examples per step (per micro-batch with accumulation).",
    "grad_accum": "Micro-batches accumulated per step.",
    "lr": f"Soft prompts need a large step ({DEFAULT_PROMPT_LR:g}), LoRA a small one ({lora.LR:g}); "
          "changing the method switches between these defaults.",
    "warmup_steps": "Linear warm-up steps (≤ steps).",
    "schedule": "Learning-rate decay after warm-up.",
    "eval_every": "Evaluate every this many steps (0 = only at the end).",
    "save_every": "Checkpoint every this many steps (0 = only at the end); each checkpoint can be inspected.",
    "max_new_tokens": "Longest generated answer at evaluation.",
    "seed": "Seed for data order, initialisation and router noise.",
}


def default_values(model: str = "smollm2-135m", demo: bool = False, gpu: bool = False) -> dict[str, Any]:
    """Sane defaults: PT-MoE T=40 N=2 R=36 on the built-in tasks, sized to finish in a few minutes.

    On a GPU: 100 steps of batch 8. On a 2-core CPU a step of batch 8 on SmolLM2-135M costs ~13 s and
    one generated evaluation answer ~1.5 s, so the CPU default is 40 steps of batch 4 with 4 evaluation
    examples per set (about 5 minutes); demo mode (a shared CPU Space) is smaller still."""
    cfg = RunConfig()
    cfg.name = "ptmoe-builtin"
    cfg.model.name = model
    cfg.data.max_answer_tokens = 24
    cfg.train.eval_batch_size = 8
    if gpu and not demo:
        cfg.data.max_train_examples, cfg.data.max_eval_examples, cfg.data.max_source_tokens = 2000, 24, 192
        cfg.train.steps, cfg.train.batch_size, cfg.train.warmup_steps = 100, 8, 10
        cfg.train.eval_every, cfg.train.save_every, cfg.train.max_new_tokens = 50, 50, 24
    elif not demo:
        cfg.data.max_train_examples, cfg.data.max_eval_examples, cfg.data.max_source_tokens = 1000, 4, 160
        cfg.train.steps, cfg.train.batch_size, cfg.train.warmup_steps = 40, 4, 4
        cfg.train.eval_every, cfg.train.save_every, cfg.train.max_new_tokens = 20, 20, 16
    else:
        cfg.data.max_train_examples, cfg.data.max_eval_examples, cfg.data.max_source_tokens = 500, 2, 128
        cfg.train.steps, cfg.train.batch_size, cfg.train.warmup_steps = 20, 4, 2
        cfg.train.eval_every, cfg.train.save_every, cfg.train.max_new_tokens = 0, 0, 12
    cfg.train.lr = default_lr(cfg.method.method)
    return values_from_config(cfg)


def preset_fill(preset: str, method: str) -> dict[str, Any]:
    """Form values (by key) that ``preset`` sets for ``method``; the method fields it does not set keep
    what the user typed."""
    return {BY_PATH[f"method.{k}"].key: v for k, v in preset_values(preset, method).items()
            if f"method.{k}" in BY_PATH}


def preset_differences(cfg: RunConfig) -> dict[str, tuple[Any, Any]]:
    """The method fields of ``cfg`` that differ from its preset: name -> (value, the preset's)."""
    m = cfg.method
    return differences(m.preset, m.method, {f.name: getattr(m, f.name) for f in dataclass_fields(m)})


def preset_summary(cfg: RunConfig) -> str:
    """A Markdown line: the preset and which method fields differ from it (no user text in it)."""
    diff = preset_differences(cfg)
    if not diff:
        return f"Preset **{cfg.method.preset}**, unchanged."
    parts = ", ".join(f"{k} {_show(v)} (preset {_show(p)})" for k, (v, p) in diff.items())
    return f"Preset **{cfg.method.preset}**; differs from it: {parts}."


def _show(v: Any) -> str:
    return f"`{v!r}`" if isinstance(v, str) else f"`{v}`"


def default_lr(method: str) -> float:
    return DEFAULT_LR.get(method, DEFAULT_PROMPT_LR)


def is_default_lr(lr: Any) -> bool:
    """True for an empty learning rate or one of the per-method defaults (so it may follow the method)."""
    if _blank(lr) or lr == 0:
        return True
    try:
        return any(abs(float(lr) - d) < 1e-12 for d in {DEFAULT_PROMPT_LR, *DEFAULT_LR.values()})
    except (TypeError, ValueError):
        return False


def _get(d: Mapping[str, Any], path: str) -> Any:
    for part in path.split("."):
        d = d[part]
    return d


def _set(d: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def values_from_config(cfg: RunConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Form values (keyed by ``KEYS``) from a config or its dict."""
    d = cfg.to_dict() if isinstance(cfg, RunConfig) else RunConfig.from_dict(dict(cfg)).to_dict()
    out = {}
    for f in FIELDS:
        v = _get(d, f.path)
        if f.kind == "list" and f.key.endswith("_specs"):
            v = ", ".join(v or [])
        out[f.key] = v
    return out


def values_list(values: Mapping[str, Any]) -> list[Any]:
    return [values.get(k) for k in KEYS]


def as_values(args: Sequence[Any]) -> dict[str, Any]:
    if len(args) != len(KEYS):
        raise ValueError(f"expected {len(KEYS)} form values, got {len(args)}")
    return dict(zip(KEYS, args, strict=True))


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def config_from_values(values: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Build (not yet validate) a RunConfig; raises ConfigError naming the field on a malformed value.
    Fields not on the form (e.g. expert_perturb) keep ``base``'s values, except those the chosen
    preset sets: the preset supplies them."""
    d = (base or RunConfig()).to_dict()
    for k in methods.PAPER_VALUES:  # every key a preset sets
        if f"method.{k}" not in BY_PATH:
            d["method"].pop(k, None)
    for f in FIELDS:
        v = values.get(f.key)
        if f.kind == "list":
            if isinstance(v, str):
                v = [s.strip() for s in v.split(",") if s.strip()]
            v = list(v or [])
        elif f.kind in ("opt_int", "opt_float"):
            if _blank(v) or (f.kind == "opt_int" and v in (0, 0.0, "0")) or (f.kind == "opt_float" and v in (0, 0.0)):
                v = None
        elif f.kind == "bool":
            v = bool(v)
        elif f.kind == "str":
            v = "" if v is None else str(v).strip()
        elif _blank(v):
            raise ConfigError(f.path, "must not be empty")
        _set(d, f.path, v)
    d["output_dir"] = f"runs/{d['name'] or 'run'}"
    return RunConfig.from_dict(d)


def check(values: Mapping[str, Any], *, demo: bool = False, limits: Limits | None = None,
          spec_check: Callable[[str], str | None] | None = None) -> tuple[RunConfig | None, dict[str, str]]:
    """(config, {form key: reason}) — the config is None when something is wrong.

    Besides ``RunConfig.validate`` (the engine's own rules), the ``limits`` of a shared studio
    (``demo`` alone means ``DEMO_LIMITS``) and the data specs (``spec_check(spec)`` returns a reason or
    None) are checked here."""
    errors: dict[str, str] = {}
    try:
        cfg = config_from_values(values)
        cfg.validate()
    except ConfigError as e:
        errors[field_key(e.field)] = _reason(e)
        return None, errors
    if not cfg.name:
        errors["name"] = "give the run a name"
    limits = limits or (DEMO_LIMITS if demo else None)
    if limits is not None:
        errors.update(limit_errors(cfg, limits))
    if spec_check is not None:
        for key, specs in (("train_specs", cfg.data.train), ("eval_specs", cfg.data.eval)):
            for s in specs:
                why = spec_check(s)
                if why:
                    errors.setdefault(key, why)
    return (None if errors else cfg), errors


def field_key(config_field: str) -> str:
    """The form key for a ConfigError field ("train.steps" -> "steps"); unknown -> the closest parent."""
    if config_field in BY_PATH:
        return BY_PATH[config_field].key
    if config_field.startswith("data"):
        return "train_specs"
    if config_field.startswith("method"):
        return "method"
    if config_field.startswith("model"):
        return "model"
    return "name"


def _reason(e: ConfigError) -> str:
    msg = str(e)
    prefix = f"{e.field}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


# ---------------------------------------------------------------------------------------------
# Parameter counts


def param_counts(cfg: RunConfig, shape: ModelShape) -> dict[str, int]:
    """Trainable parameters of the chosen method, of LoRA (the form's r and targets) on the same
    model, and of the chosen method on the paper's Llama-3.2-1B."""
    from copy import deepcopy

    as_lora = deepcopy(cfg.method)
    as_lora.method = lora.SPEC.name
    out = {"method": count_params(cfg.method, shape), "lora": count_params(as_lora, shape)}
    if cfg.method.is_prompt:
        out["paper"] = count_params(cfg.method, LLAMA_32_1B)
    return out


def params_html(cfg: RunConfig | None, shape: ModelShape | None, model_note: str = "") -> str:
    if cfg is None:
        return '<div class="pt-params pt-muted">Trainable parameters: fix the highlighted field first.</div>'
    if shape is None:
        return f'<div class="pt-params pt-muted">Trainable parameters: {esc(model_note or "model shape unknown")}</div>'
    c = param_counts(cfg, shape)
    m = cfg.method
    label = METHOD_LABELS[m.method]
    lora_targets = esc(", ".join(m.lora_targets))
    model = esc(cfg.model.name)
    parts = [f'<div class="pt-params">Trainable parameters — <b>{c["method"]:,}</b> {label}']
    if m.is_prompt:
        ratio = c["method"] / c["lora"] if c["lora"] else 0
        parts.append(f' &nbsp;·&nbsp; LoRA r={m.lora_r} on {lora_targets}: <b>{c["lora"]:,}</b> '
                     f'<span class="pt-muted">({ratio:.2f}× LoRA)</span>')
        parts.append(f'<br><span class="pt-muted">on {model} (H={shape.hidden}, {shape.layers} layers); '
                     f'same settings on the paper\'s Llama-3.2-1B: {c["paper"]:,}</span>')
    else:
        parts.append(f'<br><span class="pt-muted">on {model} (H={shape.hidden}, {shape.layers} layers)</span>')
    parts.append("</div>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# The equivalent CLI command


def cli_command(cfg: RunConfig, config_file: str | None = None) -> str:
    """``python -m ptmoe_core train`` with ``--preset`` and ``--set`` for every value that differs from the
    defaults of that method under that preset."""
    if config_file:
        return f"python -m ptmoe_core train --config {shlex.quote(config_file)}"
    m = cfg.method
    default = flatten(RunConfig.from_dict({"method": {"method": m.method, "preset": m.preset}}).to_dict())
    default["method.method"] = RunConfig().method.method  # the method itself is set with --set
    parts = ["python -m ptmoe_core train"]
    if m.preset != DEFAULT_PRESET:
        parts.append(f"--preset {m.preset}")
    for key, value in flatten(cfg.to_dict()).items():
        if key in ("output_dir", "method.preset"):
            continue
        if default.get(key, object()) != value:
            parts.append(f"--set {shlex.quote(f'{key}={json.dumps(value) if not isinstance(value, str) else value}')}")
    parts.append(f"--output-dir {shlex.quote(cfg.output_dir)}")
    return " \\\n  ".join(parts)


def config_yaml(cfg: RunConfig) -> str:
    import yaml

    d = cfg.to_dict()
    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def preset_choices() -> list[str]:
    return list(PRESETS)


def method_choices() -> list[tuple[str, str]]:
    return [(label, name) for name, label in METHOD_LABELS.items()]
