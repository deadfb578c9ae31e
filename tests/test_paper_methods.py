"""Each method as the paper and the baselines' authors configure it: presets, router noise, the
non-probationary straight-through default, DPT's uniform init, paper shapes and the router mask."""

from __future__ import annotations

import pytest
import torch

from ptmoe_core.adapter import build_adapter
from ptmoe_core.config import MethodConfig, RunConfig
from ptmoe_core.params import LLAMA_32_1B, count_params
from ptmoe_core.presets import PAPER_SHAPES, paper_method, preset_values
from ptmoe_core.router import Router, balance_loss


@pytest.mark.parametrize("preset", ["paper", "studio"])
def test_smop_router_as_its_authors_run_it(preset):
    v = preset_values(preset, "smop")
    assert (v["noise_std"], v["noise_type"], v["balance_loss"]) == (1.0, "multiplicative", 0.01)
    cfg = MethodConfig.for_preset("smop", preset)
    assert cfg.noise_std == 1.0 and cfg.balance_loss == 0.01
    assert MethodConfig.for_preset("smop", preset, balance_loss=0.0).balance_loss == 0.0  # explicit keys win


def test_paper_preset_differs_per_method():
    smop, ptmoe, dpt = (MethodConfig.for_preset(m, "paper") for m in ("smop", "ptmoe", "dpt"))
    assert not smop.router_bias and smop.init == "random"  # SMoP's router has no bias; random prompts
    assert (ptmoe.noise_std, ptmoe.balance_loss, ptmoe.router_bias, ptmoe.init) == (0.01, 0.0, True, "text")
    assert dpt.init == "uniform"
    assert MethodConfig.for_preset("dpt", "studio").init == "text_vocab"


def test_multiplicative_noise_has_the_noise_free_gradient():
    """l·(1 + σε) forward, with the scale detached (SMoP's GaussianNoise): backward treats ε·l as a
    constant, so σ = 1 neither rescales nor flips the router's gradient."""
    torch.manual_seed(0)
    r = Router(8, 3, noise_std=1.0, noise_type="multiplicative").train()
    x = torch.randn(6, 8)
    torch.manual_seed(1)
    out = r(x)
    torch.manual_seed(1)
    eps = torch.randn(6, 3)
    with torch.no_grad():
        assert torch.allclose(out.probs, (r.linear(x) * (1 + eps)).softmax(-1), atol=1e-6)
    g = torch.randn(6, 3)

    def weight_grad(noisy) -> torch.Tensor:
        return torch.autograd.grad((noisy(r.linear(x)).log_softmax(-1) * g).sum(), r.linear.weight)[0]

    (grad,) = torch.autograd.grad((out.probs.log() * g).sum(), r.linear.weight)
    assert torch.allclose(grad, weight_grad(lambda lg: lg + eps * lg.detach()), atol=1e-5)
    other = weight_grad(lambda lg: lg * (1 + eps))  # undetached, the gradient is scaled by (1 + ε)
    assert not torch.allclose(grad, other, atol=1e-3)


def test_balance_loss_is_smops_formula():
    """SMoP: α·N·Σ_i mean_b(p_i)·(share routed to i); ours without α."""
    p = torch.tensor([[0.7, 0.3], [0.6, 0.4], [0.2, 0.8], [0.9, 0.1]])
    chosen = p.argmax(-1)
    f = torch.tensor([3 / 4, 1 / 4])
    assert balance_loss(p, chosen).item() == pytest.approx(2 * float((f * p.mean(0)).sum()))


def test_non_probationary_trains_its_router_by_default():
    assert MethodConfig(probationary=False).straight_through is True
    assert MethodConfig().straight_through is False
    assert MethodConfig.from_dict({"probationary": "false"}).straight_through is True
    explicit = MethodConfig.from_dict({"probationary": False, "straight_through": False})
    assert explicit.straight_through is False  # allowed: the untrained-router control
    stored = RunConfig.from_dict(RunConfig(method=MethodConfig(probationary=False)).to_dict()).method
    assert stored.straight_through is True  # the resolved value is what a run stores


