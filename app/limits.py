"""What one visitor may ask of a shared studio (demo mode): the ``Limits``, and the checks of a run's
configuration and data specs against them, each naming the Train form field at fault.

Used by the form checks (``forms.check``), every spec the studio reads (``data_sources.spec_problem``)
and continuing or copying a run (``studio.Studio``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ptmoe_core.errors import PTMoEError

if TYPE_CHECKING:
    from ptmoe_core.config import RunConfig


@dataclass(frozen=True)
class Limits:
    """What one visitor may ask of a shared studio (demo mode): every knob that costs time, memory or
    the only job slot has a ceiling, checked with the form before a run is queued."""

    models: tuple[str, ...] = ("smollm2-135m", "tiny-random")  # embedded only: no downloads
    steps: int = 300
    examples_seen: int = 2400  # steps x batch x accumulation: how long a run holds the job slot
    max_train_examples: int = 2000
    max_eval_examples: int = 16
    batch_size: int = 8
    grad_accum: int = 4
    max_new_tokens: int = 32
    max_source_tokens: int = 256
    max_answer_tokens: int = 64
    prompt_len: int = 100
    n_experts: int = 8
    lora_r: int = 16
    evaluations: int = 10  # steps / eval_every
    checkpoints: int = 10  # steps / save_every
    builtin_n: int = 2000  # builtin:...?n= and ?n_eval=
    hub_data: bool = False  # hf: specs (downloads of any size)
    queued_runs: int = 3  # runs waiting at once, from everyone
    eval_specs: int = 8  # evaluation data specs per run (each is an evaluation set, every evaluation)
    uploads_mb: int = 200  # all uploads together in data/uploads/


DEMO_LIMITS = Limits()


def limit_errors(cfg: RunConfig, lim: Limits) -> dict[str, str]:
    """{form key: reason} for every value over a shared studio's limits."""
    t, d, m = cfg.train, cfg.data, cfg.method
    caps = [  # (form key, value, ceiling, what)
        ("steps", t.steps, lim.steps, "steps"),
        ("batch_size", t.batch_size, lim.batch_size, "examples per batch"),
        ("grad_accum", t.grad_accum, lim.grad_accum, "accumulated micro-batches"),
        ("max_new_tokens", t.max_new_tokens, lim.max_new_tokens, "new tokens"),
        ("max_source_tokens", d.max_source_tokens, lim.max_source_tokens, "input tokens"),
        ("max_answer_tokens", d.max_answer_tokens, lim.max_answer_tokens, "answer tokens"),
        ("max_eval_examples", d.max_eval_examples, lim.max_eval_examples, "evaluation examples per set"),
        ("max_train_examples", d.max_train_examples or 10**12, lim.max_train_examples, "training examples"),
    ]
    if not m.is_prompt:
        caps.append(("lora_r", m.lora_r, lim.lora_r, "LoRA rank"))
    else:
        caps.append(("prompt_len", m.prompt_len, lim.prompt_len, "virtual tokens"))
        if m.is_routed:
            caps.append(("n_experts", m.n_experts, lim.n_experts, "experts"))
    errors = {key: f"demo mode allows at most {cap:,} {what}" for key, value, cap, what in caps if value > cap}
    seen = t.steps * t.batch_size * t.grad_accum
    if seen > lim.examples_seen and "steps" not in errors:
        errors["steps"] = (f"demo mode allows at most {lim.examples_seen:,} examples seen (steps x batch x "
                           f"accumulation = {seen:,}), so one run cannot hold the job slot for long")
    for key, every, cap, what in (("eval_every", t.eval_every, lim.evaluations, "evaluations"),
                                  ("save_every", t.save_every, lim.checkpoints, "checkpoints")):
        if every and t.steps / every > cap:
            errors[key] = f"demo mode allows at most {cap} {what} per run (every {-(-t.steps // cap)} steps or 0)"
    if cfg.model.name not in lim.models:
        errors["model"] = f"demo mode trains only the embedded models ({', '.join(lim.models)})"
    for key, specs in (("train_specs", d.train), ("eval_specs", d.eval)):
        why = next((w for w in (spec_limit(s, lim) for s in specs) if w), None)
        if why:
            errors[key] = why
    if len(d.eval) > lim.eval_specs:
        errors["eval_specs"] = f"demo mode allows at most {lim.eval_specs} evaluation data specs per run"
    return errors


def spec_limit(spec: str, lim: Limits) -> str | None:
    """Why a shared studio refuses data ``spec`` (a Hub data set, an oversized built-in), or None; a
    malformed spec passes here (``data_sources.check_spec`` says why it is malformed)."""
    # The engine's spec parser is imported when first needed: it brings torch with it.
    from ptmoe_core.data.sources import parse_spec

    try:
        s = parse_spec(spec)
    except PTMoEError:
        return None  # malformed: the spec check says why
    if s.prefix == "hf" and not lim.hub_data:
        return "demo mode reads no Hugging Face data sets (hf:); use the built-in tasks or upload a file"
    if s.prefix == "builtin":
        for key in ("n", "n_eval"):
            if int(s.options.get(key) or 0) > lim.builtin_n:
                return f"demo mode allows at most {key}={lim.builtin_n:,} built-in examples per task"
    return None
