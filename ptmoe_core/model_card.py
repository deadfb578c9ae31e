"""The adapter's model card: ``README.md`` with the Hub's YAML metadata, written beside the tensors.

It states what a reader needs to reuse the adapter elsewhere: the base model and its licence, the
method and its settings, the trainable-parameter count, the training data specs, the scores per
evaluation set, what the router did (load per expert, I(domain; expert) in bits) and how to load it.
Everything a user or a file supplied (run name, specs, instruction, set names) is escaped, since the
Hub renders the card as HTML.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .adapter import CARD_NAME, read_adapter_config
from .methods import METHODS
from .models import TINY, hub_id_of
from .peft_format import PEFT_TYPES
from .routing_summary import RoutingSummary

LIBRARY = "ptmoe-studio"
# Licences of base models whose licence is known; a card never guesses one.
LICENSES = {"HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0", "HuggingFaceTB/SmolLM2-135M": "apache-2.0"}
SCORE_GROUPS = ("macro", "in_domain", "out_of_domain")


def _md(text: Any) -> str:
    """Plain text safe in Markdown prose and table cells: HTML escaped, Markdown syntax neutralised."""
    s = html.escape(" ".join(str(text).split()), quote=False)
    return re.sub(r"([\\`*_\[\]|#~!<>])", r"\\\1", s)


def _code(text: Any) -> str:
    """An inline code span (no HTML is interpreted inside one); backticks and table pipes defused."""
    s = " ".join(str(text).split()).replace("`", "'").replace("|", "\\|")
    return f"`{s}`"


@dataclass
class TrainingSummary:
    """How the adapter was trained and how it scored (the card's run-specific part)."""

    run_name: str
    steps: int
    batch_size: int
    grad_accum: int
    lr: float
    seed: int
    train_specs: list[str]
    eval_specs: list[str]
    max_source_tokens: int
    max_answer_tokens: int
    instruction: str | None
    n_train_examples: int | None = None
    eval_step: int | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    routing: RoutingSummary | None = None

    @classmethod
    def from_run(cls, cfg: Any, evaluation: Any = None, n_train_examples: int | None = None) -> TrainingSummary:
        """From a ``RunConfig`` and its last ``EvalReport`` (None when the run had no evaluation sets)."""
        n_experts = cfg.method.n_experts if cfg.method.is_routed else 0
        return cls(
            run_name=cfg.name, steps=cfg.train.steps, batch_size=cfg.train.batch_size, grad_accum=cfg.train.grad_accum,
            lr=cfg.train.resolved_lr(cfg.method.method), seed=cfg.train.seed, train_specs=list(cfg.data.train),
            eval_specs=list(cfg.data.eval), max_source_tokens=cfg.data.max_source_tokens,
            max_answer_tokens=cfg.data.max_answer_tokens, instruction=cfg.data.instruction,
            n_train_examples=n_train_examples,
            eval_step=getattr(evaluation, "step", None),
            scores=dict(getattr(evaluation, "scores", None) or {}),
            routing=RoutingSummary.of(getattr(evaluation, "records", None) or [], n_experts),
        )


def front_matter(record: Mapping[str, Any]) -> dict[str, Any]:
    """The Hub's YAML metadata for an adapter record (``ptmoe_config.json``)."""
    method = record["method"]["method"]
    hub = hub_id_of(str(record["base_model"].get("name") or ""))
    tags = [LIBRARY, method]
    tags += ["peft"] if method in PEFT_TYPES else []
    spec = METHODS.get(method)
    tags += ["prompt-tuning"] if spec is None or spec.is_prompt else [method]
    tags += ["mixture-of-experts"] if spec is not None and spec.routed else []
    meta: dict[str, Any] = {}
    if hub:
        meta["base_model"] = hub
        tags.append(f"base_model:adapter:{hub}")
    if hub in LICENSES:
        meta["license"] = LICENSES[hub]
    meta["library_name"] = "peft" if method in PEFT_TYPES else LIBRARY
    meta["pipeline_tag"] = "text-generation"
    meta["tags"] = tags
    return meta


def render_card(record: Mapping[str, Any], training: TrainingSummary | None = None) -> str:
    """The card's Markdown for an adapter record, with the run's training summary when known."""
    m = record["method"]
    method = m["method"]
    spec = METHODS.get(method)
    short, description = (spec.title, spec.description) if spec else (method, method)
    base = str(record["base_model"].get("name") or "an unnamed base model")
    hub = hub_id_of(base)
    title = f"{_md(training.run_name)}: " if training and training.run_name else ""
    out = ["---", yaml.safe_dump(front_matter(record), sort_keys=False).strip(), "---", "",
           f"# {title}{short} adapter for {_md(hub or base)}", "",
           f"A {short} adapter trained with PT-MoE Studio: {description}. The base model stays frozen; "
           f"only the **{int(record.get('trainable_params', 0)):,} trainable parameters** below are stored.", ""]
    out += _base_section(base, hub)
    out += _settings_section(m, (record.get("meta") or {}).get("init_text"))
    out += _training_section(training)
    out += _scores_section(training)
    if spec is not None and spec.routed:
        out += _routing_section(training, int(m.get("n_experts", 0)))
    out += _loading_section(method, base, hub)
    return "\n".join(out).rstrip() + "\n"


def _base_section(base: str, hub: str | None) -> list[str]:
    if hub:
        where = f"[{_md(hub)}](https://huggingface.co/{hub})"
    elif base == TINY:
        where = f"{_code(base)}, the seeded random miniature Llama of `ptmoe_core.models` (for tests)"
    else:
        where = f"{_code(base)} (a local model folder)"
    lic = f" (licence {LICENSES[hub]})" if hub in LICENSES else ""
    return ["## Base model", "", f"{where}{lic}.", ""]


def _py_str(text: str) -> str:
    """A Python string literal that cannot close the card's code block."""
    return repr(str(text)).replace("`", "\\x60")


def _settings_section(m: Mapping[str, Any], init_text: str | None) -> list[str]:
    method = m["method"]
    if m.get("init") in ("text", "text_vocab") and not m.get("init_text") and init_text:
        m = {**m, "init_text": init_text}  # the text the prompt was actually initialised from
    lists = METHODS[method].card_lists if method in METHODS else bool
    keys = [k for k in m if k != "method" and lists(k)]
    rows = [f"| {_code(k)} | {_code(m[k])} |" for k in keys]
    return ["## Method settings", "", f"Method {_code(method)}.", "", "| setting | value |", "| --- | --- |", *rows, ""]


def _training_section(t: TrainingSummary | None) -> list[str]:
    if t is None:
        return ["## Training", "", "Saved outside a training run: no training record.", ""]
    accum = f" × {t.grad_accum} accumulation" if t.grad_accum > 1 else ""
    rows = [
        ("run", _md(t.run_name)),
        ("steps", f"{t.steps} × batch {t.batch_size}{accum}"),
        ("learning rate", f"{t.lr:g}"),
        ("seed", str(t.seed)),
        ("training data", ", ".join(_code(s) for s in t.train_specs)),
        ("training examples", f"{t.n_train_examples:,}" if t.n_train_examples is not None else "not recorded"),
        ("evaluation data", ", ".join(_code(s) for s in t.eval_specs) or "the validation split of the training data"),
        ("max source / answer tokens", f"{t.max_source_tokens} / {t.max_answer_tokens}"),
        ("instruction", _md(t.instruction) if t.instruction else "each answer type's default instruction"),
    ]
    return ["## Training", "", "| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows), ""]


def _scores_section(t: TrainingSummary | None) -> list[str]:
    if t is None or not t.scores:
        return ["## Scores", "", "Not evaluated.", ""]
    head = ["## Scores", "", f"Greedy answers on the evaluation sets at step {t.eval_step} (percent).", "",
            "| set | n | EM | F1 | accuracy |", "| --- | --- | --- | --- | --- |"]
    names = [k for k in t.scores if k not in SCORE_GROUPS] + [k for k in SCORE_GROUPS if k in t.scores]
    rows = []
    for k in names:
        s = t.scores[k]
        label = f"**{k.replace('_', ' ')}**" if k in SCORE_GROUPS else _md(k)
        rows.append(f"| {label} | {int(s.get('n', 0))} | " + " | ".join(
            f"{100 * float(s.get(x, 0.0)):.1f}" for x in ("em", "f1", "accuracy")) + " |")
    return [*head, *rows, ""]


def _routing_section(t: TrainingSummary | None, n_experts: int) -> list[str]:
    r = t.routing if t else None
    if r is None:
        return ["## Routing", "", "No routed evaluation inputs recorded.", ""]
    bound = math.log2(max(1, min(r.n_domains, n_experts)))
    lines = ["## Routing", "",
             f"Share of the {r.n} evaluation inputs sent to each expert: "
             + ", ".join(f"expert {e}: {100 * x:.1f} %" for e, x in enumerate(r.load)) + ".", "",
             f"I(domain; expert) = **{r.mi_bits:.3f} bits** over {r.n_domains} domain(s) "
             f"(at most {bound:.3f}: 0 means the router ignores the domain)."
             + (f" Mean router confidence {r.mean_confidence:.3f}." if r.mean_confidence is not None else "")
             + (f" The router collapsed onto expert {r.collapsed} ({100 * (r.collapsed_share or 0):.1f} % of the "
                "inputs, each set weighing the same)." if r.collapsed is not None else ""), "",
             "| set | " + " | ".join(f"expert {e}" for e in range(len(r.load))) + " |",
             "| --- |" + " --- |" * len(r.load)]
    lines += [f"| {_md(s)} | " + " | ".join(f"{100 * x:.1f} %" for x in load) + " |" for s, load in r.per_set.items()]
    return [*lines, ""]


def _loading_section(method: str, base: str, hub: str | None) -> list[str]:
    out = ["## How to load", "", "With PT-MoE Studio's engine (`ptmoe_core`), from this folder or its Hub repo id:", "",
           "```python", "import ptmoe_core", "",
           'adapter = ptmoe_core.load("path/to/this/adapter")  # or "user/repo" on the Hub',
           'for g in ptmoe_core.answer(adapter, ["What is 12 plus 30?"], answer_type="number"):',
           "    print(g.text, g.expert, g.probs)  # the answer, the chosen expert, the router's probabilities",
           "```", ""]
    if method in PEFT_TYPES:
        load_base = (["from transformers import AutoModelForCausalLM", "",
                      f"base = AutoModelForCausalLM.from_pretrained({_py_str(hub)})"] if hub else
                     ["from ptmoe_core.models import load_base_model", "",
                      f"base = load_base_model(name={_py_str(base)}).model"])
        out += [f"With PEFT alone (`{PEFT_TYPES[method]}`; this folder is a PEFT adapter):", "",
                "```python", "from peft import PeftModel", *load_base,
                'model = PeftModel.from_pretrained(base, "path/to/this/adapter")', "```", "",
                "Inputs were formatted with the base model's chat template; the user turn is the instruction, "
                "then `Passage: …` (when there is one) and `Question: …` (see `ptmoe_core.data.formatting`)."]
        if METHODS[method].card_note:
            out.append(METHODS[method].card_note)
        out.append("")
    else:
        out += ["PEFT has no type for this method, so the folder holds the studio's own format: "
                "`adapter_model.safetensors` (the trainable tensors) and `ptmoe_config.json` (method, settings, "
                "base model).", ""]
    return out


def write_model_card(directory: str | Path, training: TrainingSummary | None = None) -> Path:
    """Render the card of the adapter in ``directory`` and write it there as ``README.md``."""
    d = Path(directory)
    text = render_card(read_adapter_config(d), training)
    tmp = d / (CARD_NAME + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(d / CARD_NAME)
    return d / CARD_NAME
