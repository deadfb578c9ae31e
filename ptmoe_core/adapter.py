"""An adapter = a frozen base model + one method; trainer, evaluator and generator see only this.

Files follow PEFT's spirit: ``adapter_config.json`` (method, every hyperparameter, the base model's
name and sizes, format version) and ``adapter_model.safetensors`` (trainable tensors only).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .config import MethodConfig, ModelConfig, RunConfig
from .errors import AdapterError, ConfigError
from .models import BaseModel, load_base_model
from .params import ModelShape, count_params
from .prompts import PromptedInputs, SoftPromptMethod, build_prompt_method

FORMAT_VERSION = 1
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def position_ids_from_mask(mask: Tensor) -> Tensor:
    """Positions count only attended tokens, so left padding (or padding between the prompt and
    the input) leaves RoPE positions exactly as for an unpadded sequence."""
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


class Adapter:
    """Base model + soft-prompt method (``prompt``) or a PEFT LoRA wrapper (``lm``)."""

    def __init__(self, base: BaseModel, cfg: MethodConfig, prompt: SoftPromptMethod | None, lm: nn.Module, meta: dict):
        self.base, self.cfg, self.prompt, self.lm, self.meta = base, cfg, prompt, lm, meta

    # --- parameters -------------------------------------------------------------------------
    def named_trainable(self) -> list[tuple[str, nn.Parameter]]:
        mod = self.prompt if self.prompt is not None else self.lm
        return [(n, p) for n, p in mod.named_parameters() if p.requires_grad]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_trainable()]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    @property
    def n_experts(self) -> int:
        return self.cfg.n_experts if self.is_routed else 1

    @property
    def is_routed(self) -> bool:
        return self.prompt is not None and self.prompt.routed

    def train(self, mode: bool = True) -> Adapter:
        if self.prompt is not None:
            self.prompt.train(mode)  # router noise only in training
        else:
            self.lm.train(mode)  # LoRA dropout
        return self

    def eval(self) -> Adapter:
        return self.train(False)

    # --- forward ----------------------------------------------------------------------------
    def embed_inputs(self, batch: dict[str, Tensor], force_expert: int | None = None) -> PromptedInputs:
        """(ids, mask, labels, router mask) -> model inputs with the method applied."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if self.prompt is not None:
            return self.prompt(ids, mask, batch.get("labels"), batch.get("router_mask"), force_expert)
        if force_expert not in (None, 0):
            raise ValueError(f"{self.cfg.method} has a single expert; cannot force expert {force_expert}")
        return PromptedInputs(self.lm.get_input_embeddings()(ids), mask, batch.get("labels"), None)

    def __call__(self, batch: dict[str, Tensor], force_expert: int | None = None, **kwargs: Any):
        """Run the LM on a batch; returns (model output with .loss when labels are given, routing)."""
        pi = self.embed_inputs(batch, force_expert)
        out = self.lm(
            inputs_embeds=pi.inputs_embeds,
            attention_mask=pi.attention_mask,
            position_ids=position_ids_from_mask(pi.attention_mask),
            labels=pi.labels,
            **kwargs,
        )
        return out, pi.routing

    def to(self, device: torch.device) -> Adapter:
        if self.prompt is not None:
            self.prompt.to(device)
        else:
            self.lm.to(device)
        return self

    # --- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        if self.prompt is not None:
            return {k: v.detach().cpu().contiguous() for k, v in self.prompt.state_dict().items()}
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(self.lm).items()}

    def load_state_dict(self, sd: dict[str, Tensor], source: str = "adapter") -> None:
        expected = self.state_dict()
        missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
        if missing or unexpected:
            raise AdapterError(f"{source}: tensors do not match a {self.cfg.method} adapter "
                               f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        for k, v in expected.items():
            if sd[k].shape != v.shape:
                raise AdapterError(f"{source}: tensor {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}")
            if not torch.isfinite(sd[k].float()).all():
                raise AdapterError(f"{source}: tensor {k} contains NaN or infinite values")
        if self.prompt is not None:
            self.prompt.load_state_dict(sd)
        else:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.lm, sd)

    def model_shape(self) -> ModelShape:
        return ModelShape.from_hf_config(self.base.model.config)


def build_adapter(base: BaseModel, cfg: MethodConfig, init_text: str | None = None, seed: int = 0) -> Adapter:
    """A fresh adapter for ``base`` (deterministic for a seed)."""
    cfg.validate()
    meta = {"init_text": init_text, "seed": seed}
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        names = {n.rsplit(".", 1)[-1] for n, _ in base.model.named_modules()}
        absent = [t for t in cfg.lora_targets if t not in names]
        if absent:
            raise ConfigError("method.lora_targets", f"{absent} not found in {base.name}")
        # A rank above a layer's smaller side adds nothing; refuse it before peft allocates the matrices.
        full = min((min(m.in_features, m.out_features) for n, m in base.model.named_modules()
                    if n.rsplit(".", 1)[-1] in cfg.lora_targets and hasattr(m, "in_features")), default=None)
        if full is not None and cfg.lora_r > full:
            raise ConfigError("method.lora_r", f"r={cfg.lora_r} exceeds the full rank {full} of the target layers "
                                               f"of {base.name}")
        lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # A copy keeps the shared base model pristine for other adapters in the same process.
            lm = get_peft_model(copy.deepcopy(base.model), lcfg)
        return Adapter(base, cfg, None, lm, meta)
    token_ids = None
    if cfg.init == "text":
        text = cfg.init_text or init_text
        if text:
            token_ids = base.tokenizer(text, add_special_tokens=False)["input_ids"] or None
    prompt = build_prompt_method(base.embed, cfg, token_ids, seed).to(base.device)
    return Adapter(base, cfg, prompt, base.model, meta)


