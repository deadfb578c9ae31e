"""Engine speed, measured against references in the same run on the same model.

1. One training step (forward + backward + AdamW) of the engine's training loss, which runs the
   LM head on the labelled positions only (``Adapter.label_loss``), against PEFT's own methods,
   which compute logits everywhere, on the same batch:
   PT-MoE against PEFT prompt tuning (``peft.PromptTuningConfig``, same prompt length)
                                                                            target: ratio ≤ 0.85
   our LoRA against plain PEFT LoRA (same rank, alpha and target modules)   reported
2. Greedy generation of 64 new tokens with the KV cache against recomputing the whole sequence
   for every token.                                                         target: speed-up ≥ 3
3. Inspecting 16 inputs with every expert forced (Inspect's settings: batch 8, 24 new tokens): the
   routed answer and each forced expert as separate ``generate`` calls against one
   ``generate_all_experts`` pass.                                           target: ratio ≤ 0.6

    python -m bench.step_time [--model smollm2-135m] [--batch 8] [--seq 128] [--iters 6]

Timings are interleaved (A, B, A, B, …) and the medians compared, so drift on a busy machine
hits both sides alike.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

from ptmoe_core.adapter import build_adapter
from ptmoe_core.config import MethodConfig, ModelConfig
from ptmoe_core.generate import generate, generate_all_experts
from ptmoe_core.models import load_base_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def step_benchmark(base, batch: int, seq: int, T: int, iters: int, answer_frac: float) -> dict:
    from peft import LoraConfig, PromptTuningConfig, TaskType, get_peft_model

    dev = base.device
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 5000, (batch, seq), generator=g).to(dev)
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, : seq - max(1, round(seq * answer_frac))] = -100  # the answer: the last tokens
    data = {"input_ids": ids, "attention_mask": mask, "labels": labels, "router_mask": (labels == -100).long()}

    ptmoe = build_adapter(base, MethodConfig(method="ptmoe", prompt_len=T)).train()
    lora_cfg = MethodConfig(method="lora")
    lora = build_adapter(base, lora_cfg).train()
    peft_pt = get_peft_model(
        copy.deepcopy(base.model), PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=T)
    ).train()
    peft_lora = get_peft_model(copy.deepcopy(base.model), LoraConfig(
        r=lora_cfg.lora_r, lora_alpha=lora_cfg.lora_alpha, lora_dropout=lora_cfg.lora_dropout,
        target_modules=list(lora_cfg.lora_targets), task_type=TaskType.CAUSAL_LM)).train()

    def ours(adapter):
        opt = torch.optim.AdamW(adapter.trainable_parameters(), lr=1e-3)

        def step():
            loss, _ = adapter.label_loss(data)  # the trainer's loss: the head on labelled positions only
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    def peft(model):
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

        def step():
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()  # logits everywhere
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    steps = {"ptmoe": ours(ptmoe), "peft_pt": peft(peft_pt), "lora": ours(lora), "peft_lora": peft(peft_lora)}
    times = interleaved(steps, iters, dev)
    tokens = batch * (seq + T)
    return {**times, "ratio_pt": times["ptmoe"] / times["peft_pt"], "ratio_lora": times["lora"] / times["peft_lora"],
            "cpu_ratio_pt": times["cpu_ptmoe"] / times["cpu_peft_pt"],
            "cpu_ratio_lora": times["cpu_lora"] / times["cpu_peft_lora"],
            "ptmoe_tok_s": tokens / times["ptmoe"], "peft_tok_s": tokens / times["peft_pt"]}


def interleaved(fns: dict, iters: int, device, warm_up: bool = True) -> dict[str, float]:
    """Median seconds of each function, run in turn (A, B, C, A, B, C, …) after one warm-up each:
    wall time under each name, and this process's CPU time under ``cpu_<name>`` (on a CPU shared with
    other work, CPU time is the steadier of the two)."""
    for fn in fns.values() if warm_up else ():  # allocator, kernels
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(iters):
        for k, fn in fns.items():
            c = time.process_time()
            times[k].append(timed(fn, device))
            cpu[k].append(time.process_time() - c)
    return {**{k: statistics.median(v) for k, v in times.items()},
            **{f"cpu_{k}": statistics.median(v) for k, v in cpu.items()}}


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


def inspect_benchmark(base, n_inputs: int, batch: int, new_tokens: int, iters: int) -> dict:
    """Inspect's generation for ``n_inputs`` questions of the built-in tasks, every expert forced."""
    from ptmoe_core.data.builtin import TASKS, generate_task
    from ptmoe_core.data.formatting import FormatConfig, encode_example

    adapter = build_adapter(base, MethodConfig(method="ptmoe")).eval()
    per_task = -(-n_inputs // len(TASKS))
    examples = [ex for t in TASKS for ex in generate_task(t, False, {"test": per_task})["test"]][:n_inputs]
    enc = [encode_example(base.tokenizer, ex, FormatConfig(), with_answer=False) for ex in examples]
    kw = dict(max_new_tokens=new_tokens, batch_size=batch)

    def separate():  # today's Inspect: the routed answers, then one pass per forced expert
        generate(adapter, enc, **kw, return_router_input=True)
        for e in range(adapter.n_experts):
            generate(adapter, enc, **kw, force_expert=e)

    generate_all_experts(adapter, enc[:batch], max_new_tokens=2, batch_size=batch)  # a short warm-up
    times = interleaved({"separate": separate,
                         "one_pass": lambda: generate_all_experts(adapter, enc, **kw, return_router_input=True)},
                        iters, base.device, warm_up=False)
    return {**times, "ratio": times["one_pass"] / times["separate"],
            "cpu_ratio": times["cpu_one_pass"] / times["cpu_separate"], "n_experts": adapter.n_experts}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=40)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--answer-frac", type=float, default=0.1,
                    help="labelled share of each training sequence (answers are about a tenth of the mix's tokens)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--gen-batch", type=int, default=1)
    ap.add_argument("--gen-iters", type=int, default=3)
    ap.add_argument("--inspect-inputs", type=int, default=16)
    ap.add_argument("--inspect-batch", type=int, default=8, help="the studio's inspect_batch_size")
    ap.add_argument("--inspect-tokens", type=int, default=24, help="Inspect's default answer length")
    ap.add_argument("--inspect-iters", type=int, default=3)
    ap.add_argument("--only", choices=["step", "generate", "inspect"], help="run one benchmark only")
    args = ap.parse_args()

    base = load_base_model(ModelConfig(name=args.model, device=args.device, dtype=args.dtype))
    print(f"model {args.model} on {base.device} ({str(base.dtype).replace('torch.', '')}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if args.only in (None, "step"):
        s = step_benchmark(base, args.batch, args.seq, args.prompt_len, args.iters, args.answer_frac)
        print(f"\n[1] training step, batch {args.batch} × seq {args.seq} ({args.answer_frac:.0%} labelled), "
              f"T={args.prompt_len} (median of {args.iters})")
        print(f"    PT-MoE             {s['ptmoe'] * 1000:8.1f} ms  ({s['ptmoe_tok_s']:.0f} tokens/s)")
        print(f"    PEFT prompt tuning {s['peft_pt'] * 1000:8.1f} ms  ({s['peft_tok_s']:.0f} tokens/s)")
        ok = "meets" if s["ratio_pt"] <= 0.85 else "MISSES"
        print(f"    ratio PT-MoE / PEFT PT = {s['ratio_pt']:.3f}   (target ≤ 0.85: {ok}; CPU time {s['cpu_ratio_pt']:.3f})")
        print(f"    LoRA               {s['lora'] * 1000:8.1f} ms")
        print(f"    PEFT LoRA          {s['peft_lora'] * 1000:8.1f} ms")
        print(f"    ratio LoRA / PEFT LoRA = {s['ratio_lora']:.3f}   (CPU time {s['cpu_ratio_lora']:.3f})")

    if args.only in (None, "generate"):
        gb = generation_benchmark(base, args.new_tokens, args.gen_batch, args.gen_iters)
        print(f"\n[2] greedy generation of {args.new_tokens} tokens, batch {args.gen_batch}, "
              f"{gb['prompt_tokens']} prompt tokens (median of {args.gen_iters})")
        print(f"    KV cache          {gb['cached_s']:8.2f} s  ({gb['cached_tok_s']:.1f} new tokens/s)")
        print(f"    recompute         {gb['recompute_s']:8.2f} s")
        ok = "meets" if gb["speedup"] >= 3 else "MISSES"
        print(f"    speed-up = {gb['speedup']:.2f}×   (target ≥ 3: {ok})")

    if args.only in (None, "inspect"):
        ib = inspect_benchmark(base, args.inspect_inputs, args.inspect_batch, args.inspect_tokens, args.inspect_iters)
        print(f"\n[3] inspect {args.inspect_inputs} inputs with the {ib['n_experts']} experts forced, batch "
              f"{args.inspect_batch}, up to {args.inspect_tokens} new tokens (median of {args.inspect_iters})")
        print(f"    separate calls    {ib['separate']:8.2f} s  (routed, then each expert forced)")
        print(f"    one pass          {ib['one_pass']:8.2f} s  (generate_all_experts)")
        ok = "meets" if ib["ratio"] <= 0.6 else "MISSES"
        print(f"    ratio one pass / separate = {ib['ratio']:.3f}   (target ≤ 0.6: {ok}; CPU time {ib['cpu_ratio']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
