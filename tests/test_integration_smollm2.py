"""Integration on the real embedded SmolLM2-135M (CPU): PT-MoE learns a small task in a couple of
minutes, and generation through it returns routing info for every input."""

from __future__ import annotations

import pytest

from ptmoe_core.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
from ptmoe_core.data import FormatConfig, encode_example, load_spec
from ptmoe_core.generate import generate
from ptmoe_core.trainer import mean_loss, train

pytestmark = pytest.mark.integration


def test_ptmoe_learns_a_small_task_and_routes(smol_base, tmp_path):
    train_set = load_spec("builtin:units?n=64&n_eval=16", "train", seed=0)
    held_out = load_spec("builtin:units?n=64&n_eval=16", "validation", seed=0)
    cfg = RunConfig(
        name="integration",
        output_dir=str(tmp_path / "run"),
        model=ModelConfig(name="smollm2-135m", device="cpu"),
        method=MethodConfig(method="ptmoe", prompt_len=10, rank=8, n_experts=2),
        data=DataConfig(train=["builtin:units"], max_source_tokens=96, max_answer_tokens=8),
        train=TrainConfig(steps=24, batch_size=4, lr=0.01, warmup_steps=2, seed=0),
    )
    fmt = FormatConfig.from_data_config(cfg.data)
    feats = [encode_example(smol_base.tokenizer, ex, fmt, with_answer=True) for ex in held_out]

    from ptmoe_core.adapter import build_adapter

    before = mean_loss(build_adapter(smol_base, cfg.method, init_text=fmt.instruction_for(held_out[0])), feats)
    res = train(cfg, base=smol_base, data=(train_set, {}))
    assert res.status == "finished"
    from ptmoe_core.adapter import load_adapter

    adapter = load_adapter(res.adapter_dir, base=smol_base)
    after = mean_loss(adapter, feats)
    assert after < 0.7 * before, f"held-out loss {before:.3f} -> {after:.3f}"

    prompts = [encode_example(smol_base.tokenizer, ex, fmt, with_answer=False) for ex in list(held_out)[:4]]
    gens = generate(adapter, prompts, max_new_tokens=8)
    assert len(gens) == 4
    for g in gens:
        assert g.expert in (0, 1) and len(g.probs) == 2 and 0.5 <= g.confidence <= 1.0
        assert g.text.strip() != ""
