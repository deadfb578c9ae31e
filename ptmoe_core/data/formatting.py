"""Examples -> token ids with exact label and router masks, through the model's chat template.

The sequence is built from separately tokenized segments (template text, context, question,
answer), so each mask is exact by construction rather than recovered from character offsets:

    [template + instruction + "Passage:"] [" " + context] ["\\n\\nQuestion:"] [" " + question]
    [end of user turn + assistant header] [answer] [end-of-turn token]

``router_mask`` is 1 on the context and question segments only (the router should see the
task input, not the shared boilerplate); ``labels`` are -100 except on the answer and the
end-of-turn token after it (so the model learns to stop). Without a chat template the plain
form ``instruction / Passage: / Question: ... / Answer:`` is used.

Truncation shortens the context first, then the question, never the answer's head (the answer is
capped at ``max_answer_tokens``). When the example is encoded with its answer and the answer occurs in the
context, the kept window is centred on it, so training never asks for a span that was cut away;
without the answer (evaluation) the head of the context is kept, so gold answers never choose
the model's input. If the question and template alone exceed ``max_source_tokens`` the context
is dropped and the question keeps its last tokens (where a question says what it asks; at least
``MIN_QUESTION_TOKENS``). Text is cut to ``CHARS_PER_TOKEN`` characters per token of budget before
it is tokenized, so a megabyte pasted as one question costs no more than a full-length one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..config import DataConfig

IGNORE_INDEX = -100
DEFAULT_INSTRUCTIONS = {
    "span": "Answer with a short span copied from the passage.",
    "number": "Solve the problem. End with the final number.",
    "text": "Answer the question with a short phrase.",
}
_SLOT = {"context": "\x00PTMOE_CONTEXT\x00", "question": "\x00PTMOE_QUESTION\x00", "answer": "\x00PTMOE_ANSWER\x00"}
_SLOT_RE = re.compile("(" + "|".join(re.escape(v) for v in _SLOT.values()) + ")")
_SLOT_NAME = {v: k for k, v in _SLOT.items()}
MIN_QUESTION_TOKENS = 8  # kept even when the template alone fills max_source_tokens
CHARS_PER_TOKEN = 64  # a generous bound on the characters one token covers (long whitespace runs)


@dataclass
class FormatConfig:
    """Sequence lengths (defaults fit SmolLM2 on a CPU), an optional fixed instruction, and how a
    number answer is read back (``metrics.NUMBER_MATCHES``)."""

    max_source_tokens: int = 256  # everything before the answer, template included
    max_answer_tokens: int = 32
    instruction: str | None = None  # None: the default instruction of each example's answer type
    number_match: str = "lenient"

    @classmethod
    def from_data_config(cls, dc: DataConfig) -> FormatConfig:
        return cls(max_source_tokens=dc.max_source_tokens, max_answer_tokens=dc.max_answer_tokens,
                   instruction=dc.instruction, number_match=dc.number_match)

    def instruction_for(self, example: Mapping[str, Any]) -> str:
        return self.instruction or DEFAULT_INSTRUCTIONS.get(str(example.get("answer_type")), DEFAULT_INSTRUCTIONS["text"])


def user_message(instruction: str, has_context: bool, question: str, context: str = "") -> str:
    """The user turn's text (with slot markers when called with them); one place defines the layout."""
    body = f"Passage:{context}\n\nQuestion:{question}" if has_context else f"Question:{question}"
    return f"{instruction}\n\n{body}" if instruction else body


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


@dataclass(frozen=True)
class Layout:
    """The template cut at the slots: ("ids", token ids), ("slot", name) and, with the answer, the
    ("end", end-of-turn ids) piece."""

    pieces: tuple[tuple[str, Any], ...]
    chat: bool  # False: the plain "Question: ...\nAnswer:" form


