"""Unit tests of the prompt methods, the router and the parameter formulas on tiny-random."""

from __future__ import annotations

import pytest
import torch

from ptmoe_core.adapter import build_adapter, expected_params
from ptmoe_core.config import MethodConfig
from ptmoe_core.errors import ConfigError
from ptmoe_core.methods import NAMES, names
from ptmoe_core.params import LLAMA_32_1B, ModelShape, count_params
from ptmoe_core.router import Router, masked_mean

METHODS = list(NAMES)
ROUTED = names(routed=True)


def small(method: str, **kw) -> MethodConfig:
    return MethodConfig(method=method, **{"prompt_len": 6, "rank": 4, "n_experts": 3, **kw})


def batch(b: int = 3, L: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 400, (b, L), generator=g)
    mask = torch.ones(b, L, dtype=torch.long)
    mask[0, :2] = 0  # some left padding
    labels = ids.clone()
    labels[:, : L // 2] = -100
    router_mask = mask.clone()
    router_mask[:, L // 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "router_mask": router_mask}


@pytest.mark.parametrize("method", METHODS)
def test_shapes_and_only_adapter_gets_gradients(tiny_base, method):
    a = build_adapter(tiny_base, small(method), init_text="Answer the question.")
    a.train()
    bt = batch()
    out, routing = a(bt)
    T = 0 if method == "lora" else 6
    assert out.logits.shape == (3, 7 + T, tiny_base.model.config.vocab_size)
    out.loss.backward()
    assert all(p.grad is None for p in tiny_base.model.parameters()), "the base model must stay frozen"
    grads = {n: p.grad for n, p in a.named_trainable()}
    assert grads and all(g is not None for n, g in grads.items() if "lora_A" not in n)
    if method in ROUTED:
        assert routing.probs.shape == (3, 3)
        assert torch.allclose(routing.probs.sum(-1).cpu(), torch.ones(3))
        assert grads["router.linear.weight"].abs().sum() > 0, "the router must receive a gradient"
    else:
        assert routing is None


def test_ptmoe_only_chosen_expert_and_shared_B_get_gradient(tiny_base):
    a = build_adapter(tiny_base, small("ptmoe", noise_std=0.0))
    a.train()
    bt = batch(b=1)
    out, r = a(bt)
    out.loss.backward()
    k = int(r.chosen[0])
    gA = a.prompt.A.grad
    assert gA[k].abs().sum() > 0
    assert all(gA[i].abs().sum() == 0 for i in range(3) if i != k)
    assert a.prompt.B.grad.abs().sum() > 0


def test_noise_only_in_training_and_eval_deterministic(tiny_base):
    a = build_adapter(tiny_base, small("ptmoe", noise_std=0.5))
    bt = batch()
    a.eval()
    p1 = a.embed_inputs(bt).routing.probs
    p2 = a.embed_inputs(bt).routing.probs
    assert torch.equal(p1, p2)
    with torch.no_grad():
        l1 = a(bt)[0].logits
        l2 = a(bt)[0].logits
    assert torch.equal(l1, l2)
    a.train()
    torch.manual_seed(0)
    q1 = a.embed_inputs(bt).routing.probs
    q2 = a.embed_inputs(bt).routing.probs
    assert not torch.equal(q1, q2), "training adds router noise"


def router_out(**kw):
    torch.manual_seed(0)
    r = Router(8, 4, noise_std=0.0, **kw)
    x = torch.randn(5, 8)
    return r, r(x)


def test_selective_probationary_weights():
    _, out = router_out(top_k=1, probationary=True)
    top = out.probs.argmax(-1)
    assert torch.equal(out.chosen, top)
    expect = torch.zeros_like(out.probs).scatter(1, top[:, None], out.probs.gather(1, top[:, None]))
    assert torch.allclose(out.weights, expect)


def test_selective_non_probationary_is_one_hot_and_blocks_router_gradient():
    r, out = router_out(top_k=1, probationary=False)
    assert torch.equal(out.weights, torch.nn.functional.one_hot(out.chosen, 4).float())
    assert not out.weights.requires_grad


def test_soft_routing_mixes_all_experts():
    _, out = router_out(top_k=4, probationary=True)
    assert torch.allclose(out.weights, out.probs)
    _, flat = router_out(top_k=4, probationary=False)
    assert torch.allclose(flat.weights, torch.full((5, 4), 0.25))


def test_straight_through_forward_hard_backward_soft():
    r, out = router_out(top_k=1, straight_through=True)
    assert torch.allclose(out.weights, torch.nn.functional.one_hot(out.chosen, 4).float())
    out.weights.sum().backward()
    assert r.linear.weight.grad is not None and r.linear.weight.grad.abs().sum() > 0


def test_force_expert():
    r = Router(8, 4, noise_std=0.0)
    x = torch.randn(5, 8)
    out = r(x, force_expert=2)
    assert out.chosen.tolist() == [2] * 5
    # as if chosen: the weight of the router's own choice (max p), not p_2, which may be ≈0
    assert torch.allclose(out.weights[:, 2], out.probs.amax(-1)) and out.weights[:, [0, 1, 3]].abs().sum() == 0
    routed = r(x)
    for e in range(4):  # forcing the chosen expert is routing
        rows = routed.chosen == e
        assert torch.equal(r(x, force_expert=e).weights[rows], routed.weights[rows])
    with pytest.raises(ValueError):
        r(torch.randn(1, 8), force_expert=4)


def test_masked_mean_ignores_masked_tokens():
    X = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]])
    assert torch.allclose(masked_mean(X, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))


