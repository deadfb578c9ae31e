"""Issue 22: which router settings make PT-MoE specialise by data set AND score at least as well as
the ``paper`` preset and plain PT, on the comparison's mix (bench/quality.py's FULL budget).

    python -m bench.routing_study --runs paper:0,pt:0,studio:0,domains:0 [--ood] [--db PATH]
    python -m bench.routing_study --report-only          # regenerate docs/routing_study.md from stored runs

Every run trains on the comparison's mix (SQuAD v2 answerable 400 + GSM8K 400 + built-in 4×100,
SmolLM2-135M, 50 steps × batch 4, bench/quality.py's ``make_config``) and is then evaluated on up to
``--n-eval`` questions per evaluation set (SQuAD's test-split passages, GSM8K's test file, the built-in
test splits; ``--ood`` adds the built-in out-of-domain variants), the same questions for every run,
so runs pair by seed and question. Runs are recorded in the database (experiment ``routing-study``)
and cached: a FINISHED run of the same name and configuration whose ``result.json`` exists is not
trained again (one whose adapter exists but whose evaluation was interrupted is only evaluated).
The page is regenerated from the stored ``result.json`` files of every run of the experiment.
The plan is ``plan.py``, the page ``report.py``.
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

from bench.quality import plan as q  # the comparison's budget and data
from bench.quality.report import fmt_s
from bench.runner import TARGET_TRAIN_ONLY, load_result, plan_sweep, run_planned
from storage.sweep_spec import SweepSpec

from .plan import BUDGET, EXPERIMENT, ROOT, make_config, variants
from .report import headline, preset_of, write_page

RESULT_NAME = "result.json"


# ---------------------------------------------------------------------------------------------
# Running


def stored_result(storage, name: str, key: str) -> tuple[dict[str, Any] | None, Any]:
    """(the result of a FINISHED run of this name and configuration, or None; that run, when its adapter
    exists but its result does not: it needs evaluating only)."""
    from ptmoe_core.config import RunConfig
    from storage.models import RunStatus

    pending = None
    for run in storage.list_runs(experiment=EXPERIMENT, search=name, status=RunStatus.FINISHED):
        if run.name != name or not run.adapter_path or not Path(run.adapter_path).is_dir():
            continue
        # A run stored before a method key existed reads it as the code then did (config._ADDED_LATER).
        if q.config_key(RunConfig.from_dict(run.config)) != key:
            continue
        p = Path(run.output_dir) / RESULT_NAME
        try:
            res = json.loads(p.read_text()) if p.is_file() else {}
        except (OSError, ValueError):
            res = {}
        if res.get("run_id") == run.id:
            return {**res, "config_key": key}, run
        pending = run
    return None, pending


def train_through_jobs(storage, cfg, args) -> tuple[int, Any, dict[str, Any]]:
    """Train ``cfg`` as a one-run sweep through the studio's job layer (a worker process, locally or on
    Ray with ``--ray``), without the trainer's evaluation: this script evaluates the adapter itself."""
    base = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "output_dir")}
    spec = SweepSpec(base, {"method.method": [cfg.method.method]}, [cfg.train.seed], EXPERIMENT, cfg.name)
    info = run_planned(storage, EXPERIMENT, plan_sweep(spec, lambda _r: cfg.name), ray=args.ray,
                       threads=args.threads, target=TARGET_TRAIN_ONLY,
                       log=lambda m: print(f"[study] {m}", flush=True))[cfg.name]
    result, machine = load_result(info)
    return info.id, result, machine