@functools.lru_cache(maxsize=256)
def _layout(tokenizer, instruction: str, has_context: bool, with_answer: bool) -> Layout:
    """Tokenized once per (tokenizer, instruction, shape): templates are the same for every example."""
    expected = (["context"] if has_context else []) + ["question"] + (["answer"] if with_answer else [])
    pieces = None
    if has_chat_template(tokenizer):
        pieces = _pieces(tokenizer, _render_chat(tokenizer, instruction, has_context, with_answer))
        if [v for k, v in pieces if k == "slot"] != expected:
            pieces = None  # a template that rewrites or drops message text: fall back to plain
    chat = pieces is not None
    if pieces is None:
        pieces = _pieces(tokenizer, _render_plain(tokenizer, instruction, has_context, with_answer))
    if with_answer:  # what follows the answer: keep up to and including the end-of-turn token
        tail = list(pieces[-1][1]) if pieces[-1][0] == "ids" else []
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        cut = next((i for i, t in enumerate(tail) if t in special), None)
        tail = [tokenizer.eos_token_id] if cut is None else tail[: cut + 1]
        pieces = (pieces[:-1] if pieces[-1][0] == "ids" else pieces) + [("end", tuple(tail))]
    return Layout(tuple(pieces), chat)


def _render_chat(tokenizer, instruction: str, has_context: bool, with_answer: bool) -> str:
    messages = [{"role": "user", "content": user_message(instruction, has_context, _SLOT["question"], _SLOT["context"])}]
    if with_answer:
        messages.append({"role": "assistant", "content": _SLOT["answer"]})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not with_answer)


def _render_plain(tokenizer, instruction: str, has_context: bool, with_answer: bool) -> str:
    text = user_message(instruction, has_context, _SLOT["question"], _SLOT["context"]) + "\nAnswer:"
    if with_answer:
        text += _SLOT["answer"]  # the answer's own leading space is part of its segment
    if getattr(tokenizer, "bos_token", None) and _adds_bos(tokenizer):
        text = tokenizer.bos_token + text
    return text


def _pieces(tokenizer, text: str) -> list[tuple[str, Any]]:
    pieces: list[tuple[str, Any]] = []
    for chunk in _SLOT_RE.split(text):
        if chunk in _SLOT_NAME:
            pieces.append(("slot", _SLOT_NAME[chunk]))
        elif chunk:
            pieces.append(("ids", tuple(tokenizer.encode(chunk, add_special_tokens=False))))
    return pieces


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer("a").input_ids
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def encode_example(tokenizer, example: Mapping[str, Any], cfg: FormatConfig, with_answer: bool) -> dict[str, Any]:
    """``input_ids``, ``attention_mask``, ``labels`` and ``router_mask`` of one example, and its
    ``domain`` (a string ``collate`` leaves out, so the trainer can report routing by domain).

    With the answer (training): the answer tokens and the end-of-turn token are labelled.
    Without (generation): the sequence ends with the assistant header; labels are all -100.
    """
    instruction = cfg.instruction_for(example)
    question = str(example.get("question") or "").strip()
    context = str(example.get("context") or "").strip()
    answers = list(example.get("answers") or [])
    answer = str(answers[0]).strip() if answers else ""
    q_budget = max(cfg.max_source_tokens - _fixed_length(_layout(tokenizer, instruction, False, with_answer)),
                   MIN_QUESTION_TOKENS)
    question = " " + question[-q_budget * CHARS_PER_TOKEN:]
    question_ids = tokenizer.encode(question, add_special_tokens=False)[-q_budget:]

    ctx_ids: list[int] = []
    if context:
        fixed = _fixed_length(_layout(tokenizer, instruction, True, with_answer))
        budget = cfg.max_source_tokens - fixed - len(question_ids)
        if budget > 0:
            ctx_ids = _context_window(tokenizer, " " + context, budget, answers if with_answer else [])
    layout = _layout(tokenizer, instruction, bool(ctx_ids), with_answer)
    answer_ids: list[int] = []
    if with_answer:  # after a chat header's newline the answer starts bare; after "Answer:" with a space
        answer_ids = tokenizer.encode(answer if layout.chat else " " + answer, add_special_tokens=False)
        answer_ids = answer_ids[: cfg.max_answer_tokens]

    ids: list[int] = []
    labels: list[int] = []
    router: list[int] = []
    for kind, value in layout.pieces:
        if kind == "slot":
            seg = {"context": ctx_ids, "question": question_ids, "answer": answer_ids}[value]
            ids += seg
            labels += seg if value == "answer" else [IGNORE_INDEX] * len(seg)
            router += [1 if value in ("context", "question") else 0] * len(seg)
        else:
            ids += list(value)
            labels += list(value) if kind == "end" else [IGNORE_INDEX] * len(value)
            router += [0] * len(value)
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels, "router_mask": router,
            "domain": str(example.get("domain") or "")}


