"""PEFT's own ``adapter_config.json`` for the two methods PEFT has: PT (``PROMPT_TUNING``) and LoRA.

The tensors need no translation: the studio's PT state is ``prompt_embeddings`` (T×H), exactly the
key PEFT saves for prompt tuning, and LoRA's state comes from ``peft.get_peft_model_state_dict``.
So one ``adapter_model.safetensors`` serves both loaders; this module only writes PEFT's config
beside the studio's record, checks the two agree, and reads a PEFT-only folder (e.g. from the Hub)
back as a studio method.

PEFT's prompt tuning ignores position ids (it warns and uses 0, 1, 2, … over prompt + input); the
studio counts positions over attended tokens. The two agree on unpadded and right-padded inputs,
which is how PEFT is normally called; left-padded batches differ in PEFT itself, not in the file.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from .config import MethodConfig
from .errors import AdapterError
from .methods import METHODS, by_peft_type
from .models import EMBEDDED, EMBEDDED_HUB_ID, TINY, hub_id_of

# Each method PEFT has -> PEFT's type (``MethodSpec.peft``).
PEFT_TYPES = {name: spec.peft.peft_type for name, spec in METHODS.items() if spec.peft}
LORA = "LORA"  # PEFT builds and saves this type itself (peft_format.lora_config)
TASK_TYPE = "CAUSAL_LM"
# Keys that describe where a config came from or how its tensors were first initialised: they do not
# change what a loaded adapter computes, so a PEFT folder may set them freely.
_PROVENANCE = {
    "auto_mapping", "base_model_name_or_path", "revision", "inference_mode", "peft_version", "runtime_config",
    "task_type", "peft_type", "prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path",
    "tokenizer_kwargs", "num_layers", "num_attention_heads", "token_dim", "init_lora_weights", "loftq_config",
    "eva_config", "corda_config", "lora_ga_config", "megatron_core",
}
_STUDIO_INIT = {"TEXT": "text", "SAMPLE_VOCAB": "vocab", "RANDOM": "random"}


def lora_config(cfg: MethodConfig):
    """The ``peft.LoraConfig`` the studio trains LoRA with."""
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets), task_type=TASK_TYPE)


def _prompt_tuning_config(cfg: MethodConfig, base_name: str, hf_config: Any, init_text: str | None):
    from peft import PromptTuningConfig

    text = cfg.init_text or init_text
    init = "TEXT" if cfg.init == "text" and text else "RANDOM" if cfg.init == "random" else "SAMPLE_VOCAB"
    # TEXT init names a tokenizer; PEFT only loads it to re-initialise a trainable copy, never to load.
    tokenizer = EMBEDDED_HUB_ID if base_name in (TINY, EMBEDDED) else base_name
    return PromptTuningConfig(
        task_type=TASK_TYPE,
        num_virtual_tokens=cfg.prompt_len,  # T
        token_dim=int(hf_config.hidden_size),  # H
        num_transformer_submodules=1,
        num_layers=int(getattr(hf_config, "num_hidden_layers", 0)) or None,
        num_attention_heads=int(getattr(hf_config, "num_attention_heads", 0)) or None,
        prompt_tuning_init=init,
        prompt_tuning_init_text=text if init == "TEXT" else None,
        tokenizer_name_or_path=tokenizer if init == "TEXT" else None,
    )


def peft_config_dict(cfg: MethodConfig, base_name: str, hf_config: Any, init_text: str | None = None) -> dict | None:
    """PEFT's ``adapter_config.json`` content for a PT or LoRA adapter; None for methods PEFT lacks."""
    if cfg.method not in PEFT_TYPES:
        return None
    lora = PEFT_TYPES[cfg.method] == LORA
    pc = lora_config(cfg) if lora else _prompt_tuning_config(cfg, base_name, hf_config, init_text)
    pc.base_model_name_or_path = hub_id_of(base_name)
    pc.inference_mode = True
    return _jsonable(pc.to_dict())


def _reference(cfg: MethodConfig) -> dict:
    """What PEFT writes for the adapter the studio would build from ``cfg``."""
    if PEFT_TYPES.get(cfg.method) == LORA:
        return _jsonable(lora_config(cfg).to_dict())
    from peft import PromptTuningConfig

    return _jsonable(PromptTuningConfig(task_type=TASK_TYPE, num_virtual_tokens=cfg.prompt_len,
                                        num_transformer_submodules=1).to_dict())