def run_one(storage, base, data, name: str, label: str, method: dict[str, Any], seed: int, args) -> dict[str, Any]:
    """Train (unless stored) and evaluate one run; the evaluation goes ``--chunk`` questions per set at a
    time, and ``result.json`` is written after each chunk (``partial`` until every question is answered),
    so an interrupted study keeps, and later resumes from, what it evaluated."""
    from ptmoe_core.adapter import load_adapter

    cfg = make_config(name, method, seed, args)
    key = q.config_key(cfg)
    res, pending = stored_result(storage, cfg.name, key)
    train_examples, eval_sets = data
    if res is not None and not res.get("partial") and {(k, ex["id"]) for k, v in eval_sets.items() for ex in v} <= {
            (r["dataset"], r["id"]) for r in res["records"]}:
        print(f"[study] {cfg.name}: cached (run {res['run_id']})", flush=True)
        return res
    if pending is None and res is None:
        print(f"[study] training {cfg.name} ...", flush=True)
        run_id, result, machine = train_through_jobs(storage, cfg, args)
        res = {"name": cfg.name, "variant": name, "label": label, "seed": seed, "run_id": run_id, "config_key": key,
               "method": dataclasses.asdict(cfg.method), "records": [], "partial": True,
               "train_s": result.elapsed_s, "eval_s": 0.0, "final_loss": result.final_loss,
               "train_other_cpu": machine["other_cpu"], "load_before": machine["load_before"],
               "train_domain_routing": _train_routing(result.history)}
    elif res is None:  # trained by a version that evaluated only at the end
        res = {"name": cfg.name, "variant": name, "label": label, "seed": seed, "run_id": pending.id,
               "config_key": key, "method": dataclasses.asdict(cfg.method), "records": [], "partial": True,
               "train_s": None, "eval_s": 0.0, "final_loss": None, "train_other_cpu": None, "load_before": None,
               "train_domain_routing": {}}
    run = storage.get_run(res["run_id"])
    path = Path(run.output_dir, RESULT_NAME)
    path.write_text(json.dumps(res, indent=1))
    adapter = load_adapter(run.adapter_path, base=base)
    done = {(r["dataset"], r["id"]) for r in res["records"]}
    sets = {k: [ex for ex in v if (k, ex["id"]) not in done] for k, v in eval_sets.items()}
    while any(sets.values()):
        chunk = {k: v[: args.chunk] for k, v in sets.items() if v}
        sets = {k: v[args.chunk:] for k, v in sets.items()}
        t = time.time()
        res["records"] += evaluate_records(adapter, chunk, cfg)
        res["eval_s"] += time.time() - t
        res["partial"] = any(sets.values())
        res["finished_at"] = time.time()
        path.write_text(json.dumps(res, indent=1))
        print(f"[study] {cfg.name}: {len(res['records'])} questions answered; {headline(res)}", flush=True)
    print(f"[study] {cfg.name}: done; train {fmt_s(res['train_s'] or 0)}, eval {fmt_s(res['eval_s'])}", flush=True)
    return res


def evaluate_records(adapter, sets: dict[str, list[dict]], cfg) -> list[dict[str, Any]]:
    """The answers to ``sets`` ({name: examples}), scored, with the expert each went to."""
    from ptmoe_core.data.formatting import FormatConfig
    from ptmoe_core.evaluate import evaluate

    ev = evaluate(adapter, sets, max_new_tokens=cfg.train.max_new_tokens, batch_size=cfg.train.eval_batch_size,
                  format_cfg=FormatConfig.from_data_config(cfg.data))
    return [{"dataset": r.dataset, "id": r.id, "ood": r.ood, "answer_type": r.answer_type, "f1": r.f1, "em": r.em,
             "correct": bool(r.correct), "expert": r.expert, "confidence": r.confidence,
             "prediction": r.prediction[:120]} for r in ev.records]


