"""Every value a run bundle carries, checked against its run config before anything is written.

A bundle's manifest is not covered by its checksums (they cover the adapter files), so anyone can edit
it; the studio later formats, plots and stores these values for every user. ``check_manifest`` walks
the whole manifest and refuses, in one ``BundleError`` line naming the value:

- integers beyond 64 bits and non-finite numbers anywhere;
- times (``created_at``, ``info.started_at`` / ``ended_at``) outside 1970 .. 2200;
- steps (evaluations, metric points, checkpoints, ``info.step``) outside 0 .. the run's steps;
- scores and metric values that are not numbers (a null where a number belongs), metric names the
  studio never writes (``callbacks.step_points`` / ``eval_points``, ``domain_routing/<expert>/...``);
- evaluation records with values of the wrong type, an expert index outside 0 .. N-1 (or any for a
  method without a router), router probabilities that are not N numbers in [0, 1].

``check_tensors`` compares the adapter's tensor names and shapes with the ones the config builds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .config import RunConfig
from .errors import BundleError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TIME_MIN, TIME_MAX = 0.0, 7258118400.0  # 1970-01-01 .. 2200-01-01
STEP_METRICS = ("loss", "lr", "tokens_per_s", "grad_norm", "router_entropy", "eval/loss")
RECORD_TEXT = ("dataset", "domain", "split", "answer_type", "input", "context", "prediction")
RECORD_SCORES = ("em", "f1", "score")  # every record has them (``metrics.score``)
RECORD_OPTIONAL_NUMBERS = ("confidence", "entropy", "latency_s")


def _where(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{str(p)[:40]}" for p in path).lstrip(".") or "manifest"


def check_numbers(d: Any, label: str, path: tuple[Any, ...] = ()) -> None:
    """No integer beyond 64 bits, no NaN or infinity, anywhere in ``d``."""
    stack = [(d, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, dict):
            stack += [(x, (*p, k)) for k, x in v.items()]
        elif isinstance(v, list):
            stack += [(x, (*p, i)) for i, x in enumerate(v)]
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int) and not INT64_MIN <= v <= INT64_MAX:
            raise BundleError(f"{label}: {_where(p)} is an integer of {v.bit_length()} bits (at most 64)")
        elif isinstance(v, float) and not math.isfinite(v):
            raise BundleError(f"{label}: {_where(p)} is {v}, not a finite number")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _time(v: Any, what: str, label: str, required: bool = False) -> None:
    if v is None and not required:
        return
    if not _is_num(v) or not TIME_MIN <= v <= TIME_MAX:
        raise BundleError(f"{label}: {what} {str(v)[:40]!r} is not a time between 1970 and 2200")


def _step(v: Any, what: str, label: str, total: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= total:
        raise BundleError(f"{label}: {what} {str(v)[:40]!r} is not a step between 0 and the run's {total}")


def metric_name_ok(key: str, n_experts: int) -> bool:
    """A metric series name the studio itself writes (for a run with ``n_experts`` experts)."""
    if key in STEP_METRICS:
        return True
    parts = key.split("/")
    if parts[0] == "expert_load" and len(parts) == 2:
        return parts[1].isdigit() and int(parts[1]) < n_experts
    if parts[0] == "domain_routing" and len(parts) >= 3:
        return parts[1].isdigit() and int(parts[1]) < n_experts and all(parts[2:])
    return parts[0] == "eval" and len(parts) >= 3 and all(parts[1:])


def check_record(r: Mapping[str, Any], where: str, n_experts: int, label: str) -> None:
    """One evaluation record as ``evaluate`` writes it; ``n_experts`` 0 for a method without a router."""
    def bad(what: str) -> BundleError:
        return BundleError(f"{label}: {where}: {what}")

    if not isinstance(r.get("id"), (str, int)) or isinstance(r.get("id"), bool):
        raise bad("the record id is missing")
    for k in RECORD_TEXT:
        if r.get(k) is not None and not isinstance(r[k], str):
            raise bad(f"{k} is not text")
    if not isinstance(r.get("prediction"), str):
        raise bad("the prediction is missing")
    gold = r.get("gold")
    if gold is not None and not isinstance(gold, str) and not (isinstance(gold, list)
                                                               and all(isinstance(g, str) for g in gold)):
        raise bad("gold is not a list of answers")
    for k in ("ood", "correct"):
        if r.get(k) is not None and not isinstance(r[k], bool):
            raise bad(f"{k} is not true/false")
    for k in RECORD_SCORES:
        if k in r and not _is_num(r[k]):
            raise bad(f"{k} is {str(r[k])[:20]}, not a number")
    for k in RECORD_OPTIONAL_NUMBERS:
        if r.get(k) is not None and not _is_num(r[k]):
            raise bad(f"{k} is not a number")
    expert, probs = r.get("expert"), r.get("probs")
    if expert is not None:
        if not isinstance(expert, int) or isinstance(expert, bool) or not 0 <= expert < n_experts:
            raise bad(f"expert {str(expert)[:20]} is not one of the run's {n_experts} experts"
                      if n_experts else "an expert is given for a method without a router")
    if probs is not None:
        if (not isinstance(probs, list) or len(probs) != n_experts
                or not all(_is_num(p) and 0 <= p <= 1 for p in probs)):
            raise bad(f"the router probabilities are not {n_experts} numbers in [0, 1]")


def check_evaluation(e: Mapping[str, Any], label: str, total_steps: int, n_experts: int) -> None:
    _step(e.get("step"), "an evaluation's step", label, total_steps)
    scores = e.get("scores")
    if not isinstance(scores, dict):
        raise BundleError(f"{label}: the evaluation at step {e['step']} has no scores")
    for name, sc in scores.items():
        if not isinstance(sc, dict) or not all(_is_num(v) for v in sc.values()):
            raise BundleError(f"{label}: the scores of {str(name)[:80]!r} at step {e['step']} are not all numbers")
    if e.get("loss") is not None and not _is_num(e["loss"]):
        raise BundleError(f"{label}: the loss at step {e['step']} is not a number")
    for i, r in enumerate(e.get("records") or []):
        if not isinstance(r, dict):
            raise BundleError(f"{label}: evaluation record {i} at step {e['step']} is not an object")
        check_record(r, f"evaluation record {i} at step {e['step']}", n_experts, label)


def check_manifest(m: Mapping[str, Any], cfg: RunConfig, label: str) -> None:
    """Everything in the manifest ``m`` of a bundle whose run config is ``cfg`` (see the module doc)."""
    check_numbers(m, label)
    total = cfg.train.steps
    n_experts = cfg.method.n_experts if cfg.method.is_routed else 0
    _time(m.get("created_at"), "created_at", label)
    info = (m.get("run") or {}).get("info") or {}
    if isinstance(info, dict):
        for k in ("started_at", "ended_at"):
            _time(info.get(k), f"info.{k}", label)
        for k in ("step", "total_steps"):
            if info.get(k) is not None:
                _step(info[k], f"info.{k}", label, total)
    for e in m.get("evaluations") or []:
        if isinstance(e, dict):
            check_evaluation(e, label, total, n_experts)
    floor = m.get("floor")
    if isinstance(floor, dict):
        check_evaluation({**floor, "step": 0}, f"{label} (floor)", total, 0)
    for c in m.get("checkpoints") or []:
        _step(c, "a checkpoint step", label, total)
    metrics = m.get("metrics") or {}
    if isinstance(metrics, dict):
        for key, s in metrics.items():
            if not metric_name_ok(str(key), n_experts):
                raise BundleError(f"{label}: metric {str(key)[:80]!r} is not one the studio writes")
            for st in (s.get("steps") or []) if isinstance(s, dict) else []:
                _step(st, f"a step of metric {str(key)[:80]!r}", label, total)


_LORA_NAME = re.compile(r"^[\w.]+\.lora_([AB])\.weight$")


def check_tensors(shapes: Mapping[str, tuple[int, ...]], cfg: RunConfig, hidden_size: int, n_layers: int | None,
                  label: str) -> None:
    """The adapter's tensor names and shapes against what ``cfg`` builds on a model of ``hidden_size``
    (soft prompts: the method itself, built on a 4-token stand-in embedding; LoRA: A/B pairs of rank r,
    one per target module and layer)."""
    m = cfg.method
    if m.method == "lora":
        for k, shape in shapes.items():
            match = _LORA_NAME.match(k)
            if match is None or len(shape) != 2 or shape[0 if match.group(1) == "A" else 1] != m.lora_r:
                raise BundleError(f"{label}: tensor {k[:80]} {tuple(shape)} is not a rank-{m.lora_r} LoRA matrix")
        if n_layers is not None and len(shapes) != 2 * len(m.lora_targets) * n_layers:
            raise BundleError(f"{label}: {len(shapes)} LoRA tensors, expected {2 * len(m.lora_targets) * n_layers} "
                              f"({', '.join(m.lora_targets)} in {n_layers} layers)")
        return
    import torch
    from torch import nn

    from .prompts import build_prompt_method

    with torch.no_grad():
        want = {k: tuple(v.shape) for k, v in
                build_prompt_method(nn.Embedding(4, hidden_size), m, [0, 1, 2, 3], 0).state_dict().items()}
    have = {k: tuple(v) for k, v in shapes.items()}
    if set(have) != set(want):
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        raise BundleError(f"{label}: the tensors do not match a {m.method} adapter (missing {missing[:4]}, "
                          f"unexpected {[k[:60] for k in extra[:4]]})")
    for k, shape in want.items():
        if have[k] != shape:
            raise BundleError(f"{label}: tensor {k} has shape {have[k]}, the run config builds {shape}")