def _jsonable(d: dict) -> dict:
    return {k: sorted(v) if isinstance(v, set) else v for k, v in d.items()}


def _is_default(v: Any) -> bool:
    return v is None or v is False or v == {} or v == [] or v == ""


def _unsupported(found: dict, built: dict) -> list[str]:
    """Settings of ``found`` (a PEFT config) that the studio's own config ``built`` does not reproduce."""
    out = []
    for k, v in found.items():
        if k in _PROVENANCE or v is None:  # None: PEFT's default (or its automatic choice) for the model
            continue
        want = built.get(k)
        same = (sorted(v) == sorted(want)) if isinstance(v, list) and isinstance(want, list) else v == want
        if not same and not (_is_default(v) and _is_default(want)):
            out.append(f"{k}={v!r}")
    return out


def studio_record_from_peft(d: dict, source: Path) -> dict:
    """A studio adapter record (``method``, ``base_model``, ``meta``) for a PEFT-only PT or LoRA folder.
    PEFT settings the studio does not build (DoRA, rsLoRA, biases, …) are refused, naming them."""
    ptype = d.get("peft_type")
    spec = by_peft_type(ptype)
    if spec is None:
        raise AdapterError(f"{source}: PEFT type {ptype!r} is not one the studio runs ({', '.join(PEFT_TYPES.values())}); "
                           "load it with peft.PeftModel.from_pretrained")
    if d.get("task_type") not in (None, TASK_TYPE):
        raise AdapterError(f"{source}: task type {d.get('task_type')!r}; the studio runs causal LMs ({TASK_TYPE})")
    try:
        if ptype == LORA:
            targets = d.get("target_modules")
            if not isinstance(targets, list) or not targets:
                raise AdapterError(f"{source}: target_modules {targets!r} is not a list of module names "
                                   "(regular expressions are not supported)")
            mcfg = MethodConfig(method=spec.name, lora_r=int(d["r"]), lora_alpha=float(d["lora_alpha"]),
                                lora_dropout=float(d.get("lora_dropout") or 0.0), lora_targets=sorted(targets))
            hidden = None
        else:
            init = _STUDIO_INIT.get(str(d.get("prompt_tuning_init", "RANDOM")), "random")
            mcfg = MethodConfig(method=spec.name, prompt_len=int(d["num_virtual_tokens"]), init=init,
                                init_text=d.get("prompt_tuning_init_text"))
            hidden = d.get("token_dim")
        mcfg.validate()
    except (KeyError, TypeError, ValueError) as e:
        raise AdapterError(f"{source}: PEFT config lacks or mangles a field the studio needs: {e}") from e
    bad = _unsupported(d, _reference(mcfg))
    if bad:
        raise AdapterError(f"{source}: uses PEFT settings the studio does not reproduce ({', '.join(bad[:4])}); "
                           "load it with peft.PeftModel.from_pretrained instead")
    return {
        "library": "peft",
        "method": asdict(mcfg),
        "base_model": {"name": d.get("base_model_name_or_path"), "hidden_size": hidden},
        "meta": {"init_text": mcfg.init_text, "seed": 0},
    }


def check_agrees(record: dict, d: dict, source: Path) -> None:
    """The studio's record and PEFT's config in one folder must describe the same adapter."""
    m = record.get("method") or {}
    want = PEFT_TYPES.get(m.get("method"))
    if not isinstance(d, dict):
        raise AdapterError(f"{source}: adapter_config.json is not a JSON object; save the adapter again (ptmoe_core.save)")
    if want is None and "peft_type" not in d:
        return  # a leftover studio record (format 1) beside the format-2 record: PEFT cannot read it anyway
    if d.get("peft_type") != want:
        raise AdapterError(f"{source}: PEFT type {d.get('peft_type')!r} but the studio's record says method "
                           f"{m.get('method')!r}; one file was replaced. Save the adapter again (ptmoe_core.save)")
    for ours, theirs in METHODS[m["method"]].peft.agree:
        a, b = m.get(ours), d.get(theirs)
        same = sorted(a or []) == sorted(b or []) if isinstance(a, list) else a is not None and b is not None and float(a) == float(b)
        if not same:
            raise AdapterError(f"{source}: PEFT's {theirs}={b!r} disagrees with the studio's {ours}={a!r}; "
                               "one file was edited. Save the adapter again (ptmoe_core.save)")