def _fixed_length(layout: Layout) -> int:
    """Template tokens that count against ``max_source_tokens`` (not the answer's end token)."""
    return sum(len(v) for k, v in layout.pieces if k == "ids")


def _context_window(tokenizer, context: str, budget: int, answers: Sequence[str]) -> list[int]:
    """At most ``budget`` context tokens: the head, or a window centred on the first gold answer
    found in the passage (exact, then ignoring case) when answers are given."""
    golds = [str(a) for a in answers if str(a).strip()]
    max_chars = budget * CHARS_PER_TOKEN
    if len(context) > max_chars:  # tokenize only a window that can hold the budget (around the answer)
        at = next((p for p in (context.find(a) for a in golds) if p >= 0), 0)
        start = max(0, min(at - max_chars // 2, len(context) - max_chars))
        context = context[start : start + max_chars]
    enc = tokenizer(context, add_special_tokens=False, return_offsets_mapping=bool(answers))
    ids = enc["input_ids"]
    if len(ids) <= budget:
        return ids
    found = [(context.find(a), a) for a in golds] + [(context.lower().find(a.lower()), a) for a in golds]
    pos, answer = next(((p, a) for p, a in found if p >= 0), (-1, ""))
    if pos >= 0:
        offsets = enc["offset_mapping"]
        first = next((i for i, (_, e) in enumerate(offsets) if e > pos), 0)
        last = next((i for i, (_, e) in enumerate(offsets) if e >= pos + len(answer)), len(ids) - 1)
        span = last - first + 1
        if span <= budget:
            start = max(0, min(first - (budget - span) // 2, len(ids) - budget))
            return ids[start : start + budget]
    return ids[:budget]


def collate(features: Sequence[Mapping[str, Sequence[int]]], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad encoded examples into a batch: ids with ``pad_id``, labels with -100, masks with 0.
    Fields that are not token sequences (``domain``) are not part of the batch."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if not features:
        raise ValueError("collate needs at least one example")
    width = max(len(f["input_ids"]) for f in features)
    fill = {"input_ids": pad_id, "labels": IGNORE_INDEX}
    out: dict[str, torch.Tensor] = {}
    for key, first in features[0].items():
        if isinstance(first, str):
            continue
        value = fill.get(key, 0)
        rows = []
        for f in features:
            seq = list(f[key])
            pad = [value] * (width - len(seq))
            rows.append(pad + seq if padding_side == "left" else seq + pad)
        out[key] = torch.tensor(rows, dtype=torch.long)
    return out


def padding_groups(lengths: Sequence[int], overhead: int = 32) -> list[list[int]]:
    """Split one batch into sub-batches of similar length: positions into ``lengths``, grouped so that
    padded tokens (rows × longest row) plus ``overhead`` per sub-batch (the cost of one more forward
    call, in tokens) is smallest. A mixed batch (one long reading passage, three short sums) then
    costs about its real tokens instead of four long rows. Exact: sorted order + dynamic programming."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the j shortest rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):  # rows i..j-1 form the last group; the longest is row j-1
            cost = best[i] + (j - i) * lengths[order[j - 1]] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]
