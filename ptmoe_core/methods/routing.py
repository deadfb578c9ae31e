"""The router's settings, shared by the routed methods (PT-MoE and SMoP): what each means, its value in
the paper, its bounds and where the Train form shows it. A new router option is one ``Option`` here (in
``ADVANCED`` when it is not in the paper: the form's "Advanced routing" section lays those out from this
table), its ``MethodConfig`` field, and what it does (``router.py``, via ``router_kwargs``, or the
trainer's loss). Configs stored before an option existed take its value from their preset, so every
preset's value must be what the code did before it (usually off)."""

from __future__ import annotations

from typing import Any

from ..checks import at_least
from ..errors import ConfigError
from .spec import Choice, MethodConfig, ModelShape, Option, Range

MAX_EXPERTS = 64
NOISE_TYPES = ("multiplicative", "additive")
# orthogonal: SMoP's random rows; domains / kmeans: fitted before training as a classifier of the training
# data sets (grouped into N) or of k-means clusters of the inputs (router.py, Router.fit_groups).
ORTHOGONAL = "orthogonal"  # the unfitted start; the others are fitted to the training data
DOMAINS = "domains"
ROUTER_INITS = (ORTHOGONAL, DOMAINS, "kmeans")

N_EXPERTS = Option("n_experts", "N — prompt experts the router chooses from.", "int")
TOP_K = Option("top_k", "Experts used per input: 1 = selective routing; 0 (or N) = every expert, mixed by the "
                            "router's probabilities.", "int", paper=1)
PROBATIONARY = Option("probationary", "Scale the chosen prompt by its router probability (gives the router a "
                                      "gradient).", "bool")
STRAIGHT_THROUGH = Option("straight_through", "Forward weight exactly 1 (1/k), gradient through the router's "
                                              "probability (default: on exactly when probationary is off).")
NOISE_STD = Option("noise_std", "σ of multiplicative noise on router logits during training (exploration).", "float",
                   paper=0.01, check=Range(0.0))  # multiplicative logit noise while training
BALANCE_LOSS = Option("balance_loss", "Weight of a load-balancing loss on the router (not in the paper; 0 = the "
                                      "paper's method). On SmolLM2 it made the router split the built-in domains more "
                                      "clearly (bench/balance_loss.py); it does not always prevent collapse.",
                      "float", paper=0.0, check=Range(0.0, 10.0))
ROUTER_BIAS = Option("router_bias", "A bias in the router's linear map (the paper counts N·H + N router parameters).",
                     paper=True)
# Router aids: not in the paper, all off in the `paper` preset (docs/routing.md measures them).
NOISE_TYPE = Option("noise_type", "Not in the paper. multiplicative: logits·(1+σε) (the paper); additive: "
                                  "logits+σε, SMoP-style exploration.", "str", paper="multiplicative",
                    check=Choice(NOISE_TYPES), label="Router noise type", choices=NOISE_TYPES, row=1)
ROUTER_NORM = Option("router_norm", "Not in the paper. Standardise the router's input with the training inputs' "
                                    "mean and std (stored with the adapter), so the router sees how inputs differ, "
                                    "not what they share.", "bool", paper=False,
                     label="Standardise router input", elem_id="pt-router-norm")
ROUTER_LR_MULT = Option("router_lr_mult", "Not in the paper. The router's learning rate = this × the prompt's "
                                          "(1 = the paper; 0 = the router stays as initialised).", "float", paper=1.0,
                        check=Range(0.0, 1000.0),
                        label="Router LR multiplier", elem_id="pt-router-lr")
BIAS_BALANCE = Option("bias_balance", "Not in the paper. Step of a per-expert selection bias nudged toward equal "
                                      "load after each step (balancing without an extra loss; 0 = off).", "float",
                      paper=0.0, check=Range(0.0, 1.0), label="Selection-bias balancing", row=1)
MI_LOSS = Option("mi_loss", "Not in the paper. Weight of a term that rewards confident per-input routing that uses "
                            "every expert overall (mutual information; 0 = off).", "float", paper=0.0,
                 check=Range(0.0, 10.0), label="Mutual-information term", row=1)

ROUTER_INIT = Option("router_init", "Not in the paper. How the router starts: orthogonal = random rows (SMoP's); "
                                    "domains = a classifier of the training data sets (grouped into N) fitted before "
                                    "training; kmeans = of k-means clusters of the inputs.", "str", paper=ORTHOGONAL,
                     check=Choice(ROUTER_INITS), label="Router start", choices=ROUTER_INITS, row=2)
