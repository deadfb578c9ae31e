"""Routed generation on tiny-random: cache == recompute, batching/padding changes nothing, routing info."""

from __future__ import annotations

import pytest
import torch

from ptmoe_core.adapter import build_adapter
from ptmoe_core.data.formatting import FormatConfig, encode_example
from ptmoe_core.generate import generate
from tests.test_methods import small

QUESTIONS = ["What is 2 plus 2?", "Name a colour.", "How many legs does a spider have, counting carefully?"]


def encoded(tok, questions=QUESTIONS):
    fmt = FormatConfig(max_source_tokens=128, max_answer_tokens=8)
    return [encode_example(tok, {"id": str(i), "domain": "t", "question": q, "context": "", "answers": ["x"],
                                 "answer_type": "text", "split": "test", "ood": False}, fmt, with_answer=False)
            for i, q in enumerate(questions)]


@pytest.fixture(scope="module")
def trained_like(tiny_base):
    """A PT-MoE adapter moved away from its init so experts and routing differ."""
    a = build_adapter(tiny_base, small("ptmoe"), seed=2)
    with torch.no_grad():
        for p in a.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return a.eval()


@pytest.mark.parametrize("method", ["ptmoe", "lora"])
def test_cache_equals_recompute(tiny_base, method, trained_like):
    a = trained_like if method == "ptmoe" else build_adapter(tiny_base, small("lora"))
    enc = encoded(tiny_base.tokenizer)
    cached = generate(a, enc, max_new_tokens=6, use_cache=True, stop_at_eos=False)
    full = generate(a, enc, max_new_tokens=6, use_cache=False, stop_at_eos=False)
    assert [g.token_ids for g in cached] == [g.token_ids for g in full]
    assert all(len(g.token_ids) == 6 for g in cached)


def test_batched_equals_one_by_one(tiny_base, trained_like):
    enc = encoded(tiny_base.tokenizer)
    batched = generate(trained_like, enc, max_new_tokens=5, batch_size=3, stop_at_eos=False)
    single = [generate(trained_like, [e], max_new_tokens=5, stop_at_eos=False)[0] for e in enc]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    for b, s in zip(batched, single, strict=True):
        assert b.expert == s.expert
        assert b.probs == pytest.approx(s.probs, abs=1e-5)


def test_routing_info_for_each_input(tiny_base, trained_like):
    gens = generate(trained_like, encoded(tiny_base.tokenizer), max_new_tokens=3, return_router_input=True)
    for g in gens:
        assert g.expert in range(3) and len(g.probs) == 3
        assert sum(g.probs) == pytest.approx(1.0, abs=1e-5)
        assert g.confidence == pytest.approx(g.probs[g.expert]) and g.confidence == pytest.approx(max(g.probs))
        assert g.entropy >= 0 and g.latency_s > 0 and len(g.router_input) == tiny_base.hidden_size
        assert isinstance(g.text, str)


def test_force_each_expert(tiny_base, trained_like):
    enc = encoded(tiny_base.tokenizer)
    for k in range(3):
        gens = generate(trained_like, enc, max_new_tokens=4, force_expert=k, stop_at_eos=False)
        assert all(g.expert == k for g in gens)
    # tiny-random's argmax barely moves, so compare what each forced expert feeds the model: logits
    from ptmoe_core.data.formatting import collate

    batch = collate(enc, tiny_base.pad_id, padding_side="left")
    with torch.no_grad():
        logits = [trained_like(batch, force_expert=k)[0].logits[:, -1] for k in range(3)]
    assert not torch.allclose(logits[0], logits[1]) and not torch.allclose(logits[1], logits[2])
    with pytest.raises(ValueError, match="expert"):
        generate(trained_like, enc, force_expert=3)


def test_methods_without_router_return_no_routing(tiny_base):
    a = build_adapter(tiny_base, small("pt"))
    g = generate(a, encoded(tiny_base.tokenizer)[:1], max_new_tokens=2)[0]
    assert g.expert is None and g.probs is None and g.confidence is None
