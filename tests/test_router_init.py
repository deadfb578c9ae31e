"""Router initialised from the training data's groups (``method.router_init``), on tiny-random: the
router starts as a classifier of the data sets at the asked confidence, keeps two disjoint-vocabulary
domains on their own experts in every seed when kept fixed, groups more data sets than experts, and
bad values give one-line errors."""

from __future__ import annotations

import pytest
import torch

from ptmoe_core.config import RunConfig
from ptmoe_core.errors import ConfigError
from ptmoe_core.router import Router, input_groups, kmeans
from ptmoe_core.trainer import train
from tests.test_routing_aids import mi_bits, run


def test_fit_groups_classifies_at_the_asked_confidence():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(40, 16, generator=g) + 3, torch.randn(40, 16, generator=g) - 3])  # two blobs
    groups = torch.tensor([0] * 40 + [1] * 40)
    for norm in (False, True):
        r = Router(16, 2, norm=norm, noise_std=0.0)
        if norm:
            r.set_input_stats(x.mean(0), x.std(0))
        r.fit_groups(x, groups, confidence=0.7)
        info = r.eval()(x)
        assert torch.equal(info.chosen, groups)
        assert info.probs.gather(1, groups[:, None]).mean().item() == pytest.approx(0.7, abs=1e-3)


def test_input_groups_by_data_set_and_by_kmeans():
    g = torch.Generator().manual_seed(0)
    centres = {"a": 5.0, "b": 4.0, "c": -5.0}  # a and b close, c far: two experts get {a, b} and {c}
    domains = [d for d in centres for _ in range(30)]
    x = torch.stack([torch.randn(8, generator=g) * 0.3 + centres[d] for d in domains])
    labels = input_groups(x, domains, 2, "domains", torch.Generator().manual_seed(1))
    by = {d: set(labels[[i for i, e in enumerate(domains) if e == d]].tolist()) for d in centres}
    assert all(len(v) == 1 for v in by.values())  # a data set is never split
    assert by["a"] == by["b"] != by["c"]
    # As many data sets as experts: one each; fewer: k-means on the inputs.
    three = input_groups(x, domains, 3, "domains", torch.Generator().manual_seed(1))
    assert len(set(three.tolist())) == 3
    one = input_groups(x, ["a"] * len(x), 2, "domains", torch.Generator().manual_seed(1))
    assert torch.equal(one, kmeans(x, 2, torch.Generator().manual_seed(1)))
    assert len(set(one.tolist())) == 2


def test_fixed_router_from_data_sets_keeps_disjoint_domains_apart_in_every_seed(tiny_base, tmp_path):
    # The study's candidate: fitted to the data sets, then kept (router_lr_mult 0). Each domain goes
    # to its own expert at the fitted confidence on held-out questions, whatever the seed.
    for seed in (0, 1, 2):
        cfg, data = run(tmp_path, "paper", seed, router_norm=True, router_init="domains",
                        router_init_confidence=0.7, router_lr_mult=0.0)
        cfg.train.steps = 6
        records = train(cfg, base=tiny_base, data=data, resume=False).evaluation.records
        assert mi_bits(records) >= 0.9, (seed, mi_bits(records))
        conf = sum(r.confidence for r in records) / len(records)
        assert conf == pytest.approx(0.7, abs=0.1)


def test_a_trained_router_overwrites_its_fitted_start(tiny_base, tmp_path):
    # Why the candidate keeps its router fixed: at the prompt's learning rate, Adam moves every router
    # weight by about lr per step, far more than a fitted router at moderate confidence weighs.
    cfg, data = run(tmp_path, "paper", 0, router_norm=True, router_init="domains", router_init_confidence=0.7)
    res = train(cfg, base=tiny_base, data=data, resume=False)
    first, last = res.history[0].domain_routing, res.history[-1].domain_routing
    assert all(max(c) == sum(c) for c in first.values())  # step 1: each domain on one expert
    assert sum(min(c) for c in last.values()) > 0 or mi_bits(res.evaluation.records) < 0.9


@pytest.mark.parametrize("field,value", [("router_init", "pca"), ("router_init_confidence", 0.5),
                                         ("router_init_confidence", 1.0)])
def test_bad_router_init_names_the_field(field, value):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict({"method": {"method": "ptmoe", "n_experts": 2, "router_init": "domains",
                                        field: value}}).validate()
    assert f"method.{field}" in str(e.value) and "\n" not in str(e.value)


def test_one_expert_with_the_default_router_start_is_valid():
    # The fitted start's confidence has no meaning for an orthogonal start (nor any valid value at N = 1).
    RunConfig.from_dict({"method": {"method": "ptmoe", "n_experts": 1}}).validate()
