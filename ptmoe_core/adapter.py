"""An adapter = a frozen base model + one method; trainer, evaluator and generator see only this.

Folder layout (format 2), one set of tensors read by every loader:

    adapter_model.safetensors   trainable tensors only, under PEFT's names for PT and LoRA
    ptmoe_config.json           the studio's record: method, every hyperparameter, base model, format version
    adapter_config.json         PEFT's own config, PT and LoRA only (``PeftModel.from_pretrained`` reads it)
    README.md                   a model card (written with a run's final adapter and by ``ptmoe_core.save``)

Format 1 kept the studio's record in ``adapter_config.json``; such folders still load. A folder with
only PEFT's config (PT or LoRA trained elsewhere) loads too.
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
from .models import BaseModel, load_base_model, same_model
from .params import ModelShape, count_params
from .peft_format import check_agrees, lora_config, peft_config_dict, studio_record_from_peft
from .prompts import IGNORE_INDEX, PromptedInputs, SoftPromptMethod, build_prompt_method
from .router import RoutingInfo

FORMAT_VERSION = 2
CONFIG_NAME = "ptmoe_config.json"
PEFT_CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
CARD_NAME = "README.md"
ADAPTER_FILES = (WEIGHTS_NAME, PEFT_CONFIG_NAME, CONFIG_NAME)  # write order: the studio's record last marks done
INIT_KEYS = ("init_text", "seed")  # the record's "meta": what rebuilds the adapter before its tensors load
RECORD_KEYS = ("format_version", "library", "method", "base_model", "trainable_params", "meta")
MAX_CONFIG_BYTES = 1 << 20  # a config is a few KB; refuse to parse anything far larger


def position_ids_from_mask(mask: Tensor) -> Tensor:
    """Positions count only attended tokens, so left padding (or padding between the prompt and
    the input) leaves RoPE positions exactly as for an unpadded sequence."""
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


class Adapter:
    """Base model + soft-prompt method (``prompt``) or a PEFT LoRA wrapper (``lm``)."""

    def __init__(self, base: BaseModel, cfg: MethodConfig, prompt: SoftPromptMethod | None, lm: nn.Module, meta: dict):
        self.base, self.cfg, self.prompt, self.lm, self.meta = base, cfg, prompt, lm, meta
        self._split_head: bool | None = None  # does decoder + head reproduce lm's logits? (checked once)

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
        """(ids, mask, labels, router mask) -> model inputs with the method applied. Tensors are
        moved to the base model's device (a no-op when they are there), so callers may build
        batches on the CPU."""
        dev = self.base.device
        batch = {k: v.to(dev) if isinstance(v, Tensor) else v for k, v in batch.items()}
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

    def label_loss(
        self, batch: dict[str, Tensor], num_items_in_batch: int | Tensor | None = None
    ) -> tuple[Tensor, RoutingInfo | None]:
        """The LM loss of a labelled batch, as transformers' ``ForCausalLMLoss`` computes it (the
        cross-entropy of each labelled next token, summed / ``num_items_in_batch``, or the mean when
        that is None), and the routing. The LM head runs only where the loss reads it: on the final
        hidden states whose next token is labelled (about a tenth of a training batch), not on every
        position. Loss and gradients equal the full-logits path; a model whose logits are more than
        ``head(decoder(x))`` (e.g. soft-capped) takes that path instead."""
        pi = self.embed_inputs(batch)
        if pi.labels is None:
            raise ValueError("label_loss needs a batch with labels")
        position_ids = position_ids_from_mask(pi.attention_mask)
        parts = self._decoder_and_head()
        if parts is None:
            out = self.lm(inputs_embeds=pi.inputs_embeds, attention_mask=pi.attention_mask, position_ids=position_ids,
                          labels=pi.labels, num_items_in_batch=num_items_in_batch)
            return out.loss, pi.routing
        decoder, head = parts
        hidden = decoder(inputs_embeds=pi.inputs_embeds, attention_mask=pi.attention_mask, position_ids=position_ids,
                         use_cache=False).last_hidden_state  # b×S×H
        target = pi.labels[:, 1:]  # b×(S-1): the state at position t predicts the token at t+1
        keep = target != IGNORE_INDEX
        logits = head(hidden[:, :-1][keep]).float()  # k×V, fp32 as transformers upcasts for the loss
        if num_items_in_batch is None:
            loss = nn.functional.cross_entropy(logits, target[keep])
        else:
            loss = nn.functional.cross_entropy(logits, target[keep], reduction="sum") / num_items_in_batch
        return loss, pi.routing

    def _decoder_and_head(self) -> tuple[nn.Module, nn.Module] | None:
        """(decoder, LM head) of the model when the head applied to the decoder's last hidden state
        gives exactly the model's logits; None otherwise (the full-logits path is used)."""
        model = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm  # under PEFT's wrapper
        get_decoder, get_head = getattr(model, "get_decoder", None), getattr(model, "get_output_embeddings", None)
        if get_decoder is None or get_head is None:
            return None
        decoder, head = get_decoder(), get_head()
        if decoder is None or head is None or decoder is model:
            return None
        if self._split_head is None:
            self._split_head = self._head_reproduces_logits(decoder, head)
        return (decoder, head) if self._split_head else None

    @torch.no_grad()
    def _head_reproduces_logits(self, decoder: nn.Module, head: nn.Module) -> bool:
        """Some models scale or soft-cap their logits after the head; probe once on a few tokens."""
        was_training = self.lm.training
        self.lm.eval()  # no dropout, so both passes compute the same thing
        try:
            ids = torch.arange(4, device=self.base.device)[None]  # 1×4
            full = self.lm(input_ids=ids, use_cache=False).logits
            split = head(decoder(input_ids=ids, use_cache=False).last_hidden_state)
            return bool(full.shape == split.shape and torch.allclose(full.float(), split.float(), rtol=1e-4, atol=1e-5))
        finally:
            self.lm.train(was_training)

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