ROUTER_INIT_CONFIDENCE = Option("router_init_confidence", "Not in the paper. With a fitted router start: the mean "
                                                          "probability it gives each input's own group (the chosen "
                                                          "prompt's probationary scale).", "float", paper=0.6,
                                label="Fitted router confidence", row=2)
ROUTER_ANCHOR = Option("router_anchor", "Not in the paper. With a fitted router start: weight of a loss that keeps "
                                        "each training input on the expert the fitted router chose for it, while the "
                                        "router's confidence still learns (0 = off). On SmolLM2 at weight 1 it did not "
                                        "keep held-out questions on their fitted expert (docs/routing_study.md); a "
                                        "fixed router (router_lr_mult 0) does.", "float", paper=0.0,
                       check=Range(0.0, 10.0), label="Keep the fitted split", row=2)

# The Train form's "Advanced routing" section, in the form's order.
ADVANCED = (NOISE_TYPE, ROUTER_NORM, ROUTER_LR_MULT, BIAS_BALANCE, MI_LOSS, ROUTER_INIT, ROUTER_INIT_CONFIDENCE,
            ROUTER_ANCHOR)
# Every router setting, in the order their rules are checked.
OPTIONS = (N_EXPERTS, TOP_K, PROBATIONARY, STRAIGHT_THROUGH, NOISE_STD, BALANCE_LOSS, NOISE_TYPE, ROUTER_LR_MULT,
           BIAS_BALANCE, MI_LOSS, ROUTER_BIAS, ROUTER_NORM, ROUTER_INIT, ROUTER_INIT_CONFIDENCE, ROUTER_ANCHOR)
# What a model card of a method without a router leaves out (the core router settings; the aids, stored
# with every config, have always been listed).
UNROUTED_HIDDEN = ("n_experts", "top_k", "probationary", "straight_through", "noise_std", "router_bias",
                   "balance_loss", "expert_perturb", "router_init", "router_init_confidence", "router_anchor")


def validate(cfg: MethodConfig) -> None:
    """The router's rules: 0 ≤ k ≤ N ≤ 64 (k = 0: every expert), then each option's own bounds."""
    at_least("method.n_experts", cfg.n_experts, 1)
    if cfg.n_experts > MAX_EXPERTS:
        raise ConfigError("method.n_experts", f"{cfg.n_experts} experts is too many (max {MAX_EXPERTS})")
    if not 0 <= cfg.top_k <= cfg.n_experts:
        raise ConfigError("method.top_k", f"top_k={cfg.top_k} must be 0 (every expert) or between 1 and "
                          f"n_experts={cfg.n_experts}")
    for option in OPTIONS:
        option.validate(cfg)
    # The confidence only shapes a fitted start (router_init other than orthogonal); checking it otherwise
    # would refuse every N = 1 config, where no value lies strictly between 1/N = 1 and 1. With one expert
    # there is nothing to fit (the trainer skips it), so a preset's fitted start still allows N = 1.
    if cfg.router_init != ORTHOGONAL and cfg.n_experts > 1 and not 1 / cfg.n_experts < cfg.router_init_confidence < 1:
        raise ConfigError("method.router_init_confidence", f"must be between 1/N={1 / cfg.n_experts:.3g} and 1 "
                          f"(exclusive), got {cfg.router_init_confidence}")
    if cfg.router_anchor > 0 and cfg.router_init == ORTHOGONAL:
        raise ConfigError("method.router_anchor", f"keeps the split of a fitted router start, but router_init is "
                          f"{ORTHOGONAL!r}; set router_init to {DOMAINS!r} or 'kmeans', or router_anchor to 0")


def count(cfg: MethodConfig, shape: ModelShape) -> int:
    """The router's parameters: W ∈ R^{N×H} (+ b ∈ R^N)."""
    N, H = cfg.n_experts, shape.hidden
    return N * H + (N if cfg.router_bias else 0)


def experts_per_input(top_k: int, n_experts: int) -> int:
    """How many experts an input uses: ``top_k``, where 0 means every one of the ``n_experts``."""
    return top_k or n_experts


def router_kwargs(cfg: MethodConfig) -> dict[str, Any]:
    """``router.Router``'s keyword arguments for ``cfg``."""
    return {"top_k": experts_per_input(cfg.top_k, cfg.n_experts), "probationary": cfg.probationary, "straight_through": cfg.straight_through,
            "noise_std": cfg.noise_std, "noise_type": cfg.noise_type, "bias": cfg.router_bias,
            "norm": cfg.router_norm, "bias_balance": cfg.bias_balance}
