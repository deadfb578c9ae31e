"""Logits only where the loss reads them: ``Adapter.label_loss`` equals the full-logits path.

The reference is the model's own loss (``labels=`` through the whole LM head), on the tiny model,
for every method, with and without sub-batching, in training and in the evaluation loss.
"""

from __future__ import annotations

import pytest
import torch

from ptmoe_core.adapter import build_adapter
from ptmoe_core.config import MethodConfig
from ptmoe_core.data.formatting import FormatConfig, collate, encode_example, padding_groups
from ptmoe_core.methods import NAMES
from ptmoe_core.models import BaseModel
from ptmoe_core.trainer import batch_loss, mean_loss

METHODS = list(NAMES)
TOL = 1e-5


def features(tok, long_row: bool) -> list[dict]:
    fmt = FormatConfig(max_source_tokens=128, max_answer_tokens=6)
    exs = [{"id": str(i), "domain": "toy", "question": f"What is {i} plus {i + 2}?", "context": "",
            "answers": [f"{2 * i + 2} exactly"], "answer_type": "text", "split": "train", "ood": False}
           for i in range(4)]
    if long_row:
        exs[1]["context"] = " ".join(["The garden has many old trees and a pond."] * 6)
    return [encode_example(tok, e, fmt, with_answer=True) for e in exs]


def adapter(base, method: str):
    cfg = MethodConfig(method=method, prompt_len=4, rank=3, n_experts=3, noise_std=0.0, lora_dropout=0.0)
    ad = build_adapter(base, cfg, seed=1).train()
    with torch.no_grad():  # away from init (LoRA's B starts at zero) so every gradient is non-trivial
        for p in ad.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return ad


def grads(ad, loss) -> list[torch.Tensor]:
    for p in ad.trainable_parameters():
        p.grad = None
    loss.backward()
    return [p.grad.clone() for p in ad.trainable_parameters()]


class HeadRows:
    """Counts the rows the LM head is run on."""

    def __init__(self, head: torch.nn.Module):
        self.rows = 0
        self.handle = head.register_forward_hook(self)

    def __call__(self, module, args, output):
        self.rows += output.reshape(-1, output.shape[-1]).shape[0]


@pytest.mark.parametrize("long_row", [True, False], ids=["sub-batched", "one-batch"])
@pytest.mark.parametrize("method", METHODS)
def test_training_loss_and_gradients_equal_the_full_logits_path(tiny_base, method, long_row):
    feats = features(tiny_base.tokenizer, long_row)
    assert (len(padding_groups([len(f["input_ids"]) for f in feats])) > 1) == long_row
    ad = adapter(tiny_base, method)
    assert ad._decoder_and_head() is not None, "tiny Llama's logits are head(decoder(x))"  # probes once
    head = HeadRows(tiny_base.model.get_output_embeddings() if method != "lora"
                    else ad.lm.get_base_model().get_output_embeddings())
    try:
        loss, routing = batch_loss(ad, feats)
        rows = head.rows
    finally:
        head.handle.remove()
    g_new = grads(ad, loss)
    full, full_routing = ad(collate(feats, tiny_base.pad_id))  # the reference: logits everywhere
    g_full = grads(ad, full.loss)
    n_labelled = sum(sum(1 for t in f["labels"][1:] if t != -100) for f in feats)
    assert rows == n_labelled < full.logits.shape[0] * full.logits.shape[1] / 3, "the head ran on labelled rows only"
    assert torch.allclose(loss, full.loss, atol=TOL, rtol=0)
    assert len(g_new) == len(g_full) > 0
    for a, b in zip(g_new, g_full, strict=True):
        assert b.abs().max() > 0
        assert torch.allclose(a, b, atol=TOL, rtol=0), (a - b).abs().max()
    assert (routing is None) == (full_routing is None)


@pytest.mark.parametrize("method", METHODS)
def test_label_loss_mean_and_sum_match_transformers(tiny_base, method):
    ad = adapter(tiny_base, method)
    batch = collate(features(tiny_base.tokenizer, False), tiny_base.pad_id)
    mean, _ = ad.label_loss(batch)
    summed, _ = ad.label_loss(batch, num_items_in_batch=7)
    ref_mean = ad(batch)[0].loss
    ref_sum = ad(batch, num_items_in_batch=7)[0].loss
    assert torch.allclose(mean, ref_mean, atol=TOL, rtol=0) and torch.allclose(summed, ref_sum, atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="labels"):
        ad.label_loss({k: v for k, v in batch.items() if k != "labels"})


@pytest.mark.parametrize("method", METHODS)
def test_eval_mean_loss_equals_the_full_logits_path(tiny_base, method):
    feats = features(tiny_base.tokenizer, True)
    ad = adapter(tiny_base, method)
    got = mean_loss(ad, feats, batch_size=3)
    assert ad.prompt is None or ad.prompt.training, "mean_loss restores training mode"
    ad.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for f in feats:  # one by one: no padding at all in the reference
            b = collate([f], tiny_base.pad_id)
            n = int((b["labels"][:, 1:] != -100).sum())
            total += ad(b)[0].loss.item() * n
            count += n
    assert got == pytest.approx(total / count, abs=TOL)


def test_soft_capped_logits_take_the_full_logits_path(tiny_base):
    """A model whose logits are not head(decoder(x)) (Gemma 2 soft-caps them) keeps the exact loss."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    tok = tiny_base.tokenizer
    cfg = Gemma2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=16, final_logit_softcapping=2.0,
                       pad_token_id=tiny_base.pad_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Gemma2ForCausalLM(cfg).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    gemma = BaseModel(model=model, tokenizer=tok, name="tiny-gemma2", hidden_size=32, device=torch.device("cpu"),
                      dtype=torch.float32)
    ad = adapter(gemma, "pt")
    batch = collate(features(tok, False), gemma.pad_id)
    loss, _ = ad.label_loss(batch, num_items_in_batch=5)
    assert ad._split_head is False
    assert torch.allclose(loss, ad(batch, num_items_in_batch=5)[0].loss, atol=TOL, rtol=0)
