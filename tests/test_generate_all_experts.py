"""One pass for all experts: ``generate_all_experts`` gives exactly the answers of separate calls.

tiny-random's answers hardly depend on the soft prompt, so a mixed-up row would go unnoticed there.
These tests use the same tiny Llama initialised at a larger scale (weights std 0.3), with a sharper
router, so forcing another expert changes the tokens and inputs are routed to different experts.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import LlamaForCausalLM

from ptmoe_core.adapter import build_adapter
from ptmoe_core.generate import generate, generate_all_experts
from ptmoe_core.models import tiny_config
from tests.test_generate import QUESTIONS, encoded
from tests.test_methods import small

INPUTS = [*QUESTIONS, "Where is Paris?", "What is 10 times 3?", "Spell cat.", "Who wrote Hamlet?"]
N = 3
BATCH = 6  # rows: two inputs × three experts


@pytest.fixture(scope="module")
def lively_base(tiny_base):
    cfg = tiny_config(len(tiny_base.tokenizer))
    cfg.initializer_range = 0.3
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.generation_config.eos_token_id = tiny_base.tokenizer.eos_token_id
    return dataclasses.replace(tiny_base, model=model, name="tiny-random-lively")


def routed_adapter(base, method: str, **kw):
    a = build_adapter(base, small(method, n_experts=N, router_bias=False, **kw), seed=2)
    with torch.no_grad():
        a.prompt.router.linear.weight.mul_(30)  # the inputs' small mean embeddings then pick different experts
    return a.eval()


class PrefillRows:
    """The batch size of every prefill (a call with ``inputs_embeds``) of the model."""

    def __init__(self, model: torch.nn.Module):
        self.sizes: list[int] = []
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        if kwargs.get("inputs_embeds") is not None:
            self.sizes.append(kwargs["inputs_embeds"].shape[0])


def ids(gens):
    return [g.token_ids for g in gens]


@pytest.mark.parametrize("top_k", [1, N], ids=["top-1", "soft-mix"])
@pytest.mark.parametrize("probationary", [True, False], ids=["probationary", "equal-weights"])
@pytest.mark.parametrize("method", ["ptmoe", "smop"])
def test_one_pass_equals_separate_calls(lively_base, method, probationary, top_k):
    a = routed_adapter(lively_base, method, probationary=probationary, top_k=top_k)
    enc = encoded(lively_base.tokenizer, INPUTS)
    kw = dict(max_new_tokens=6, batch_size=BATCH)
    routed = generate(a, enc, **kw, return_router_input=True)
    forced = [generate(a, enc, **kw, force_expert=e) for e in range(N)]
    assert len({g.expert for g in routed}) > 1, "the test needs inputs routed to different experts"
    assert sum(ids(forced[0]) != ids(forced[e]) for e in range(1, N)) >= 1, "the test needs experts that differ"

    done: list[int] = []
    rows = PrefillRows(lively_base.model)
    try:
        one_routed, one_forced = generate_all_experts(a, enc, **kw, return_router_input=True, progress=done.append)
    finally:
        rows.handle.remove()

    assert ids(one_routed) == ids(routed)
    for e in range(N):
        assert [f[e].token_ids for f in one_forced] == ids(forced[e])
        assert [f[e].text for f in one_forced] == [g.text for g in forced[e]]
        assert all(f[e].expert == e for f in one_forced)
        assert [f[e].confidence for f in one_forced] == pytest.approx([g.confidence for g in forced[e]], abs=1e-6)
    for g, ref in zip(one_routed, routed, strict=True):
        assert g.expert == ref.expert and g.probs == pytest.approx(ref.probs, abs=1e-6)
        assert g.router_input == pytest.approx(ref.router_input, abs=1e-6)
    assert max(rows.sizes) <= BATCH, "the stacked batch respects batch_size"
    # top-1: the routed answer is its expert's forced row; a soft mix needs a row of its own.
    assert sum(rows.sizes) == len(INPUTS) * (N if top_k == 1 else N + 1)
    assert done[-1] == len(INPUTS) and done == sorted(done)


def test_batch_smaller_than_the_experts_and_methods_without_router(lively_base):
    a = routed_adapter(lively_base, "ptmoe")
    enc = encoded(lively_base.tokenizer, INPUTS[:3])
    routed, forced = generate_all_experts(a, enc, max_new_tokens=4, batch_size=2)
    for e in range(N):
        assert [f[e].token_ids for f in forced] == ids(generate(a, enc, max_new_tokens=4, batch_size=2, force_expert=e))
    assert ids(routed) == ids(generate(a, enc, max_new_tokens=4, batch_size=2))

    pt = build_adapter(lively_base, small("pt")).eval()
    routed, forced = generate_all_experts(pt, enc, max_new_tokens=4)
    assert forced == [[], [], []] and ids(routed) == ids(generate(pt, enc, max_new_tokens=4))
    with pytest.raises(ValueError, match="batch_size"):
        generate_all_experts(a, enc, batch_size=0)


def test_inspection_forced_rows_come_from_the_one_pass(lively_base, monkeypatch):
    """Inspect's forced answers are the separate calls' answers, generated in one pass."""
    import ptmoe_core.generate as gen
    from app.inspection import run_inspection
    from ptmoe_core.data.formatting import FormatConfig

    a = routed_adapter(lively_base, "ptmoe")
    examples = [{"id": str(i), "domain": "t", "question": q, "context": "", "answers": ["x"], "answer_type": "text",
                 "split": "test", "ood": False} for i, q in enumerate(INPUTS)]
    fmt = FormatConfig(max_source_tokens=128, max_answer_tokens=8)
    calls: list[int | None] = []
    separate = gen.generate

    def counting(*args, **kw):
        calls.append(kw.get("force_expert"))
        return separate(*args, **kw)

    monkeypatch.setattr(gen, "generate", counting)
    res = run_inspection(a, examples, fmt, max_new_tokens=5, batch_size=BATCH, forced=True)
    assert calls == [], "no separate generation call per expert"
    enc = encoded(lively_base.tokenizer, INPUTS)
    for e in range(N):
        texts = [g.text for g in separate(a, enc, max_new_tokens=5, batch_size=BATCH, force_expert=e)]
        assert [r["forced"][e]["text"] for r in res.rows] == texts
        assert all(r["forced"][e]["expert"] == e for r in res.rows)
    assert [r["prediction"] for r in res.rows] == [g.text for g in separate(a, enc, max_new_tokens=5, batch_size=BATCH)]