def _train_routing(history) -> dict[str, list[int]]:
    """Training inputs per domain and expert over the last fifth of the steps."""
    out: dict[str, list[int]] = {}
    for h in history[-max(1, len(history) // 5):]:
        for d, counts in (h.domain_routing or {}).items():
            row = out.setdefault(d, [0] * len(counts))
            out[d] = [a + b for a, b in zip(row, counts, strict=True)]
    return out


# ---------------------------------------------------------------------------------------------
# Diagnosis without training: does the router's input tell the data sets apart?


def diagnose(base, data, cfg) -> dict[str, Any]:
    """On the router's input (masked mean input embedding, standardised with the training inputs' μ, σ
    as ``router_norm`` does): a logistic probe of the data set trained on the training inputs, its
    accuracy per held-out evaluation set; k-means (k = 2, 3) of the training inputs and I(set; cluster)
    of the held-out questions; and how far apart the sources' centroids lie against their spread (d′)."""
    import torch

    from ptmoe_core.data.formatting import FormatConfig, encode_example
    from ptmoe_core.metrics import mutual_information_bits
    from ptmoe_core.router import kmeans
    from ptmoe_core.trainer import router_inputs

    fmt = FormatConfig.from_data_config(cfg.data)
    shim = type("A", (), {"base": base})()

    def inputs(rows):
        return router_inputs(shim, [encode_example(base.tokenizer, ex, fmt, with_answer=True) for ex in rows])[0]

    train_examples, eval_sets = data
    xtr = inputs(list(train_examples))
    dtr = list(train_examples["domain"])
    names = [k for k, v in eval_sets.items() for _ in v]
    xev = inputs([ex for v in eval_sets.values() for ex in v])
    mu, sd = xtr.mean(0), xtr.std(0)
    ztr, zev = (xtr - mu) / sd, (xev - mu) / sd
    classes = sorted(set(dtr))
    y = torch.tensor([classes.index(d) for d in dtr])
    W = torch.zeros(ztr.shape[1], len(classes), requires_grad=True)
    b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ztr @ W + b, y) + 1e-3 * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (zev @ W + b).argmax(1).tolist()
    probe = {s: sum(classes[p] == s for p, n in zip(pred, names, strict=True) if n == s) / names.count(s)
             for s in eval_sets if s in classes}
    clusters = {}
    for k in (2, 3):
        g = torch.Generator().manual_seed(0)
        labels = kmeans(ztr, k, g)
        cents = torch.stack([ztr[labels == j].mean(0) for j in range(k)])
        held = torch.cdist(zev, cents).argmin(1).tolist()
        share = {}
        for s in eval_sets:
            got = [c for c, n in zip(held, names, strict=True) if n == s]
            top = max(set(got), key=got.count)
            share[s] = (top, got.count(top) / len(got))
        clusters[k] = {"mi": mutual_information_bits(names, held), "majority": share}
    src = ["builtin" if d.startswith("builtin") else d for d in dtr]
    sep = {}
    for a, c in (("squad-v2", "gsm8k"), ("squad-v2", "builtin"), ("gsm8k", "builtin")):
        ma, mc = torch.tensor([s == a for s in src]), torch.tensor([s == c for s in src])
        w = ztr[ma].mean(0) - ztr[mc].mean(0)
        pa, pc = ztr[ma] @ w / w.norm(), ztr[mc] @ w / w.norm()
        sep[f"{a} / {c}"] = float((pa.mean() - pc.mean()) / ((pa.var() + pc.var()) / 2).sqrt())
    # What a random (orthogonal) router direction sees: the share of the inputs' variance that lies
    # between the data sets (a random direction captures the same share on average).
    between = sum(float((ztr[y == i].mean(0)).pow(2).sum()) * int((y == i).sum()) for i in range(len(classes)))
    # What the candidate adds to a run's wall time: grouping the training inputs and fitting the router.
    from ptmoe_core.router import Router, input_groups

    t = time.process_time()
    router = Router(xtr.shape[1], 2, norm=True)
    router.set_input_stats(mu, sd)
    router.fit_groups(xtr, input_groups(xtr, dtr, 2, "domains", torch.Generator().manual_seed(0)), 0.7)
    fit_cpu_s = time.process_time() - t
    return {"probe": probe, "clusters": clusters, "d_prime": sep, "fit_cpu_s": fit_cpu_s,
            "between_share": between / float(ztr.pow(2).sum()), "n_train": len(dtr)}


def load_results(storage) -> list[dict[str, Any]]:
    from ptmoe_core.config import MethodConfig
    from storage.models import RunStatus

    out = []
    for run in storage.list_runs(experiment=EXPERIMENT, status=RunStatus.FINISHED):
        p = Path(run.output_dir or "", RESULT_NAME)
        if p.is_file():
            res = json.loads(p.read_text())
            if res.get("run_id") == run.id:
                if res.get("train_s") is None and run.started_at and run.ended_at:
                    # Trained by a version that saved its result only after the evaluation: the run's
                    # record ends when training does (the evaluation comes after it).
                    res["train_s"] = run.ended_at - run.started_at
                # Its method as today's code reads it (a key added since gets what the code did then).
                res["method"] = dataclasses.asdict(MethodConfig.from_dict(res["method"]))
                out.append(res)
    return out



# ---------------------------------------------------------------------------------------------
# Main


def studio_variant(results: list[dict[str, Any]]) -> str | None:
    """The variant whose settings are the studio preset's (``report.preset_of``), so the targets follow
    the preset rather than a name to keep in step with it; None when no stored variant has them."""
    return next((r["variant"] for r in results if "`studio`" in (preset_of(r["method"]) or "")), None)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.routing_study", description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="", help="comma-separated VARIANT:SEED (e.g. paper:0,pt:0); empty: none")
    p.add_argument("--report-only", action="store_true", help="only regenerate the page from stored runs")
    p.add_argument("--diagnose", action="store_true", help="measure how well the router's input separates the "
                   "data sets (no training; stored for the page)")
    p.add_argument("--db", default=str(ROOT / "runs" / "study.db"))
    p.add_argument("--out-root", default=str(ROOT / "runs" / "study"))
    p.add_argument("--out", default=str(ROOT / "docs" / "routing_study.md"))
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", default=str(q.DEFAULT_DATA_DIR))
    p.add_argument("--n-eval", type=int, default=BUDGET.n_eval)
    p.add_argument("--chunk", type=int, default=20, help="questions per set evaluated between saves")
    p.add_argument("--ood", action="store_true", help="also evaluate on the built-in out-of-domain variants")
    p.add_argument("--default", default=None,
                   help="the variant the targets are checked for (default: the one with the studio preset's settings)")
    p.add_argument("--builtin-note", default=None, help="the built-in routing bench's outcome, for the page")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="train on this Ray cluster (default: locally; env PTMOE_RAY_ADDRESS)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from storage import Storage

    if args.threads:
        torch.set_num_threads(args.threads)
    vs = variants()
    todo = []
    for item in filter(None, (s.strip() for s in args.runs.split(","))):
        name, _, seed = item.partition(":")
        if name not in vs or not seed.isdigit():
            raise SystemExit(f"--runs: {item!r} is not VARIANT:SEED with VARIANT one of {', '.join(vs)}")
        todo.append((name, int(seed)))
    storage = Storage(args.db)
    diag_path = Path(args.out_root) / "diagnosis.json"
    if args.diagnose and not args.report_only:
        from ptmoe_core.config import ModelConfig
        from ptmoe_core.data import build_datasets
        from ptmoe_core.models import load_base_model

        base = load_base_model(ModelConfig(name=args.model, device=args.device))
        cfg = make_config("paper", vs["paper"][1], 0, args)
        diag_path.parent.mkdir(parents=True, exist_ok=True)
        diag_path.write_text(json.dumps(diagnose(base, build_datasets(cfg.data), cfg), indent=1))
        print(f"[study] wrote {diag_path}", flush=True)
    if todo and not args.report_only:
        from ptmoe_core.config import ModelConfig
        from ptmoe_core.data import build_datasets
        from ptmoe_core.models import load_base_model

        base = load_base_model(ModelConfig(name=args.model, device=args.device))
        dc = make_config(todo[0][0], vs[todo[0][0]][1], 0, args).data
        if args.ood:
            dc = dataclasses.replace(dc, eval=q.data_specs(Path(args.data_dir).resolve(),
                                                           dataclasses.replace(BUDGET, n_eval=args.n_eval))[1])
        train_examples, evals = build_datasets(dc)
        data = (train_examples, {k: [dict(ex) for ex in v] for k, v in evals.items()})
        print(f"[study] evaluation sets { {k: len(v) for k, v in data[1].items()} }", flush=True)
        for name, seed in todo:
            run_one(storage, base, data, name, vs[name][0], vs[name][1], seed, args)
    results = load_results(storage)
    meta = {"command": shlex.join(["python", "-m", "bench.routing_study", *(argv if argv is not None else sys.argv[1:])]),
            "command_base": "python -m bench.routing_study --report-only",
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "db": storage.label,
            "machine": f"{platform.machine()} {os.cpu_count()}-core CPU"}
    if args.builtin_note:
        meta["builtin_note"] = args.builtin_note
    if diag_path.is_file():
        meta["diagnosis"] = json.loads(diag_path.read_text())
    if results:
        write_page(Path(args.out), results, meta, args.default or studio_variant(results))
        print(f"[study] wrote {args.out} from {len(results)} run(s)", flush=True)
    storage.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
