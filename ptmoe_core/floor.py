"""The frozen model as the floor: the base model's own answers and scores, with no adapter at all,
on exactly a run's evaluation sets and prompts. How much training helped is a run's scores minus these.

``frozen_adapter`` wraps the base model in the ``Adapter`` interface with nothing added (no soft
prompt, no LoRA, no router), so generation, evaluation and inspection treat it like any adapter.
``floor_key`` names what a floor depends on, so it is computed once per (model, evaluation sets).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from .adapter import Adapter
from .callbacks import EvalReport
from .config import MethodConfig, RunConfig
from .models import BaseModel, load_base_model

FROZEN = "base"  # the method name tables show for the frozen model


def frozen_adapter(base: BaseModel) -> Adapter:
    """The base model as it is: inputs go straight to its embeddings, nothing is trainable."""
    return Adapter(base, MethodConfig(method=FROZEN), None, base.model, {"frozen": True}).eval()


def floor_inputs(cfg: RunConfig) -> dict[str, Any]:
    """Everything a run's floor depends on: the model, how its evaluation sets are drawn and
    formatted, and how long answers may be."""
    d = cfg.data
    return {
        "model": cfg.model.name,
        "train": list(d.train), "eval": list(d.eval), "max_eval_examples": d.max_eval_examples, "seed": d.seed,
        "max_source_tokens": d.max_source_tokens, "max_answer_tokens": d.max_answer_tokens,
        "instruction": d.instruction, "max_new_tokens": cfg.train.max_new_tokens,
    }


def floor_key(cfg: RunConfig) -> str:
    """A stable name for the floor of ``cfg``: runs that differ only in their method share it."""
    digest = hashlib.sha256(json.dumps(floor_inputs(cfg), sort_keys=True).encode()).hexdigest()[:20]
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in cfg.model.name)[-40:]
    return f"{slug}-{digest}"


def evaluate_floor(cfg: RunConfig, base: BaseModel | None = None,
                   progress: Callable[[int, int], None] | None = None) -> EvalReport:
    """The frozen model's evaluation on ``cfg``'s evaluation sets, as the trainer evaluates a run:
    the same examples, prompt formatting and answer length; step 0."""
    from .data.formatting import FormatConfig, encode_example
    from .data.mixture import run_eval_sets
    from .evaluate import evaluate
    from .trainer import mean_loss

    base = base or load_base_model(cfg.model)
    sets = run_eval_sets(cfg.data)
    fmt = FormatConfig.from_data_config(cfg.data)
    adapter = frozen_adapter(base)
    tc = cfg.train
    res = evaluate(adapter, sets, max_new_tokens=tc.max_new_tokens, batch_size=tc.eval_batch_size, format_cfg=fmt,
                   progress=progress)
    feats = [encode_example(base.tokenizer, ex, fmt, with_answer=True) for ds in sets.values() for ex in ds]
    loss = mean_loss(adapter, feats, tc.eval_batch_size) if feats else None
    return EvalReport(step=0, scores=res.scores(), records=res.records, loss=loss)
