"""What each method resolves to today, as plain data: every preset's values and resolved config, the
paper's configurations and their parameter counts, the Train form's method fields and help, the model
card of each method and the messages of its validation rules. ``tests/data/method_snapshot.json`` holds
these values as they were before the methods moved into ``ptmoe_core.methods``; ``test_method_snapshot``
checks that nothing a user sees or a stored config resolves to has changed since."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ptmoe_core.config import MethodConfig, RunConfig
from ptmoe_core.errors import ConfigError
from ptmoe_core.methods import NAMES
from ptmoe_core.params import LLAMA_32_1B, ModelShape, count_params

ALL = NAMES
PRESET_NAMES = ("studio", "paper")
SMALL = ModelShape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128)
# Keys added with presets, absent from a config stored before them.
NEWER_KEYS = ("preset", "noise_type", "router_lr_mult", "router_norm", "bias_balance", "mi_loss")
# Settings that each break one validation rule (a method ignores the rules of fields it does not use).
BAD = {
    "rank_over_T": {"prompt_len": 4, "rank": 5},
    "top_k_over_N": {"n_experts": 2, "top_k": 3},
    "many_experts": {"n_experts": 65},
    "negative_noise": {"noise_std": -1.0},
    "balance_high": {"balance_loss": 11.0},
    "noise_type": {"noise_type": "loud"},
    "router_lr": {"router_lr_mult": -1.0},
    "router_init": {"router_init": "pca"},
    "router_init_confidence": {"router_init_confidence": 1.0},
    "bias_balance": {"bias_balance": 2.0},
    "mi_loss": {"mi_loss": 11.0},
    "router_anchor": {"router_anchor": 11.0},
    "long_prompt": {"prompt_len": 513},
    "lora_r": {"lora_r": 0},
    "lora_alpha": {"lora_alpha": 0.0},
    "lora_dropout": {"lora_dropout": 1.0},
    "lora_targets": {"lora_targets": []},
    "perturb": {"expert_perturb": -0.5},
    "init": {"init": "zeros"},
}


def _error(method: str, preset: str, change: dict[str, Any]) -> str | None:
    try:
        MethodConfig.for_preset(method, preset, **change).validate()
    except ConfigError as e:
        return str(e)
    return None


def _card(method: str) -> str:
    from ptmoe_core.model_card import render_card

    rec = {"format_version": 2, "method": asdict(MethodConfig.for_preset(method, "studio")), "trainable_params": 123,
           "base_model": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct", "hidden_size": 576},
           "meta": {"init_text": "Solve it.", "seed": 0}}
    return render_card(rec)


def snapshot() -> dict[str, Any]:
    from app import forms
    from ptmoe_core.presets import paper_method, preset_values

    out: dict[str, Any] = {"presets": {}, "resolved": {}, "paper": {}, "counts": {}, "errors": {}, "cards": {}}
    for p in PRESET_NAMES:
        out["presets"][p] = {m: preset_values(p, m) for m in ALL}
        out["resolved"][p] = {m: asdict(MethodConfig.for_preset(m, p)) for m in ALL}
        out["errors"][p] = {m: {k: _error(m, p, v) for k, v in BAD.items()} for m in ALL}
    # A config stored before presets existed: every key of that time, no preset (router aids stay off).
    out["legacy"] = {m: asdict(MethodConfig.from_dict({k: v for k, v in asdict(MethodConfig(method=m)).items()
                                                       if k not in NEWER_KEYS})) for m in ALL}
    for m in ALL:
        cfg = MethodConfig.from_dict(paper_method(m))
        out["paper"][m] = asdict(cfg)
        out["counts"][m] = {"llama": count_params(cfg, LLAMA_32_1B), "small": count_params(cfg, SMALL),
                            "studio_small": count_params(MethodConfig.for_preset(m, "studio"), SMALL)}
        out["cards"][m] = _card(m)
    out["form"] = {
        "keys": list(forms.KEYS),
        "method_fields": {m: sorted(forms.METHOD_FIELDS[m]) for m in ALL},
        "help": dict(forms.HELP),
        "choices": [list(c) for c in forms.method_choices()],
        "router_aids": list(forms.ROUTER_AIDS),
        "default_lr": {m: forms.default_lr(m) for m in ALL},
        "resolved_lr": {m: RunConfig().train.resolved_lr(m) for m in ALL},
    }
    return out


# A deliberate change (e.g. a new option): `PYTHONPATH=. python tests/method_snapshot.py` rewrites the file;
# review its diff.
if __name__ == "__main__":
    import json
    from pathlib import Path

    path = Path(__file__).parent / "data" / "method_snapshot.json"
    path.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
