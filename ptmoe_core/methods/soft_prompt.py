"""The settings every soft-prompt method shares (T, the initialisation) and the decomposition's rank R."""

from __future__ import annotations

from collections.abc import Callable

from ..checks import at_least
from ..errors import ConfigError
from .spec import Choice, MethodConfig, Option, Range

MAX_PROMPT_LEN = 512
# text: the instruction repeated to T (rank ≈ its length); text_vocab: the instruction once, then a
# vocabulary sample (full rank); inputs: tokens drawn from the training inputs (full rank).
# uniform: every prompt factor uniform in (-0.5, 0.5), no SVD (DPT's own init; Lester et al.'s random).
PROMPT_INITS = ("text", "text_vocab", "inputs", "vocab", "random", "uniform")

PROMPT_LEN = Option("prompt_len", "T — virtual tokens prepended to every input.", "int")
RANK = Option("rank", "R — rank of the shared decomposition (R ≤ T).", "int")
INIT = Option("init", "SVD of token embeddings. text: the instruction repeated to T (the paper's; rank ≈ its length); "
                      "text_vocab: the instruction, then vocabulary (full rank); inputs: training-input tokens; "
                      "vocab: random tokens; random: no SVD.", "str", paper="text",
             check=Choice(PROMPT_INITS))  # the instruction, repeated to T
INIT_TEXT = Option("init_text", "The text the prompt starts from (default: the task instruction, else a vocabulary "
                                "sample).")
# Relative std of per-expert noise on the experts' starting prompts, so experts can diverge.
EXPERT_PERTURB = Option("expert_perturb", "Relative std of per-expert noise on the experts' starting prompts.",
                        check=Range(0.0))
OPTIONS = (PROMPT_LEN, INIT, INIT_TEXT)


def check_prompt_len(cfg: MethodConfig) -> None:
    at_least("method.prompt_len", cfg.prompt_len, 1)
    if cfg.prompt_len > MAX_PROMPT_LEN:
        raise ConfigError("method.prompt_len",
                          f"{cfg.prompt_len} virtual tokens is too long (max {MAX_PROMPT_LEN})")


def check_rank(cfg: MethodConfig) -> None:
    at_least("method.rank", cfg.rank, 1)
    if cfg.rank > cfg.prompt_len:
        raise ConfigError("method.rank", f"rank R={cfg.rank} must not exceed the prompt length T={cfg.prompt_len}")


def validator(*rules: Callable[[MethodConfig], None]) -> Callable[[MethodConfig], None]:
    """A soft-prompt method's rules: T first, then ``rules``, then the expert perturbation (which every
    soft-prompt method checks, as it always has)."""

    def validate(cfg: MethodConfig) -> None:
        check_prompt_len(cfg)
        for rule in rules:
            rule(cfg)
        EXPERT_PERTURB.validate(cfg)

    return validate


def card_lists_all_but(*hidden: str) -> Callable[[str], bool]:
    """A soft-prompt method's card: every stored setting except LoRA's and ``hidden``."""
    return lambda key: not key.startswith("lora_") and key not in hidden
