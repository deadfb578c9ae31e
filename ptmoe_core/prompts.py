"""Soft-prompt methods behind one interface: PT, DPT, SMoP and PT-MoE.

Each method is an ``nn.Module`` that turns (input ids, mask, labels, router mask) into
(inputs_embeds, mask, labels, routing). The frozen embedding table is held by reference, not as
a submodule, so a method's ``state_dict`` is exactly its trainable parameters. Each method's
description (settings, presets, parameter formula, the class it builds) is its module in ``methods/``.

    PT      P ∈ R^{T×H}
    DPT     P = A · B,            A ∈ R^{T×R}, B ∈ R^{R×H}
    SMoP    P = Σ_i w_i P_i,      P_i ∈ R^{T×H}, router on the mean input embedding
    PT-MoE  P = (Σ_i w_i A_i) · B, A ∈ R^{N×T×R}, shared B ∈ R^{R×H}
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import MethodConfig
from .errors import ConfigError
from .methods import method_spec
from .methods.routing import router_kwargs
from .router import Router, RoutingInfo, masked_mean

IGNORE_INDEX = -100
VOCAB_SAMPLE_TOP = 5000  # "vocab" init samples from the first (most frequent, BPE-ordered) tokens


@dataclass
class PromptedInputs:
    """Model-ready inputs with the soft prompt prepended."""

    inputs_embeds: Tensor  # b×(T+L)×H
    attention_mask: Tensor  # b×(T+L)
    labels: Tensor | None  # b×(T+L), -100 on the prompt
    routing: RoutingInfo | None


def init_embeddings(
    embed: nn.Embedding, T: int, method: str, token_ids: list[int] | None, generator: torch.Generator
) -> Tensor:
    """E ∈ R^{T×H} from ``token_ids`` (the init text's tokens, or for "inputs" a pool of the
    training inputs' tokens):
      text        the text repeated/truncated to T: rank ≈ the text's length (the paper's choice)
      text_vocab  the text once, then a vocabulary sample: rank T, so all R SVD directions start live
      inputs      T tokens drawn from the pool (distinct where it allows): rank T
      vocab       a vocabulary sample;  random: Gaussian noise at the embedding table's scale
      uniform     uniform in (-0.5, 0.5) (Lester et al.'s random init; DPT's for its factors)."""
    W = embed.weight.detach().float()  # V×H
    if method == "random":
        return torch.randn(T, W.shape[1], generator=generator) * W.std()
    if method == "uniform":
        return _uniform((T, W.shape[1]), generator)
    vocab = min(VOCAB_SAMPLE_TOP, W.shape[0])
    if method == "text" and token_ids:
        ids = torch.tensor(token_ids, dtype=torch.long)
        ids = ids.repeat((T + len(ids) - 1) // len(ids))[:T]
    elif method == "text_vocab" and token_ids:
        head = torch.tensor(token_ids[:T], dtype=torch.long)
        ids = torch.cat([head, torch.randint(0, vocab, (T - len(head),), generator=generator)])
    elif method == "inputs" and token_ids:
        pool = torch.tensor(sorted(set(token_ids)), dtype=torch.long)
        if len(pool) >= T:
            ids = pool[torch.randperm(len(pool), generator=generator)[:T]]
        else:
            ids = pool[torch.randint(0, len(pool), (T,), generator=generator)]
    else:  # "vocab", or a text/inputs init with nothing to use
        ids = torch.randint(0, vocab, (T,), generator=generator)
    return W[ids.to(W.device)].cpu().clone()


def svd_factors(E: Tensor, R: int) -> tuple[Tensor, Tensor]:
    """E (T×H) ≈ A·B with A = U_R √S_R (T×R), B = √S_R V_Rᵀ (R×H)."""
    U, S, Vh = torch.linalg.svd(E.float(), full_matrices=False)  # U T×K, S K, Vh K×H, K=min(T,H)
    if R > S.numel():
        raise ConfigError("method.rank", f"rank R={R} exceeds min(T, H)={S.numel()} for this model")
    root = S[:R].sqrt()
    return U[:, :R] * root, root[:, None] * Vh[:R]


def _uniform(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=generator) - 0.5  # U(-0.5, 0.5)


def prompt_factors(E: Tensor, cfg: MethodConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(A T×R, B R×H): the SVD factors of E, or for ``init="uniform"`` both uniform in (-0.5, 0.5)
    as DPT's public code starts them (github.com/XYaoooo/DPT, modeling_t5.py)."""
    if cfg.init == "uniform":
        return _uniform((cfg.prompt_len, cfg.rank), generator), _uniform((cfg.rank, E.shape[1]), generator)
    return svd_factors(E, cfg.rank)


def _perturbed(x: Tensor, n: int, scale: float, generator: torch.Generator) -> Tensor:
    """n copies of x (n×…), each with independent noise of std ``scale · std(x)``: lets experts diverge."""
    copies = x.unsqueeze(0).repeat(n, *([1] * x.dim()))
    if scale > 0:
        copies = copies + torch.randn(copies.shape, generator=generator) * (scale * x.std())
    return copies


