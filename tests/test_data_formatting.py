"""Prompt formatting: exact router / label masks, truncation of the context only, collation."""

from __future__ import annotations

import copy

import pytest
import torch

from ptmoe_core.config import DataConfig
from ptmoe_core.data.formatting import IGNORE_INDEX, MIN_QUESTION_TOKENS, FormatConfig, collate, encode_example
from ptmoe_core.models import load_tokenizer

QA = {"id": "1", "domain": "d", "question": "Who wrote the letter to Rollo?",
      "context": "In 911 the king wrote a letter to Rollo. Later, the duke answered the king in person.",
      "answers": ["the king", "king"], "answer_type": "span", "split": "test", "ood": False}
MATH = {"id": "2", "domain": "m", "question": "Tom has 3 apples and buys 4 more. How many now?", "context": "",
        "answers": ["7"], "answer_type": "number", "split": "test", "ood": False}


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny-random")


@pytest.fixture(scope="module")
def plain_tok(tok):
    t = copy.deepcopy(tok)
    t.chat_template = None
    return t


def runs(mask: list[int]) -> list[tuple[int, int]]:
    """Contiguous [start, end) runs of 1s."""
    out, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    return out


def masked_texts(tok, enc) -> list[str]:
    return [tok.decode(enc["input_ids"][a:b]).strip() for a, b in runs(enc["router_mask"])]


def label_text(tok, enc) -> str:
    return tok.decode([t for t in enc["labels"] if t != IGNORE_INDEX])


@pytest.mark.parametrize("which", ["chat", "plain"])
def test_router_mask_is_exactly_question_and_context(tok, plain_tok, which):
    t = tok if which == "chat" else plain_tok
    enc = encode_example(t, QA, FormatConfig(), with_answer=True)
    assert enc.pop("domain") == "d"  # carried for routing-by-domain reports, not a token sequence
    assert len({len(v) for v in enc.values()}) == 1
    assert masked_texts(t, enc) == [QA["context"], QA["question"]]
    enc = encode_example(t, MATH, FormatConfig(), with_answer=True)
    assert masked_texts(t, enc) == [MATH["question"]]
    # the instruction / template text is not in the router mask but is in the sequence
    full = t.decode(enc["input_ids"])
    assert FormatConfig().instruction_for(MATH) in full and "Solve the problem" in full


def test_labels_are_answer_and_end_of_turn(tok, plain_tok):
    enc = encode_example(tok, QA, FormatConfig(), with_answer=True)
    assert label_text(tok, enc) == "the king<|im_end|>"
    assert enc["input_ids"][-1] == tok.convert_tokens_to_ids("<|im_end|>")  # sequence ends at the end of turn
    n_labelled = sum(t != IGNORE_INDEX for t in enc["labels"])
    assert enc["labels"][-n_labelled:] == enc["input_ids"][-n_labelled:]  # labels sit on the last tokens
    assert all(m == 0 for m in enc["router_mask"][-n_labelled:])
    enc = encode_example(plain_tok, MATH, FormatConfig(), with_answer=True)
    assert label_text(plain_tok, enc) == " 7" + plain_tok.eos_token
    assert plain_tok.decode(enc["input_ids"]).endswith("How many now?\nAnswer: 7" + plain_tok.eos_token)


def test_chat_template_and_generation_header(tok):
    enc = encode_example(tok, MATH, FormatConfig(), with_answer=False)
    text = tok.decode(enc["input_ids"])
    assert text.startswith("<|im_start|>system\n")  # SmolLM2's default system prompt
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert all(t == IGNORE_INDEX for t in enc["labels"])
    # the prompt for generation is the training sequence up to the answer
    train = encode_example(tok, MATH, FormatConfig(), with_answer=True)
    assert train["input_ids"][: len(enc["input_ids"])] == enc["input_ids"]
    assert train["router_mask"][: len(enc["input_ids"])] == enc["router_mask"]


def test_instruction_override_and_from_data_config(tok):
    cfg = FormatConfig.from_data_config(DataConfig(max_source_tokens=99, max_answer_tokens=5, instruction="Be brief."))
    assert (cfg.max_source_tokens, cfg.max_answer_tokens, cfg.instruction) == (99, 5, "Be brief.")
    text = tok.decode(encode_example(tok, QA, cfg, with_answer=False)["input_ids"])
    assert "Be brief." in text and "short span" not in text
    assert FormatConfig().instruction_for(QA) == "Answer with a short span copied from the passage."


