"""The paper's comparison on real data: PT, DPT, SMoP, PT-MoE and LoRA under one trainer, one budget.

    python -m bench.quality [--quick] [--seeds K] [--model smollm2-135m] [--device auto] [--db URL]
                            [--out docs/results.md] [--only METHOD,...] [--threads N] [--ray ADDRESS]

Training mixes SQuAD v2.0 answerable questions, GSM8K (final number) and the built-in tasks, capped so
the three parts are about the same size; evaluation uses held-out questions of each (in-domain: the
SQuAD passages of the test split, GSM8K's test file, the built-in test splits) and the built-in
out-of-domain variants (``builtin:all-ood``). Every method gets the same steps, batch, sequence
lengths, data order and seed; its real trainable-parameter count on the model used is reported.

The plan (``plan.py``) is run as sweeps through the studio's job layer (``bench/runner.py``): each run
is a job of its own (``python -m storage.worker``), locally one at a time per device, or on a Ray
cluster with ``--ray ADDRESS``, recorded in the project database (experiment ``paper-comparison``, or
``paper-comparison-quick``), so the studio's Runs view and sweep view show them. Resumable: a run whose
FINISHED record and result file exist with the same name and configuration is not trained again.
``docs/results.md`` and its plots (``docs/results/*.png``) are regenerated from the runs (``report.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench.runner import find_finished, load_result, run_planned
from ptmoe_core.routing_summary import RoutingSummary

from .plan import (
    DEFAULT_DATA_DIR,
    EXPERIMENT,
    FULL,
    METHODS,
    QUICK,
    ROOT,
    SEEDED,
    SQUAD_UNANSWERABLE,
    Budget,
    RunSpec,
    build_plan,
    sweeps,
)
from .report import families, fmt_s, lrs, pct, summary, write_report

RESULT_NAME = "result.json"  # the run's summary (``summarize_result``) beside the worker's RESULT_FILE


def find_cached(storage, experiment: str, name: str, key: str) -> dict[str, Any] | None:
    """The result of a FINISHED run of this experiment with the same name and configuration whose
    adapter and result.json still exist."""
    from storage.models import RunStatus

    for run in storage.list_runs(experiment=experiment, search=name, status=RunStatus.FINISHED):
        if run.name != name or not run.output_dir:
            continue
        p = Path(run.output_dir) / RESULT_NAME
        if not p.is_file() or not run.adapter_path or not Path(run.adapter_path).is_dir():
            continue
        try:
            res = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if res.get("config_key") == key and res.get("run_id") == run.id:
            return res
    return None


def summarize_result(spec: RunSpec, cfg, run_id: int, result, formula_params: int, key: str) -> dict[str, Any]:
    """What the report needs from one run, JSON-ready."""
    ev = result.evaluation
    records = ev.records if ev is not None else []
    scores = ev.scores if ev is not None else {}
    train_s = result.history[-1].elapsed_s if result.history else 0.0
    routing = RoutingSummary.of(records, cfg.method.n_experts) if cfg.method.is_routed else None
    return {
        "name": spec.name,
        "label": spec.label,
        "group": spec.group,
        "seed": spec.seed,
        "family": spec.family,
        "run_id": run_id,
        "config_key": key,
        "config": cfg.to_dict(),
        "method": dataclasses.asdict(cfg.method),
        "trainable_params": int(result.trainable_params),
        "lr": cfg.train.resolved_lr(cfg.method.method),
        "formula_params": int(formula_params),
        "scores": scores,
        "eval_loss": ev.loss if ev is not None else None,
        "train_s": train_s,
        "eval_s": max(0.0, result.elapsed_s - train_s),
        "final_loss": result.final_loss,
        "history": [{"step": h.step, "loss": h.loss, "router_entropy": h.router_entropy,
                     "expert_load": list(h.expert_load), "tokens_per_s": h.tokens_per_s} for h in result.history],
        "expert_load": routing.per_set if routing else {},
        "router_entropy_eval": routing.entropy_per_set if routing else {},
        "records": [{"dataset": r.dataset, "id": r.id, "ood": r.ood, "answer_type": r.answer_type,
                     "f1": r.f1, "em": r.em, "correct": bool(r.correct), "expert": r.expert,
                     "prediction": r.prediction[:200], "gold": r.gold[:3]} for r in records],
        "adapter_dir": str(result.adapter_dir) if result.adapter_dir else None,
        "finished_at": time.time(),
    }


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the five methods at a tiny budget (minutes)")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default="auto")
    p.add_argument("--db", default=None, help="database URL or SQLite path (default: $PTMOE_DB, else runs/studio.db)")
    p.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    p.add_argument("--only", default=None, help="comma-separated methods (pt,dpt,smop,ptmoe,lora)")
    p.add_argument("--seeds", type=int, default=None,
                   help="train the five methods and the studio preset with this many seeds (default: 1 with "
                        "--quick, else 2); the ablations and sweeps run with one")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    p.add_argument("--experiment", default=None, help=f"default: {EXPERIMENT} (-quick with --quick)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--plots", choices=("png", "html", "none"), default="png")
    # Budget overrides (tests; the defaults are the plan)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--n-eval", type=int, default=None)
    p.add_argument("--train-cap", type=int, default=None)
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the plan's jobs on this Ray cluster (default: locally; env PTMOE_RAY_ADDRESS)")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray: GPUs per run (0.25: four runs per GPU)")
    p.add_argument("--no-calibrate", action="store_true", help="skip the timing estimate before the runs")
    return p.parse_args(argv)


def calibrate(base, data, b: Budget, cfg) -> tuple[float, float]:
    """Seconds of one training step (batch b, PT-MoE) and of generating one evaluation answer."""
    import torch

    from ptmoe_core.adapter import build_adapter
    from ptmoe_core.data.formatting import FormatConfig, encode_example
    from ptmoe_core.generate import generate
    from ptmoe_core.trainer import batch_loss

    train, evals = data
    fmt = FormatConfig.from_data_config(cfg.data)
    feats = [encode_example(base.tokenizer, train[i], fmt, True) for i in range(min(len(train), 4 * b.batch_size))]
    ad = build_adapter(base, cfg.method, init_text="Answer the question.", seed=0).train()
    opt = torch.optim.AdamW(ad.trainable_parameters(), lr=1e-3)
    times = []
    for k in range(2):
        t = time.perf_counter()
        loss, _ = batch_loss(ad, feats[k * b.batch_size:(k + 1) * b.batch_size])  # as the trainer batches
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    ex = [e for ds in evals.values() for e in list(ds)[:2]][: b.eval_batch_size]
    enc = [encode_example(base.tokenizer, e, fmt, False) for e in ex]
    t = time.perf_counter()
    generate(ad, enc, max_new_tokens=b.max_new_tokens, batch_size=b.eval_batch_size)
    gen = (time.perf_counter() - t) / max(1, len(enc))
    return min(times), gen


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the plan (training what is not cached, through the job layer), write the report; returns
    {results, meta, out, plots}."""
    args = parse_args(argv)
    t_start = time.time()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from ptmoe_core.config import DEFAULT_LR, DEFAULT_PROMPT_LR, ModelConfig, RunConfig
    from ptmoe_core.data import build_datasets
    from ptmoe_core.models import load_base_model
    from ptmoe_core.params import ModelShape, count_params
    from storage import Storage

    only = [m.strip() for m in args.only.split(",") if m.strip()] if args.only else None
    if only and any(m not in METHODS for m in only):
        raise SystemExit(f"--only: unknown method(s) {[m for m in only if m not in METHODS]}; known: {METHODS}")
    b0 = QUICK if args.quick else FULL
    b = dataclasses.replace(b0, **{k: v for k, v in (("steps", args.steps), ("batch_size", args.batch),
                                                        ("n_eval", args.n_eval), ("train_cap", args.train_cap))
                                      if v is not None})
    experiment = args.experiment or (EXPERIMENT + ("-quick" if args.quick else ""))
    data_dir = Path(args.data_dir).resolve()
    for f in ("squad/squad-v2-sample.json", "gsm8k/train.jsonl", "gsm8k/test.jsonl"):
        if not (data_dir / f).is_file():
            raise SystemExit(f"missing {data_dir / f} (pass --data-dir, the folder holding squad/ and gsm8k/)")
    plan = build_plan(args.quick, only, args.seeds if args.seeds is not None else (1 if args.quick else 2))
    planned = sweeps(plan, b, args.model, args.device, data_dir, experiment)
    storage = Storage(args.db)
    out = Path(args.out).resolve()
    print(f"[quality] database {storage.label}, experiment {experiment!r}; report {out}", flush=True)

    base = load_base_model(ModelConfig(name=args.model, device=args.device))
    shape = ModelShape.from_hf_config(base.model.config)
    t = time.time()
    data = build_datasets(planned[0].config.data)  # the same data config for every run
    train_mix: dict[str, int] = {}
    for d in data[0]["domain"]:
        train_mix[d] = train_mix.get(d, 0) + 1
    print(f"[quality] data: {len(data[0])} training examples {train_mix}; evaluation sets "
          f"{ {k: len(v) for k, v in data[1].items()} } ({time.time() - t:.1f}s)", flush=True)

    cached = {p.name: find_cached(storage, experiment, p.name, p.key) for p in planned}
    finished = {p.name: find_finished(storage, experiment, p.name, p.key) for p in planned if cached[p.name] is None}
    todo = [p for p in planned if cached[p.name] is None and finished[p.name] is None]
    n_eval_total = sum(len(v) for v in data[1].values())
    print(f"[quality] plan: {len(plan)} runs ({len(plan) - len(todo)} cached), {b.steps} steps x batch "
          f"{b.batch_size}, {n_eval_total} evaluation questions per run, max {b.max_source_tokens} source tokens",
          flush=True)
    if todo and not args.no_calibrate:
        step_s, gen_s = calibrate(base, data, b, todo[0].config)
        per_run = b.steps * step_s + n_eval_total * gen_s * 1.3  # + the eval-loss pass
        print(f"[quality] measured: {step_s:.2f} s per training step, {gen_s:.2f} s per evaluation answer -> "
              f"about {fmt_s(per_run)} per run, {fmt_s(per_run * len(todo))} for {len(todo)} run(s) "
              f"(prompt length and method change it somewhat)", flush=True)
    for s in plan:
        print(f"  - {s.name:24s} {s.group:8s} {json.dumps(s.method)}" + ("" if any(p.name == s.name for p in todo)
                                                                         else "  [cached]"), flush=True)
    trained = run_planned(storage, experiment, todo, ray=args.ray, threads=args.threads,
                          gpus_per_run=args.gpus_per_run, log=lambda m: print(f"[quality] {m}", flush=True))
    finished.update(trained)

    results = []
    for s, p in zip(plan, planned, strict=True):
        res = cached[s.name]
        if res is None:
            info = finished[s.name]
            result, machine = load_result(info)
            cfg = RunConfig.from_dict(info.config)
            res = {**summarize_result(s, cfg, info.id, result, count_params(cfg.method, shape), p.key), **machine}
            Path(info.output_dir, RESULT_NAME).write_text(json.dumps(res, indent=1))
            if s.name in trained:
                res["_trained_now"] = True
                sm = summary(res)
                print(f"[quality] {s.name}: run {info.id}, {res['trainable_params']:,} params, QA F1 "
                      f"{pct(sm['qa_f1'])}, math {pct(sm['math_acc'])}, in {pct(sm['in_domain'])} / ood "
                      f"{pct(sm['out_of_domain'])}; train {fmt_s(res['train_s'])}, eval {fmt_s(res['eval_s'])}",
                      flush=True)
        # where the report puts it is the plan's business, not the stored file's
        res = {**res, "label": s.label, "group": s.group, "seed": s.seed, "family": s.family}
        if res.get("lr") is None:  # results of older versions: the trainer recorded it in the database
            lr = storage.params(res["run_id"]).get("info.lr")
            res["lr"] = float(lr) if lr is not None else None
        results.append(res)

    plots: dict[str, Path] = {}
    note = None
    if args.plots != "none":
        from . import plots as qp

        main = [r for r in results if r["group"] == "methods"]
        others = [r for r in results if r["group"] != "methods" or r["name"] == "ptmoe"]
        figs = {"learning_curves": qp.learning_curves(main, "Training loss, same data order and budget"),
                "learning_curves_ablations": qp.learning_curves(others, "Training loss, PT-MoE variants and sweeps")
                if len(others) > 1 else None,
                "router_entropy": qp.router_entropy([r for r in results if r["method"]["method"] in ("ptmoe", "smop")
                                                      and r["method"]["n_experts"] > 1]),
                "expert_usage": qp.expert_usage([r for r in results if r["method"]["n_experts"] > 1
                                                 and r["method"]["method"] in ("ptmoe", "smop")]),
                "scores": qp.scores_bars([{**r, "summary": summary(r)} for r in results if r["group"] != "seeds"]),
                "seeds": qp.seed_scores({runs[0]["label"]: [summary(r) for r in runs]
                                         for k, runs in families(results).items() if k in SEEDED and len(runs) > 1})}
        plots, note = qp.export(figs, out.parent / out.stem, args.plots)
    command = shlex.join(["python", "-m", "bench.quality", *(argv if argv is not None else sys.argv[1:])])
    meta = {
        "command": command, "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU" + (
            f", {torch.cuda.get_device_name(0)}" if base.device.type == "cuda" else ""),
        "model": args.model, "hidden": shape.hidden, "device": str(base.device),
        "dtype": str(base.dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
        "number_match": planned[0].config.data.number_match, "squad_unanswerable": SQUAD_UNANSWERABLE,
        "experiment": experiment, "db": storage.label, "quick": args.quick, "budget": {**dataclasses.asdict(b),
                                                                                      "warmup": b.warmup},
        "n_train": len(data[0]), "train_mix": ", ".join(f"{k} {v}" for k, v in sorted(train_mix.items())),
        "lr_prompt": lrs(results, prompt=True) or DEFAULT_PROMPT_LR,
        "lr_lora": lrs(results, prompt=False) or DEFAULT_LR["lora"],
        "wall_s": time.time() - t_start, "trained": sum(1 for r in results if r.get("_trained_now")),
        "cached": sum(1 for r in results if not r.get("_trained_now")),
    }
    write_report(out, results, meta, plots, note)
    storage.close()
    print(f"[quality] wrote {out} ({meta['trained']} trained, {meta['cached']} cached, {fmt_s(meta['wall_s'])})",
          flush=True)
    return {"results": results, "meta": meta, "out": out, "plots": plots}


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0
