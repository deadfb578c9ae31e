"""Exact trainable-parameter counts, from the formulas (no model needed).

    pt      T·H
    dpt     T·R + R·H
    smop    N·T·H + N·H (+ N with router bias)
    ptmoe   N·T·R + R·H + N·H (+ N with router bias)
    lora    Σ_layers Σ_targets r·(in + out)

The adapter's own ``num_trainable()`` counts real tensors; tests check both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import MethodConfig
from .errors import ConfigError


@dataclass(frozen=True)
class ModelShape:
    """What LoRA's count depends on; for prompt methods only ``hidden`` matters."""

    hidden: int  # H
    layers: int = 16
    heads: int = 32
    kv_heads: int = 8
    intermediate: int = 8192

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear_dims(self, target: str) -> tuple[int, int]:
        """(in_features, out_features) of a Llama-style linear layer named ``target``."""
        kv = self.kv_heads * self.head_dim
        dims = {
            "q_proj": (self.hidden, self.hidden),
            "k_proj": (self.hidden, kv),
            "v_proj": (self.hidden, kv),
            "o_proj": (self.hidden, self.hidden),
            "gate_proj": (self.hidden, self.intermediate),
            "up_proj": (self.hidden, self.intermediate),
            "down_proj": (self.intermediate, self.hidden),
        }
        if target not in dims:
            raise ConfigError("method.lora_targets", f"unknown module {target!r}; known: {sorted(dims)}")
        return dims[target]

    @classmethod
    def from_hf_config(cls, c) -> ModelShape:
        heads = getattr(c, "num_attention_heads", 1)
        return cls(
            hidden=c.hidden_size,
            layers=getattr(c, "num_hidden_layers", 1),
            heads=heads,
            kv_heads=getattr(c, "num_key_value_heads", None) or heads,
            intermediate=getattr(c, "intermediate_size", 4 * c.hidden_size),
        )


# Llama-3.2-1B, the paper's model: H=2048, 16 layers, 32 heads, 8 KV heads.
LLAMA_32_1B = ModelShape(hidden=2048, layers=16, heads=32, kv_heads=8, intermediate=8192)


def count_params(cfg: MethodConfig, shape: ModelShape) -> int:
    """Trainable parameters of ``cfg`` on a model of ``shape``."""
    H, T, N, R = shape.hidden, cfg.prompt_len, cfg.n_experts, cfg.rank
    router = N * H + (N if cfg.router_bias else 0)
    if cfg.method == "pt":
        return T * H
    if cfg.method == "dpt":
        return T * R + R * H
    if cfg.method == "smop":
        return N * T * H + router
    if cfg.method == "ptmoe":
        return N * T * R + R * H + router
    if cfg.method == "lora":
        return shape.layers * sum(cfg.lora_r * sum(shape.linear_dims(t)) for t in cfg.lora_targets)
    raise ConfigError("method.method", f"unknown method {cfg.method!r}")