def test_truncation_cuts_context_only(tok):
    long = dict(QA, context=" ".join(f"Filler sentence number {i} says nothing." for i in range(60))
                + " The king wrote to Rollo. " + " ".join(f"More filler {i}." for i in range(60)))
    cfg = FormatConfig(max_source_tokens=120, max_answer_tokens=32)
    for with_answer in (True, False):
        enc = encode_example(tok, long, cfg, with_answer)
        n_answer = sum(t != IGNORE_INDEX for t in enc["labels"])
        assert len(enc["input_ids"]) - n_answer == 120  # the source is exactly at the limit
        ctx, question = masked_texts(tok, enc)
        assert question == QA["question"]  # never cut
        assert ctx in long["context"] and len(ctx) < len(long["context"])
        if with_answer:  # training: the window keeps the answer span
            assert "The king wrote to Rollo" in ctx and label_text(tok, enc) == "the king<|im_end|>"
        else:  # evaluation: the head of the passage, whatever the gold answer
            assert long["context"].startswith(ctx)


def test_question_longer_than_budget_drops_context_and_keeps_the_question_tail(tok):
    q = "first " + " ".join(["why"] * 80) + " last?"
    cfg = FormatConfig(max_source_tokens=40)
    enc = encode_example(tok, dict(QA, question=q), cfg, with_answer=False)
    (shown,) = masked_texts(tok, enc)
    assert shown.endswith("why last?") and "first" not in shown
    assert MIN_QUESTION_TOKENS <= sum(enc["router_mask"]) <= cfg.max_source_tokens  # bounded, not 80+ tokens
    assert "Passage:" not in tok.decode(enc["input_ids"])


def test_a_megabyte_question_costs_a_bounded_sequence(tok):
    """A pasted megabyte is cut before tokenizing and ends as at most the source budget."""
    q = "word " * 200_000 + "What is it?"
    enc = encode_example(tok, dict(QA, question=q, context="x " * 100_000), FormatConfig(max_source_tokens=64),
                         with_answer=True)
    assert sum(enc["router_mask"]) <= 64 and len(enc["input_ids"]) <= 64 + 32 + 1  # source + answer + end
    assert tok.decode([t for t, m in zip(enc["input_ids"], enc["router_mask"], strict=True) if m]).endswith("it?")


def test_answer_capped_at_max_answer_tokens(tok):
    ex = dict(MATH, answers=["one two three four five six seven eight nine ten"], answer_type="text")
    enc = encode_example(tok, ex, FormatConfig(max_answer_tokens=3), with_answer=True)
    labelled = [t for t in enc["labels"] if t != IGNORE_INDEX]
    assert len(labelled) == 4  # three answer tokens + the end-of-turn token
    assert tok.decode(labelled[:3]) == "one two three"


def test_collate_pads_each_key_correctly(tok):
    a = encode_example(tok, QA, FormatConfig(), with_answer=True)
    b = encode_example(tok, MATH, FormatConfig(), with_answer=True)
    width = max(len(a["input_ids"]), len(b["input_ids"]))
    short = a if len(a["input_ids"]) < width else b
    n = width - len(short["input_ids"])
    for side in ("right", "left"):
        batch = collate([a, b], pad_id=7, padding_side=side)
        assert set(batch) == {"input_ids", "attention_mask", "labels", "router_mask"}  # not the domain
        assert all(v.shape == (2, width) and v.dtype == torch.long for v in batch.values())
        row = 0 if short is a else 1
        pad = slice(width - n, width) if side == "right" else slice(0, n)
        assert (batch["input_ids"][row, pad] == 7).all()
        assert (batch["labels"][row, pad] == IGNORE_INDEX).all()
        assert (batch["attention_mask"][row, pad] == 0).all() and (batch["router_mask"][row, pad] == 0).all()
        assert batch["attention_mask"][row].sum() == len(short["input_ids"])
    with pytest.raises(ValueError):
        collate([a], pad_id=0, padding_side="middle")
