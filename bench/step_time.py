"""Engine speed, measured against references in the same run on the same model.

1. One PT-MoE training step (forward + backward + AdamW) against PEFT's own prompt tuning
   (``peft.PromptTuningConfig``) with the same batch and prompt length.   target: ratio ≤ 1.05
2. Greedy generation of 64 new tokens with the KV cache against recomputing the whole sequence
   for every token.                                                         target: speed-up ≥ 3

    python bench/step_time.py [--model smollm2-135m] [--batch 8] [--seq 128] [--iters 6]

Timings are interleaved (A, B, A, B, …) and the medians compared, so drift on a busy machine
hits both sides alike.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ptmoe_core.adapter import build_adapter  # noqa: E402
from ptmoe_core.config import MethodConfig, ModelConfig  # noqa: E402
from ptmoe_core.generate import generate  # noqa: E402
from ptmoe_core.models import load_base_model  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def step_benchmark(base, batch: int, seq: int, T: int, iters: int) -> dict:
    from peft import PromptTuningConfig, TaskType, get_peft_model

    dev = base.device
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 5000, (batch, seq), generator=g).to(dev)
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, : seq // 2] = -100
    data = {"input_ids": ids, "attention_mask": mask, "labels": labels, "router_mask": (labels == -100).long()}

    ptmoe = build_adapter(base, MethodConfig(method="ptmoe", prompt_len=T)).train()
    opt_a = torch.optim.AdamW(ptmoe.trainable_parameters(), lr=1e-3)

    peft_model = get_peft_model(
        copy.deepcopy(base.model), PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=T)
    )
    peft_model.train()
    opt_b = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-3)

    def step_ptmoe():
        loss, _ = ptmoe.label_loss(data)  # the trainer's path: the LM head only where labels are
        loss.backward()
        opt_a.step()
        opt_a.zero_grad(set_to_none=True)

    def step_peft():
        out = peft_model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        opt_b.step()
        opt_b.zero_grad(set_to_none=True)

    for fn in (step_ptmoe, step_peft):  # warm-up (allocator, kernels)
        fn()
    a, b = [], []
    for _ in range(iters):
        a.append(timed(step_ptmoe, dev))
        b.append(timed(step_peft, dev))
    ma, mb = statistics.median(a), statistics.median(b)
    tokens = batch * (seq + T)
    return {"ptmoe_s": ma, "peft_pt_s": mb, "ratio": ma / mb, "ptmoe_tok_s": tokens / ma, "peft_tok_s": tokens / mb}


def generation_benchmark(base, new_tokens: int, batch: int, iters: int) -> dict:
    adapter = build_adapter(base, MethodConfig(method="ptmoe")).eval()
    tok = base.tokenizer
    question = ("Read the passage and answer. The Normans were the people who in the 10th and 11th centuries "
                "gave their name to Normandy, a region in France. Question: In what country is Normandy located?")
    ids = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    enc = [{"input_ids": list(ids), "attention_mask": [1] * len(ids), "router_mask": [1] * len(ids)}] * batch
    eos_free = dict(max_new_tokens=new_tokens, batch_size=batch, stop_at_eos=False)
    for use_cache in (True, False):
        generate(adapter, enc, use_cache=use_cache, **{**eos_free, "max_new_tokens": 2})
    a, b = [], []
    for _ in range(iters):
        a.append(timed(lambda: generate(adapter, enc, use_cache=True, **eos_free), base.device))
        b.append(timed(lambda: generate(adapter, enc, use_cache=False, **eos_free), base.device))
    ma, mb = statistics.median(a), statistics.median(b)
    return {"cached_s": ma, "recompute_s": mb, "speedup": mb / ma, "cached_tok_s": batch * new_tokens / ma,
            "prompt_tokens": len(ids) + 40}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=40)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--gen-batch", type=int, default=1)
    ap.add_argument("--gen-iters", type=int, default=3)
    args = ap.parse_args()

    base = load_base_model(ModelConfig(name=args.model, device=args.device, dtype=args.dtype))
    print(f"model {args.model} on {base.device} ({str(base.dtype).replace('torch.', '')}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    s = step_benchmark(base, args.batch, args.seq, args.prompt_len, args.iters)
    print(f"\n[1] training step, batch {args.batch} × seq {args.seq}, T={args.prompt_len} (median of {args.iters})")
    print(f"    PT-MoE            {s['ptmoe_s'] * 1000:8.1f} ms  ({s['ptmoe_tok_s']:.0f} tokens/s)")
    print(f"    PEFT prompt tuning {s['peft_pt_s'] * 1000:7.1f} ms  ({s['peft_tok_s']:.0f} tokens/s)")
    ok = "meets" if s["ratio"] <= 1.05 else "MISSES"
    print(f"    ratio PT-MoE / PEFT PT = {s['ratio']:.3f}   (target ≤ 1.05: {ok})")

    gb = generation_benchmark(base, args.new_tokens, args.gen_batch, args.gen_iters)
    print(f"\n[2] greedy generation of {args.new_tokens} tokens, batch {args.gen_batch}, "
          f"{gb['prompt_tokens']} prompt tokens (median of {args.gen_iters})")
    print(f"    KV cache          {gb['cached_s']:8.2f} s  ({gb['cached_tok_s']:.1f} new tokens/s)")
    print(f"    recompute         {gb['recompute_s']:8.2f} s")
    ok = "meets" if gb["speedup"] >= 3 else "MISSES"
    print(f"    speed-up = {gb['speedup']:.2f}×   (target ≥ 3: {ok})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
