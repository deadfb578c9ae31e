"""Exact trainable-parameter counts, from the formulas (no model needed). Each method's formula is
its ``MethodSpec.count`` (in ``methods/``):

    PT      T·H
    DPT     T·R + R·H
    SMoP    N·T·H + N·H (+ N with router bias)
    PT-MoE  N·T·R + R·H + N·H (+ N with router bias)
    LoRA    Σ_layers Σ_targets r·(in + out)

The adapter's own ``num_trainable()`` counts real tensors; tests check both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import MethodConfig
from .errors import ConfigError
from .methods import method_spec


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
    return method_spec(cfg.method).count(cfg, shape)