# ---------------------------------------------------------------------------------------------
# Files


def adapter_config_dict(adapter: Adapter, extra: dict | None = None) -> dict:
    c = adapter.base.model.config
    return {
        "format_version": FORMAT_VERSION,
        "library": "ptmoe_core",
        "method": asdict(adapter.cfg),
        "base_model": {
            "name": adapter.base.name,
            "hidden_size": adapter.base.hidden_size,
            "vocab_size": int(getattr(c, "vocab_size", 0)),
            "num_hidden_layers": int(getattr(c, "num_hidden_layers", 0)),
        },
        "trainable_params": adapter.num_trainable(),
        "meta": adapter.meta,
        **(extra or {}),
    }


def save_adapter(adapter: Adapter, directory: str | Path, extra: dict | None = None) -> Path:
    """Write the adapter atomically-enough: tensors first, config last (its presence marks done)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file(adapter.state_dict(), str(d / WEIGHTS_NAME), metadata={"format": "pt", "method": adapter.cfg.method})
    tmp = d / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(adapter_config_dict(adapter, extra), indent=2))
    tmp.replace(d / CONFIG_NAME)
    return d


def read_adapter_config(directory: str | Path) -> dict:
    d = Path(directory)
    if not d.is_dir():
        raise AdapterError(f"adapter directory not found: {d}")
    p = d / CONFIG_NAME
    if not p.is_file():
        raise AdapterError(f"{d} is not an adapter: {CONFIG_NAME} is missing")
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise AdapterError(f"{p} is corrupt: {e}") from e
    if not isinstance(cfg, dict) or "method" not in cfg or "base_model" not in cfg:
        raise AdapterError(f"{p} is not a ptmoe_core adapter config (no 'method' / 'base_model')")
    for key, kind in (("method", dict), ("base_model", dict), ("meta", (dict, type(None))), ("format_version", int)):
        if key in cfg and (not isinstance(cfg[key], kind) or isinstance(cfg[key], bool)):
            raise AdapterError(f"{p} is malformed: {key!r} is a {type(cfg[key]).__name__}")
    meta = cfg.get("meta") or {}
    if not isinstance(meta.get("seed", 0), int) or isinstance(meta.get("seed"), bool):
        raise AdapterError(f"{p} is malformed: meta.seed is {meta['seed']!r}, not an integer")
    if not isinstance(meta.get("init_text") or "", str):
        raise AdapterError(f"{p} is malformed: meta.init_text is a {type(meta['init_text']).__name__}, not text")
    if cfg.get("format_version", 0) > FORMAT_VERSION:
        raise AdapterError(f"{p} has format version {cfg['format_version']}; this build reads up to {FORMAT_VERSION}")
    return cfg


def load_adapter(
    directory: str | Path, base: BaseModel | None = None, model_cfg: ModelConfig | None = None,
    allow_other_base: bool = False,
) -> Adapter:
    """Load an adapter; the base model is loaded from the config's name unless one is given.
    A base model of another size, vocabulary or name is refused (unless ``allow_other_base``)."""
    d = Path(directory)
    cfg = read_adapter_config(d)
    try:
        mcfg = RunConfig.from_dict({"method": cfg["method"]}).method  # typed and coerced like any config
        mcfg.validate()
    except (TypeError, ConfigError) as e:
        raise AdapterError(f"{d / CONFIG_NAME}: invalid method settings: {e}") from e
    want = cfg["base_model"]
    if base is None:
        base = load_base_model(model_cfg or ModelConfig(name=want["name"]))
    if base.hidden_size != want.get("hidden_size"):
        raise AdapterError(
            f"adapter {d} was trained on {want.get('name')} (hidden size {want.get('hidden_size')}), "
            f"but the base model {base.name} has hidden size {base.hidden_size}"
        )
    vocab = int(getattr(base.model.config, "vocab_size", 0))
    if want.get("vocab_size") and vocab != want["vocab_size"]:
        raise AdapterError(f"adapter {d} expects a vocabulary of {want['vocab_size']}, {base.name} has {vocab}")
    if not allow_other_base and want.get("name") != base.name:
        raise AdapterError(f"adapter {d} was trained on {want.get('name')!r}, not {base.name!r}")
    wpath = d / WEIGHTS_NAME
    if not wpath.is_file():
        raise AdapterError(f"{d}: {WEIGHTS_NAME} is missing")
    try:
        sd = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise AdapterError(f"{wpath} is corrupt or not a safetensors file: {e}") from e
    meta = cfg.get("meta") or {}
    adapter = build_adapter(base, mcfg, init_text=meta.get("init_text"), seed=meta.get("seed", 0))
    adapter.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, source=str(wpath))
    adapter.meta = {**meta, **{k: v for k, v in cfg.items() if k not in ("method", "base_model", "meta")}}
    return adapter.eval()


def expected_params(adapter: Adapter) -> int:
    """The formula's count for this adapter's model; equals ``num_trainable()``."""
    return count_params(adapter.cfg, adapter.model_shape())