def build_adapter(
    base: BaseModel, cfg: MethodConfig, init_text: str | None = None, seed: int = 0,
    init_pool: list[int] | None = None,
) -> Adapter:
    """A fresh adapter for ``base`` (deterministic for a seed); ``init_pool``: token ids of the
    training inputs, for ``init="inputs"``."""
    cfg.validate()
    meta = {"init_text": init_text, "seed": seed}
    if not cfg.is_prompt:  # LoRA: PEFT builds the module
        from peft import get_peft_model

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
        lcfg = lora_config(cfg)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # A copy keeps the shared base model pristine for other adapters in the same process.
            lm = get_peft_model(copy.deepcopy(base.model), lcfg)
        return Adapter(base, cfg, None, lm, meta)
    token_ids = init_pool if cfg.init == "inputs" else None
    if cfg.init in ("text", "text_vocab"):
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
        "meta": {k: adapter.meta.get(k) for k in INIT_KEYS},
        # What a loaded adapter carries besides its init (run name, step, input format) is written back.
        **{k: v for k, v in adapter.meta.items() if k not in INIT_KEYS and k not in RECORD_KEYS},
        **(extra or {}),
    }


def save_adapter(adapter: Adapter, directory: str | Path, extra: dict | None = None) -> Path:
    """Write the adapter atomically-enough: tensors first, the studio's record last (its presence
    marks done). PT and LoRA also get PEFT's ``adapter_config.json``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file(adapter.state_dict(), str(d / WEIGHTS_NAME), metadata={"format": "pt", "method": adapter.cfg.method})
    peft_cfg = peft_config_dict(adapter.cfg, adapter.base.name, adapter.base.model.config, adapter.meta.get("init_text"))
    if peft_cfg is not None:
        _write_json(d / PEFT_CONFIG_NAME, peft_cfg)
    else:  # a stale PEFT config (or a format-1 record) from an earlier save must not describe these tensors
        (d / PEFT_CONFIG_NAME).unlink(missing_ok=True)
    _write_json(d / CONFIG_NAME, adapter_config_dict(adapter, extra))
    return d


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def _read_json(p: Path) -> Any:
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise AdapterError(f"{p} is {p.stat().st_size:,} bytes; an adapter config is at most {MAX_CONFIG_BYTES:,}")
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise AdapterError(f"{p} is corrupt: {e}") from e


def _is_record(cfg: Any) -> bool:
    return isinstance(cfg, dict) and "method" in cfg and "base_model" in cfg


def read_adapter_config(directory: str | Path) -> dict:
    """The studio's record of the adapter in ``directory``: format 2 (``ptmoe_config.json``, checked
    against PEFT's config when both exist), format 1 (the record in ``adapter_config.json``) or a
    PEFT-only PT / LoRA folder (a record derived from PEFT's config)."""
    d = Path(directory)
    if not d.is_dir():
        raise AdapterError(f"adapter directory not found: {d}")
    own, peft = d / CONFIG_NAME, d / PEFT_CONFIG_NAME
    if own.is_file():
        cfg = _read_json(own)
        if not _is_record(cfg):
            raise AdapterError(f"{own} is not a ptmoe_core adapter config (no 'method' / 'base_model')")
        _check_record_types(cfg, own)
        if not isinstance(cfg.get("format_version", 0), int) or cfg.get("format_version", 0) > FORMAT_VERSION:
            raise AdapterError(f"{own} has format version {cfg.get('format_version')!r}; this build reads up to "
                               f"{FORMAT_VERSION}: upgrade ptmoe_core to load it")
        if peft.is_file():
            check_agrees(cfg, _read_json(peft), d)
        return cfg
    if not peft.is_file():
        raise AdapterError(f"{d} is not an adapter: neither {CONFIG_NAME} nor {PEFT_CONFIG_NAME} is there")
    cfg = _read_json(peft)
    if isinstance(cfg, dict) and "peft_type" in cfg:
        return studio_record_from_peft(cfg, peft)
    if _is_record(cfg):
        _check_record_types(cfg, peft)
    if _is_record(cfg) and cfg.get("format_version", 1) == 1:
        return cfg  # format 1: the studio's record under PEFT's file name
    raise AdapterError(f"{peft} is neither a PEFT config (no 'peft_type') nor a ptmoe_core format-1 record")


def _check_record_types(cfg: dict, p: Path) -> None:
    """A hand-edited or foreign record with the right keys but wrong types fails here, in one line."""
    for key, kind in (("method", dict), ("base_model", dict), ("meta", (dict, type(None))), ("format_version", int)):
        if key in cfg and (not isinstance(cfg[key], kind) or isinstance(cfg[key], bool)):
            raise AdapterError(f"{p} is malformed: {key!r} is a {type(cfg[key]).__name__}")
    meta = cfg.get("meta") or {}
    if not isinstance(meta.get("seed", 0), int) or isinstance(meta.get("seed"), bool):
        raise AdapterError(f"{p} is malformed: meta.seed is {meta['seed']!r}, not an integer")
    if not isinstance(meta.get("init_text") or "", str):
        raise AdapterError(f"{p} is malformed: meta.init_text is a {type(meta['init_text']).__name__}, not text")


def load_adapter(
    directory: str | Path, base: BaseModel | None = None, model_cfg: ModelConfig | None = None,
    allow_other_base: bool = False,
) -> Adapter:
    """Load an adapter; the base model is loaded from the config's name unless one is given.
    A base model of another size, vocabulary or name is refused (unless ``allow_other_base``)."""
    d = Path(directory)
    cfg = read_adapter_config(d)
    where = d / (CONFIG_NAME if (d / CONFIG_NAME).is_file() else PEFT_CONFIG_NAME)
    try:
        mcfg = RunConfig.from_dict({"method": cfg["method"]}).method  # typed and coerced like any config
        mcfg.validate()
    except (TypeError, ConfigError) as e:
        raise AdapterError(f"{where}: invalid method settings: {e}") from e
    want = cfg["base_model"] if isinstance(cfg["base_model"], dict) else {}
    if base is None:
        if not want.get("name"):
            raise AdapterError(f"{where} names no base model; pass one (base=...)")
        base = load_base_model(model_cfg or ModelConfig(name=want["name"]))
    if want.get("hidden_size") and base.hidden_size != want["hidden_size"]:
        raise AdapterError(
            f"adapter {d} was trained on {want.get('name')} (hidden size {want.get('hidden_size')}), "
            f"but the base model {base.name} has hidden size {base.hidden_size}"
        )
    vocab = int(getattr(base.model.config, "vocab_size", 0))
    if want.get("vocab_size") and vocab != want["vocab_size"]:
        raise AdapterError(f"adapter {d} expects a vocabulary of {want['vocab_size']}, {base.name} has {vocab}")
    if not allow_other_base and want.get("name") and not same_model(want["name"], base.name):
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
    adapter.meta = {**meta, **{k: v for k, v in cfg.items() if k not in RECORD_KEYS}}
    return adapter.eval()


def expected_params(adapter: Adapter) -> int:
    """The formula's count for this adapter's model; equals ``num_trainable()``."""
    return count_params(adapter.cfg, adapter.model_shape())