class SoftPromptMethod(nn.Module):
    """Base class: subclasses define ``prompt(x, force_expert) -> (P b×T×H, routing)``."""

    routed = False

    def __init__(self, embed: nn.Embedding, cfg: MethodConfig):
        super().__init__()
        self._embed = (embed,)  # a tuple hides the frozen table from .parameters() and state_dict
        self.cfg = cfg
        self.T = cfg.prompt_len

    @property
    def embed(self) -> nn.Embedding:
        return self._embed[0]

    def prompt(self, x: Tensor, force_expert: int | None) -> tuple[Tensor, RoutingInfo | None]:
        raise NotImplementedError

    def forward(
        self,
        input_ids: Tensor,  # b×L
        attention_mask: Tensor,  # b×L
        labels: Tensor | None = None,  # b×L
        router_mask: Tensor | None = None,  # b×L, 1 on question/context tokens
        force_expert: int | None = None,
    ) -> PromptedInputs:
        if router_mask is None and labels is not None:
            # The attention mask covers the answer tokens: routing on them would leak the answer.
            raise ValueError("router_mask is required with labels (1 on the question/context tokens only); "
                             "encode examples with data.formatting.encode_example")
        X = self.embed(input_ids)  # b×L×H, frozen
        # Without labels (plain inference on a prompt), every attended token is input.
        x = masked_mean(X, router_mask if router_mask is not None else attention_mask)  # b×H, the router input
        P, routing = self.prompt(x, force_expert)  # b×T×H
        b = input_ids.shape[0]
        ones = attention_mask.new_ones(b, self.T)
        embeds = torch.cat([P.to(X.dtype), X], dim=1)  # prompt first
        mask = torch.cat([ones, attention_mask], dim=1)
        lab = None
        if labels is not None:
            lab = torch.cat([labels.new_full((b, self.T), IGNORE_INDEX), labels], dim=1)
        return PromptedInputs(embeds, mask, lab, routing)


class PromptTuning(SoftPromptMethod):
    """PT (Lester et al. 2021): one T×H prompt shared by every input."""

    def __init__(self, embed: nn.Embedding, cfg: MethodConfig, E: Tensor, generator: torch.Generator):
        super().__init__(embed, cfg)
        self.prompt_embeddings = nn.Parameter(E.clone())  # T×H

    def prompt(self, x, force_expert=None):
        return self.prompt_embeddings.unsqueeze(0).expand(x.shape[0], -1, -1), None


class DecomposedPrompt(SoftPromptMethod):
    """DPT (Xiao et al. 2023): one prompt as A·B, no router; SVD-initialised, or uniform as DPT's code."""

    def __init__(self, embed: nn.Embedding, cfg: MethodConfig, E: Tensor, generator: torch.Generator):
        super().__init__(embed, cfg)
        A, B = prompt_factors(E, cfg, generator)
        self.A = nn.Parameter(A)  # T×R
        self.B = nn.Parameter(B)  # R×H

    def prompt(self, x, force_expert=None):
        P = self.A @ self.B  # T×H
        return P.unsqueeze(0).expand(x.shape[0], -1, -1), None


class SMoPPrompt(SoftPromptMethod):
    """SMoP (Choi et al. 2023): N full prompts and a router; top-1 × probability by default."""

    routed = True

    def __init__(self, embed: nn.Embedding, cfg: MethodConfig, E: Tensor, generator: torch.Generator):
        super().__init__(embed, cfg)
        H = E.shape[1]
        self.prompts = nn.Parameter(_perturbed(E, cfg.n_experts, cfg.expert_perturb, generator))  # N×T×H
        self.router = _make_router(H, cfg, generator)

    def prompt(self, x, force_expert=None):
        r = self.router(x, force_expert)
        w = r.weights.to(self.prompts.dtype)  # b×N
        return torch.einsum("bn,nth->bth", w, self.prompts), r


class PTMoEPrompt(SoftPromptMethod):
    """PT-MoE: expert i's prompt is A_i · B; the router's weights mix the A_i before the shared B."""

    routed = True

    def __init__(self, embed: nn.Embedding, cfg: MethodConfig, E: Tensor, generator: torch.Generator):
        super().__init__(embed, cfg)
        A, B = prompt_factors(E, cfg, generator)  # A T×R, B R×H
        self.A = nn.Parameter(_perturbed(A, cfg.n_experts, cfg.expert_perturb, generator))  # N×T×R
        self.B = nn.Parameter(B)  # R×H
        self.router = _make_router(E.shape[1], cfg, generator)

    def prompt(self, x, force_expert=None):
        r = self.router(x, force_expert)
        w = r.weights.to(self.A.dtype)  # b×N
        A_mix = torch.einsum("bn,ntr->btr", w, self.A)  # b×T×R = Σ_i w_i A_i
        return A_mix @ self.B, r  # b×T×H


# The classes a ``MethodSpec.module`` names (each method's module in ``methods/``).
MODULES: dict[str, type[SoftPromptMethod]] = {
    c.__name__: c for c in (PromptTuning, DecomposedPrompt, SMoPPrompt, PTMoEPrompt)
}


def _make_router(H: int, cfg: MethodConfig, generator: torch.Generator) -> Router:
    return Router(H, cfg.n_experts, generator=generator, **router_kwargs(cfg))


def build_prompt_method(
    embed: nn.Embedding, cfg: MethodConfig, init_token_ids: list[int] | None, seed: int = 0
) -> SoftPromptMethod:
    """Construct and initialise a soft-prompt method (deterministic for a seed)."""
    g = torch.Generator().manual_seed(seed)
    E = init_embeddings(embed, cfg.prompt_len, cfg.init, init_token_ids, g)  # T×H
    module = method_spec(cfg.method).module
    if module is None:
        raise ConfigError("method.method", f"{cfg.method} is not a soft-prompt method")
    return MODULES[module](embed, cfg, E, g)
