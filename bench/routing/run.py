"""Does PT-MoE's router learn to route? The presets and each router aid, over seeds.

Every variant is PT-MoE (N=2, T=40, R=36) trained at the studio's CPU default budget (40 steps ×
batch 4) on the same data per seed, then evaluated on 64 questions per set. Per run: I(domain;
expert) in bits (1.0 = two experts splitting the domains cleanly, 0 = routing ignores the domain),
the mean confidence of the chosen expert, the load per expert, the per-set and macro scores, and the
training wall time. The frozen base model's own scores (no adapter) are the floor. ``studio`` and
``paper`` are compared paired on the same questions (bootstrap interval of the macro difference).

    python -m bench.routing                       # both mixes, all variants, 3 seeds -> docs/routing.md
    python -m bench.routing --mix builtin --variants paper,studio --seeds 0
    python -m bench.routing --json out.json --no-report     # e.g. on a GPU machine without plotly
    python -m bench.routing --report-from out.json [more.json ...]   # write docs/routing.md from saved runs

Each run is a job of the studio's job layer (``bench/runner.py``): locally one at a time per device,
or on a Ray cluster with ``--ray ADDRESS``; recorded in the project database (``--db``, experiment
``routing``), and a FINISHED run with the same name and configuration is reused, not trained again.
The plan is ``plan.py``, the report ``report.py``. Not part of CI. On 2 idle cores a run takes about
4 minutes (the default plan: hours); a GPU runs the whole plan in minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import platform
import shlex
import sys
from pathlib import Path

from bench.runner import find_finished, load_result, run_planned

from .plan import MIXES, ROOT, VARIANTS, data_config, sweeps
from .report import _majority_text, per_set, report, routing_summary


def run_plan(args) -> dict:
    """Train what the plan lacks through the job layer, evaluate the frozen model once per mix (the
    floor, in this process: no training, no run), and return the results as ``report`` reads them."""
    import torch

    from ptmoe_core.adapter import Adapter
    from ptmoe_core.config import MethodConfig, RunConfig
    from ptmoe_core.data import build_datasets
    from ptmoe_core.evaluate import evaluate
    from ptmoe_core.models import load_base_model
    from storage import Storage

    if args.threads:
        torch.set_num_threads(args.threads)
    base = load_base_model(RunConfig.from_dict({"model": {"name": args.model, "dtype": args.dtype}}).model)
    out = {"meta": {"model": args.model, "device": str(base.device), "dtype": str(base.dtype).replace("torch.", ""),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "cpu_threads": torch.get_num_threads(), "host": platform.node(),
                    "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "steps": args.steps, "batch": args.batch, "n_eval": args.n_eval,
                    "command": shlex.join(["python", "-m", "bench.routing", *sys.argv[1:]])},
           "variants": {k: VARIANTS[k] for k in args.variants}, "runs": [], "floor": {}}
    with Storage(args.db) as storage:
        planned = sweeps(args, args.experiment)
        finished = {p.name: find_finished(storage, args.experiment, p.name, p.key) for p in planned}
        todo = [p for p in planned if finished[p.name] is None]
        print(f"{len(planned)} runs, {len(planned) - len(todo)} cached; database {storage.label}, experiment "
              f"{args.experiment!r}", flush=True)
        finished.update(run_planned(storage, args.experiment, todo, ray=args.ray, threads=args.threads,
                                    gpus_per_run=args.gpus_per_run))
        for mix in args.mix:  # the floor: the frozen model, no adapter, the first seed's questions
            data = build_datasets(RunConfig.from_dict({"data": data_config(mix, args.data_dir, args.n_eval,
                                                                           args.seeds[0])}).data)
            floor = Adapter(base, MethodConfig(method="pt"), None, base.model, {"floor": True})
            res = evaluate(floor, data[1], max_new_tokens=args.max_new_tokens, batch_size=args.eval_batch)
            recs = [r.to_dict() for r in res.records]
            out["floor"][mix] = {"per_set": per_set(recs), "records": _slim(recs)}
        for p in planned:
            row = run_row(p, finished[p.name])
            out["runs"].append(row)
            print(f"{row['mix']:10s} {row['variant']:18s} seed {row['seed']}: I={row['mi_bits']:.2f} bits  "
                  f"conf {row['confidence']:.2f}  load {[round(x, 2) for x in row['load']]}  macro "
                  f"{100 * row['macro']:.1f}  train {row['train_s']:.1f}s  {_majority_text(row)}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out))
    return out


def run_row(planned, info) -> dict:
    """One run as the report reads it, from the result its worker saved."""
    from ptmoe_core.config import RunConfig

    res, _ = load_result(info)
    cfg = RunConfig.from_dict(info.config)
    mix, variant = planned.sweep.name.split("-", 1)
    variant = variant.rsplit("-s", 1)[0]
    recs = [r.to_dict() for r in res.evaluation.records]
    row = {"mix": mix, "variant": variant, "seed": cfg.train.seed, "method": cfg.to_dict()["method"],
           "train_s": _train_seconds(res), "total_s": res.elapsed_s, "run_id": info.id,
           "per_set": per_set(recs), **routing_summary(recs, cfg.method.n_experts),
           "entropy_curve": [h.router_entropy for h in res.history], "records": _slim(recs)}
    row["macro"] = sum(row["per_set"].values()) / len(row["per_set"])
    return row


def _train_seconds(res) -> float:
    """Training time alone (the last step's elapsed time), without the final evaluation."""
    return res.history[-1].elapsed_s if res.history else float("nan")


def _slim(records: list[dict]) -> list[dict]:
    keep = ("dataset", "id", "domain", "answer_type", "expert", "confidence", "em", "f1", "score", "prediction")
    return [{k: r.get(k) for k in keep} for r in records]


def _read_json(path: Path) -> dict:
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--mix", default=",".join(MIXES))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--n-eval", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--eval-batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--db", default=None, help="database URL or SQLite path (default: $PTMOE_DB, else runs/studio.db)")
    p.add_argument("--experiment", default="routing", help="experiment of the runs (default: routing)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the jobs on this Ray cluster (default: locally; env PTMOE_RAY_ADDRESS)")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray: GPUs per run (0.25: four runs per GPU)")
    p.add_argument("--json", help="also save every run to this file")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--no-plot", action="store_true", help="write the report without its plot")
    p.add_argument("--report-from", nargs="+", help="write the report from saved JSON files instead of running")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "routing.md")
    args = p.parse_args(argv)
    if args.report_from:
        parts = [_read_json(Path(f)) for f in args.report_from]
        tags = [Path(f).name.split("-")[0].replace("round", "r") for f in args.report_from]
        results = {"meta": {**parts[0]["meta"], "command": "python -m bench.routing --report-from "
                            + " ".join(args.report_from)},
                   "variants": {}, "runs": [], "floor": {},
                   "sources": [{**p["meta"], "tag": t} for p, t in zip(parts, tags, strict=True)]}
        for i, part in enumerate(parts, 1):
            # Several files are rounds of the plan (named roundN-*.json[.gz]): their variants get the round's tag.
            name = tags[i - 1]
            tag = (lambda v, name=name: f"{name} {v}") if len(parts) > 1 else (lambda v: v)
            results["variants"].update({tag(k): v for k, v in part["variants"].items()})
            results["runs"] += [{**r, "variant": tag(r["variant"])} for r in part["runs"]]
            for mix, f in part.get("floor", {}).items():
                results["floor"].setdefault(mix, f)
        print(report(results, args.out, plot=not args.no_plot))
        return 0
    try:
        args.mix = [m for m in args.mix.split(",") if m]
        args.variants = [v for v in args.variants.split(",") if v]
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        p.error("--seeds takes comma-separated integers")
    bad = [m for m in args.mix if m not in MIXES] + [v for v in args.variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown mix/variant {bad}; mixes {list(MIXES)}, variants {list(VARIANTS)}")
    if "comparison" in args.mix and not (args.data_dir / "gsm8k" / "train.jsonl").is_file():
        p.error(f"the comparison mix needs {args.data_dir}/gsm8k and squad (pass --data-dir)")
    results = run_plan(args)
    if not args.no_report:
        print(report(results, args.out, plot=not args.no_plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