def test_router_uses_router_mask_not_answer_tokens(tiny_base):
    a = build_adapter(tiny_base, small("ptmoe")).eval()
    bt = batch()
    p1 = a.embed_inputs(bt).routing.probs
    bt2 = {k: v.clone() for k, v in bt.items()}
    bt2["input_ids"][:, -2:] = 5  # change answer tokens only (outside the router mask)
    assert torch.equal(p1, a.embed_inputs(bt2).routing.probs)


def test_svd_init_reconstructs_text_embeddings(tiny_base):
    cfg = small("dpt", prompt_len=6, rank=6)
    a = build_adapter(tiny_base, cfg, init_text="one two three four five six")
    ids = tiny_base.tokenizer("one two three four five six", add_special_tokens=False)["input_ids"]
    ids = (ids * 6)[:6]
    E = tiny_base.embed.weight[ids].detach()
    assert torch.allclose(a.prompt.A @ a.prompt.B, E, atol=1e-4)


def test_experts_start_close_but_distinct(tiny_base):
    a = build_adapter(tiny_base, small("ptmoe"), init_text="Answer.")
    A = a.prompt.A.detach()
    assert not torch.equal(A[0], A[1])
    assert (A[0] - A[1]).norm() < 0.1 * A[0].norm()


def test_init_is_seeded(tiny_base):
    a1 = build_adapter(tiny_base, small("ptmoe", init="vocab"), seed=3)
    a2 = build_adapter(tiny_base, small("ptmoe", init="vocab"), seed=3)
    a3 = build_adapter(tiny_base, small("ptmoe", init="vocab"), seed=4)
    s1, s2, s3 = a1.state_dict(), a2.state_dict(), a3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not torch.equal(s1["A"], s3["A"])


# --- parameter counts -----------------------------------------------------------------------


def test_paper_count_ptmoe():
    assert count_params(MethodConfig(), LLAMA_32_1B) == 80_706


@pytest.mark.parametrize(
    "method,formula",
    [
        ("pt", lambda H, T, N, R: T * H),
        ("dpt", lambda H, T, N, R: T * R + R * H),
        ("smop", lambda H, T, N, R: N * T * H + N * H + N),
        ("ptmoe", lambda H, T, N, R: N * T * R + R * H + N * H + N),
    ],
)
@pytest.mark.parametrize("H,T,N,R", [(2048, 40, 2, 36), (576, 20, 4, 8), (64, 6, 3, 4)])
def test_counts_match_hand_formulas(method, formula, H, T, N, R):
    cfg = MethodConfig(method=method, prompt_len=T, n_experts=N, rank=R)
    assert count_params(cfg, ModelShape(hidden=H)) == formula(H, T, N, R)


def test_lora_count_matches_paper_106k():
    # rank 1 on q (2048->2048) and v (2048->512) in 16 layers
    assert count_params(MethodConfig(method="lora"), LLAMA_32_1B) == 16 * ((2048 + 2048) + (2048 + 512)) == 106_496


@pytest.mark.parametrize("method", METHODS)
def test_formula_equals_real_tensor_count(tiny_base, method):
    a = build_adapter(tiny_base, small(method))
    assert a.num_trainable() == expected_params(a)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"rank": 50}, "method.rank"),
        ({"top_k": 3, "n_experts": 2}, "method.top_k"),
        ({"n_experts": 0}, "method.n_experts"),
        ({"prompt_len": 0}, "method.prompt_len"),
        ({"method": "prefix"}, "method.method"),
        ({"noise_std": -1.0}, "method.noise_std"),
    ],
)
def test_impossible_hyperparameters_are_named(kw, field):
    with pytest.raises(ConfigError) as e:
        MethodConfig(**kw).validate()
    assert e.value.field == field


def test_balance_loss_is_one_when_balanced_and_grows_with_collapse():
    from ptmoe_core.router import balance_loss

    even = balance_loss(torch.full((4, 2), 0.5), torch.tensor([0, 1, 0, 1]))
    collapsed = balance_loss(torch.tensor([[0.9, 0.1]] * 4), torch.tensor([0, 0, 0, 0]))
    assert even.item() == pytest.approx(1.0) and collapsed.item() == pytest.approx(1.8)