@pytest.mark.parametrize("top_k", [1, 2])
def test_non_probationary_router_gets_a_gradient(tiny_base, top_k):
    cfg = MethodConfig(method="ptmoe", prompt_len=4, rank=2, n_experts=2, top_k=top_k, probationary=False)
    a = build_adapter(tiny_base, cfg).train()
    ids = torch.randint(3, 400, (2, 6), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :3] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
             "router_mask": (labels == -100).long()}
    out, r = a(batch)
    if top_k == 1:
        assert torch.equal(r.weights.detach(), torch.nn.functional.one_hot(r.chosen, 2).float())
    out.loss.backward()
    assert a.prompt.router.linear.weight.grad.abs().sum() > 0


def test_uniform_init_is_dpts(tiny_base):
    H = tiny_base.model.config.hidden_size
    a = build_adapter(tiny_base, MethodConfig(method="dpt", prompt_len=6, rank=4, init="uniform"), seed=3)
    A, B = a.prompt.A.detach(), a.prompt.B.detach()
    assert A.shape == (6, 4) and B.shape == (4, H)
    for t in (A, B):
        assert t.min() >= -0.5 and t.max() < 0.5 and t.std() > 0.2  # U(-0.5, 0.5): std 0.289
    again = build_adapter(tiny_base, MethodConfig(method="dpt", prompt_len=6, rank=4, init="uniform"), seed=3)
    assert torch.equal(again.prompt.A, a.prompt.A)  # seeded
    pt = build_adapter(tiny_base, MethodConfig(method="pt", prompt_len=6, init="uniform"))
    P = pt.prompt.prompt_embeddings.detach()
    assert P.min() >= -0.5 and P.max() < 0.5


def test_paper_shapes_give_the_papers_counts():
    """The paper's table truncates to thousands: PT-MoE 80k, PT 81k, DPT 81k, SMoP 86k, LoRA 106k."""
    counts = {m: count_params(MethodConfig.from_dict(paper_method(m)), LLAMA_32_1B) for m in PAPER_SHAPES}
    assert counts == {"pt": 81_920, "dpt": 81_432, "smop": 86_016, "ptmoe": 80_706, "lora": 106_496}
    assert {m: n // 1000 for m, n in counts.items()} == {"pt": 81, "dpt": 81, "smop": 86, "ptmoe": 80, "lora": 106}
    with pytest.raises(ValueError):
        paper_method("nope")


def test_router_mask_is_required_with_labels(tiny_base):
    a = build_adapter(tiny_base, MethodConfig(method="ptmoe", prompt_len=4, rank=2)).eval()
    ids = torch.randint(3, 400, (2, 5))
    mask = torch.ones_like(ids)
    with pytest.raises(ValueError, match="router_mask is required"):
        a({"input_ids": ids, "attention_mask": mask, "labels": ids.clone()})
    # Label-free inference on a bare prompt still routes on every attended token.
    pi = a.embed_inputs({"input_ids": ids, "attention_mask": mask})
    assert pi.routing.probs.shape == (2, 2)


def test_number_match_mode_reaches_the_scores(tiny_base, monkeypatch):
    """data.number_match travels through FormatConfig into every scored record."""
    from types import SimpleNamespace

    import ptmoe_core.generate
    from ptmoe_core.config import DataConfig
    from ptmoe_core.data.formatting import FormatConfig
    from ptmoe_core.errors import ConfigError
    from ptmoe_core.evaluate import evaluate

    assert FormatConfig.from_data_config(DataConfig(number_match="strict")).number_match == "strict"
    with pytest.raises(ConfigError, match="data.number_match"):
        DataConfig(number_match="fuzzy").validate()
    answers = ["72.0", "72", "#### 72"]

    def fake_generate(adapter, encoded, **kw):  # fixed answers, so the modes must disagree
        return [SimpleNamespace(text=t, expert=None, probs=None, confidence=None, entropy=None, latency_s=0.0)
                for t in answers[: len(encoded)]]

    monkeypatch.setattr(ptmoe_core.generate, "generate", fake_generate)
    a = build_adapter(tiny_base, MethodConfig(method="pt", prompt_len=2), seed=0)
    rows = [{"id": str(i), "domain": "m", "question": "What is 71 plus 1?", "context": "", "answers": ["72"],
             "answer_type": "number", "split": "test", "ood": False} for i in range(3)]
    got = {mode: [r.correct for r in evaluate(a, rows, format_cfg=FormatConfig(number_match=mode)).records]
           for mode in ("lenient", "flexible", "strict")}
    assert got == {"lenient": [True, True, True], "flexible": [False, True, True], "strict": [False, False, True]}
