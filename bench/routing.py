"""Does PT-MoE's router learn to route? The presets and each router aid, over seeds.

Every variant is PT-MoE (N=2, T=40, R=36) trained at the studio's CPU default budget (40 steps ×
batch 4) on the same data per seed, then evaluated on 64 questions per set. Per run: I(domain;
expert) in bits (1.0 = two experts splitting the domains cleanly, 0 = routing ignores the domain),
the mean confidence of the chosen expert, the load per expert, the per-set and macro scores, and the
training wall time. The frozen base model's own scores (no adapter) are the floor. ``studio`` and
``paper`` are compared paired on the same questions (bootstrap interval of the macro difference).

    python bench/routing.py                       # both mixes, all variants, 3 seeds -> docs/routing.md
    python bench/routing.py --mix builtin --variants paper,studio --seeds 0
    python bench/routing.py --json out.json --no-report     # e.g. on a GPU machine without plotly
    python bench/routing.py --report-from out.json [more.json ...]   # write docs/routing.md from saved runs

Not part of CI. On 2 idle cores a run takes about 4 minutes (the default plan: hours); a GPU runs
the whole plan in minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPE = {"method": "ptmoe", "prompt_len": 40, "n_experts": 2, "rank": 36}
# name -> method overrides (laid over SHAPE). Each aid is tried on top of `paper` and removed
# from `studio`, so both its effect alone and its share of the preset are measured.
VARIANTS: dict[str, dict] = {
    "paper": {"preset": "paper"},
    "studio": {"preset": "studio"},
    # Leave-one-out: what each of the studio's aids contributes.
    "studio-norm": {"preset": "studio", "router_norm": False},
    "studio-lr10": {"preset": "studio", "router_lr_mult": 1.0},
    "studio-fullrank": {"preset": "studio", "init": "text"},
    "studio-noise": {"preset": "studio", "noise_type": "multiplicative", "noise_std": 0.01},
    "studio-mi": {"preset": "studio", "mi_loss": 0.0},
    "studio-balance": {"preset": "studio", "balance_loss": 0.0},
    # Alternatives not in the preset.
    "studio+bias": {"preset": "studio", "bias_balance": 0.05},
    "studio+inputs-init": {"preset": "studio", "init": "inputs"},
}
BUILTIN_EVAL = ["builtin:qa", "builtin:arith", "builtin:units", "builtin:dates"]
MIXES = ("builtin", "comparison")


def data_config(mix: str, data_dir: Path, n_eval: int, seed: int) -> dict:
    if mix == "builtin":
        return {"train": ["builtin:all"], "eval": BUILTIN_EVAL, "max_eval_examples": n_eval, "seed": seed}
    squad = f"squad:{data_dir / 'squad' / 'squad-v2-sample.json'}"
    gsm = f"gsm8k:{data_dir / 'gsm8k'}"
    return {
        "train": [f"{squad}@2000", f"{gsm}/train.jsonl@2000", "builtin:all?n=500"],
        "eval": [f"{squad}?split=test", f"{gsm}/test.jsonl?split=all", *BUILTIN_EVAL],
        "max_eval_examples": n_eval, "seed": seed,
    }


def primary(r: dict) -> float:
    """The per-question score a table reports: token F1 for spans and text, accuracy for numbers
    (the engine's ``score``, which is exactly that)."""
    return float(r["score"])


def per_set(records: list[dict]) -> dict[str, float]:
    sets: dict[str, list[float]] = {}
    for r in records:
        sets.setdefault(r["dataset"], []).append(primary(r))
    return {k: sum(v) / len(v) for k, v in sets.items()}


def routing_summary(records: list, n_experts: int) -> dict:
    """I(domain; expert), mean confidence, expert load (the engine's ``RoutingSummary``) and each
    domain's majority expert, from the same domain × expert table the Inspect tab and the trainer
    count (``routing_summary.routing_counts``). ``records``: ``EvalRecord`` objects or their dict form."""
    from ptmoe_core.eval_record import EvalRecord
    from ptmoe_core.routing_summary import RoutingSummary, routing_counts

    recs = [EvalRecord.of(r) for r in records]
    s = RoutingSummary.of(recs, n_experts)
    routed = [r for r in recs if r.expert is not None]
    counts = routing_counts([r.domain or "" for r in routed], [r.expert for r in routed], n_experts)
    nan = float("nan")
    return {
        "mi_bits": s.mi_bits if s else nan,
        "confidence": s.mean_confidence if s and s.mean_confidence is not None else nan,
        "load": s.load if s else [0.0] * n_experts,
        # ties go to the lower expert index
        "majority": {d: [max(range(n_experts), key=c.__getitem__), max(c) / sum(c)] for d, c in sorted(counts.items())},
    }


def paired_macro_diff(a: list[dict], b: list[dict], iters: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """macro(a) − macro(b) on the same questions, with a 95% bootstrap interval that resamples
    questions within each set (the statistic the table reports: the mean of per-set means)."""
    from ptmoe_core.metrics import paired_macro_bootstrap

    key = lambda r: (r["dataset"], r["id"])  # noqa: E731
    bi = {key(r): primary(r) for r in b}
    by_set: dict[str, list[float]] = {}
    for r in a:
        if key(r) in bi:
            by_set.setdefault(r["dataset"], []).append(primary(r) - bi[key(r)])
    return paired_macro_bootstrap(by_set, iters, seed) or (float("nan"),) * 3


# ---------------------------------------------------------------------------------------------
# Running


def run_plan(args) -> dict:
    import torch

    from ptmoe_core.adapter import Adapter
    from ptmoe_core.config import MethodConfig, RunConfig
    from ptmoe_core.data import build_datasets
    from ptmoe_core.evaluate import evaluate
    from ptmoe_core.models import load_base_model
    from ptmoe_core.trainer import train

    if args.threads:
        torch.set_num_threads(args.threads)
    base = load_base_model(RunConfig.from_dict({"model": {"name": args.model, "dtype": args.dtype}}).model)
    out = {"meta": {"model": args.model, "device": str(base.device), "dtype": str(base.dtype).replace("torch.", ""),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "cpu_threads": torch.get_num_threads(), "host": platform.node(),
                    "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "steps": args.steps, "batch": args.batch, "n_eval": args.n_eval,
                    "command": "python bench/routing.py " + " ".join(sys.argv[1:])},
           "variants": {k: VARIANTS[k] for k in args.variants}, "runs": [], "floor": {}}
    with tempfile.TemporaryDirectory(prefix="ptmoe-routing-") as tmp:
        for mix in args.mix:
            for seed in args.seeds:
                dcfg = data_config(mix, args.data_dir, args.n_eval, seed)
                data = build_datasets(RunConfig.from_dict({"data": dcfg}).data)
                if seed == args.seeds[0]:  # the floor: the frozen model, no adapter, same questions
                    floor = Adapter(base, MethodConfig(method="pt"), None, base.model, {"floor": True})
                    res = evaluate(floor, data[1], max_new_tokens=args.max_new_tokens, batch_size=args.eval_batch)
                    recs = [r.to_dict() for r in res.records]
                    out["floor"][mix] = {"per_set": per_set(recs), "records": _slim(recs)}
                for name in args.variants:
                    cfg = RunConfig.from_dict({
                        "name": f"{mix}-{name}-s{seed}", "output_dir": str(Path(tmp) / f"{mix}-{name}-s{seed}"),
                        "model": {"name": args.model, "dtype": args.dtype},
                        "method": {**SHAPE, **VARIANTS[name]}, "data": dcfg,
                        "train": {"steps": args.steps, "batch_size": args.batch, "seed": seed,
                                  "warmup_steps": max(1, args.steps // 10), "max_new_tokens": args.max_new_tokens,
                                  "eval_batch_size": args.eval_batch},
                    }).validate()
                    t = time.time()
                    res = train(cfg, base=base, data=data, resume=False)
                    recs = [r.to_dict() for r in res.evaluation.records]
                    row = {"mix": mix, "variant": name, "seed": seed, "method": cfg.to_dict()["method"],
                           "train_s": _train_seconds(res), "total_s": time.time() - t,
                           "per_set": per_set(recs), **routing_summary(recs, cfg.method.n_experts),
                           "entropy_curve": [h.router_entropy for h in res.history], "records": _slim(recs)}
                    row["macro"] = sum(row["per_set"].values()) / len(row["per_set"])
                    out["runs"].append(row)
                    print(f"{mix:10s} {name:18s} seed {seed}: I={row['mi_bits']:.2f} bits  conf {row['confidence']:.2f}  "
                          f"load {[round(x, 2) for x in row['load']]}  macro {100 * row['macro']:.1f}  "
                          f"train {row['train_s']:.1f}s  {_majority_text(row)}", flush=True)
                    if args.json:
                        Path(args.json).write_text(json.dumps(out))
    return out


def _train_seconds(res) -> float:
    """Training time alone (the last step's elapsed time), without the final evaluation."""
    return res.history[-1].elapsed_s if res.history else float("nan")


def _slim(records: list[dict]) -> list[dict]:
    keep = ("dataset", "id", "domain", "answer_type", "expert", "confidence", "em", "f1", "score", "prediction")
    return [{k: r.get(k) for k in keep} for r in records]


def _majority_text(row: dict) -> str:
    return ", ".join(f"{d.removeprefix('builtin-')}→e{e} ({p:.0%})" for d, (e, p) in row["majority"].items())


# ---------------------------------------------------------------------------------------------
# Report


def _aids(method: dict) -> dict:
    """A run's resolved method settings that differ from the paper preset's (the open choices and aids)."""
    from ptmoe_core.presets import preset_values

    paper = preset_values("paper", "ptmoe")
    return {k: method.get(k) for k, v in paper.items() if method.get(k) != v}


def _is_preset(method: dict, preset: str) -> bool:
    from ptmoe_core.presets import preset_values

    return all(method.get(k) == v for k, v in preset_values(preset, "ptmoe").items())


def _settings_text(method: dict) -> str:
    aids = _aids(method)
    text = "paper" + "".join(f", {k}={v}" for k, v in aids.items()) if aids else "paper"
    return text + (" **(= studio preset)**" if _is_preset(method, "studio") else "")


def _preset_rows(rows: list[dict], preset: str) -> dict[int, dict]:
    """seed -> the first run of ``rows`` whose settings are ``preset``'s (rounds pooled)."""
    out: dict[int, dict] = {}
    for r in rows:
        if _is_preset(r["method"], preset) and r["seed"] not in out:
            out[r["seed"]] = r
    return out


def _mean(xs):
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def report(results: dict, path: Path, plot: bool = True) -> str:
    meta, runs = results["meta"], results["runs"]
    lines = ["# Does the router route? (`bench/routing.py`)", "",
             f"Generated by `{meta['command']}` (runs of {meta['date']}): {meta['model']}, device {meta['device']}"
             f"{' (' + meta['gpu'] + ')' if meta.get('gpu') else ''}, {meta['dtype']}; PT-MoE N=2, T=40, R=36, "
             f"{meta['steps']} steps × batch {meta['batch']}, {meta['n_eval']} evaluation questions per set. "
             "Scores: token F1 for spans, accuracy for numbers; macro = mean over sets. "
             "I(domain; expert) in bits over the evaluation questions (1.0 = two experts splitting the domains "
             "cleanly). Every figure below comes from that command's runs; none was edited by hand.", ""]
    if results.get("sources", [])[1:]:
        lines += ["The plan ran in rounds (below). Round r1 tried each aid alone, on top of the paper's settings and "
                  "of a first studio candidate; round r2 put the promising aids together and left each out in turn. "
                  "A variant's *settings* are its resolved values that differ from the paper's; the one marked "
                  "**(= studio preset)** is what `preset: studio` (the default) trains today, and the targets "
                  "below are computed on it, pooled over rounds by seed.", ""]
    for src in results.get("sources", [])[1:] and results["sources"]:
        lines.append(f"- round {src['tag']}: `{src['command']}` on {src['date']}, {src['device']}"
                     f"{' (' + src['gpu'] + ')' if src.get('gpu') else ''}, {src['dtype']}")
    if results.get("sources", [])[1:]:
        lines.append("")
    for mix in MIXES:
        rows = [r for r in runs if r["mix"] == mix]
        if not rows:
            continue
        lines += [f"## {'Built-in tasks (`builtin:all`)' if mix == 'builtin' else 'The comparison mix (SQuAD v2 + GSM8K + built-in)'}", ""]
        seeds = sorted({r["seed"] for r in rows})
        lines += ["| variant | settings | I(domain; expert), bits: mean (per seed) | mean confidence | min expert load | "
                  "macro score | train time |", "|---|---|---|---|---|---|---|"]
        for name in results["variants"]:
            vs = [r for r in rows if r["variant"] == name]
            if not vs:
                continue
            mis = [r["mi_bits"] for r in vs]
            settings = _settings_text(vs[0]["method"])
            lines.append(f"| {name} | {settings} | {_mean(mis):.2f} ({', '.join(f'{x:.2f}' for x in mis)}) | "
                         f"{_mean([r['confidence'] for r in vs]):.2f} | {min(min(r['load']) for r in vs):.0%} | "
                         f"{100 * _mean([r['macro'] for r in vs]):.1f} | {_mean([r['train_s'] for r in vs]):.1f} s |")
        floor = results.get("floor", {}).get(mix)
        if floor:
            ps = floor["per_set"]
            lines.append(f"| *frozen model (floor)* | no adapter | — | — | — | {100 * sum(ps.values()) / len(ps):.1f} | — |")
        lines.append("")
        sets = sorted({k for r in rows for k in r["per_set"]})
        lines += ["Per-set scores (mean over seeds):", "", "| variant | " + " | ".join(sets) + " |",
                  "|---|" + "---|" * len(sets)]
        for name in results["variants"]:
            vs = [r for r in rows if r["variant"] == name]
            if vs:
                lines.append(f"| {name} | " + " | ".join(f"{100 * _mean([r['per_set'].get(s, float('nan')) for r in vs]):.1f}"
                                                     for s in sets) + " |")
        if floor:
            lines.append("| *frozen model* | " + " | ".join(f"{100 * floor['per_set'].get(s, float('nan')):.1f}" for s in sets) + " |")
        lines += ["", "Majority expert per domain (share of that domain's questions), per seed:", ""]
        for preset in ("paper", "studio"):
            for seed, r in sorted(_preset_rows(rows, preset).items()):
                lines.append(f"- {preset} preset ({r['variant']}), seed {seed}: {_majority_text(r)}")
        lines.append("")
        lines += _targets(mix, rows, seeds)
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if plot:
        _plot(results, path.with_suffix("").parent / "routing" / "mi_by_variant.png")
    return text


def _targets(mix: str, rows: list[dict], seeds: list[int]) -> list[str]:
    st, pa = _preset_rows(rows, "studio"), _preset_rows(rows, "paper")
    if not st:
        out = ["Targets (issue 10): **the current studio preset was not run on this mix** (no GPU time was left); "
               "what the variants that ran did:", ""]
        for name in dict.fromkeys(r["variant"] for r in rows):
            vs = [r for r in rows if r["variant"] == name]
            if any(r["mix"] == "comparison" for r in vs):
                out.append(f"- {name}: SQuAD (QA) and GSM8K (math) go to different majority experts in "
                           f"{sum(_qa_math_apart(r) for r in vs)} of {len(vs)} seeds")
        return [*out, ""]
    ok = lambda c: "met" if c else "**missed**"  # noqa: E731
    out = [f"Targets (issue 10), for the current studio preset ({', '.join(sorted({r['variant'] for r in st.values()}))}, "
           f"{len(st)} seed(s)):", ""]
    if mix == "builtin":
        mis = [r["mi_bits"] for r in st.values()]
        conf = _mean([r["confidence"] for r in st.values()])
        low = min(min(r["load"]) for r in st.values())
        out += [f"- studio mean I(domain; expert) {_mean(mis):.2f} bits (≥ 0.8): {ok(_mean(mis) >= 0.8)}; "
                f"every seed ≥ 0.6 (min {min(mis):.2f}): {ok(min(mis) >= 0.6)}",
                f"- studio mean confidence {conf:.2f} (≥ 0.8): {ok(conf >= 0.8)}",
                f"- every expert ≥ 10 % of the load (min {low:.0%}): {ok(low >= 0.10)}"]
        if pa:
            # Pair per seed: ids repeat across seeds, so tag them with the seed.
            a = [{**rec, "dataset": f"{s}:{rec['dataset']}"} for s in st if s in pa for rec in st[s]["records"]]
            b = [{**rec, "dataset": f"{s}:{rec['dataset']}"} for s in pa if s in st for rec in pa[s]["records"]]
            d, lo, hi = paired_macro_diff(a, b)
            out.append(f"- studio − paper macro score, paired on the same questions over {len(st)} seed(s): "
                       f"{100 * d:+.1f} points, 95% bootstrap interval [{100 * lo:+.1f}, {100 * hi:+.1f}]: "
                       f"{ok(lo >= 0 or d >= 0)} (not below: {'the interval excludes a loss' if lo >= 0 else 'the point estimate is ≥ 0' if d >= 0 else 'lower'})")
            tp, ts = _mean([r["train_s"] for r in pa.values()]), _mean([r["train_s"] for r in st.values()])
            out.append(f"- training wall time studio / paper: {ts / tp:.2f}× (change < 10 %: {ok(abs(ts / tp - 1) < 0.10)})")
    else:
        apart = sum(_qa_math_apart(r) for r in st.values())
        out.append(f"- studio: SQuAD (QA) and GSM8K (math) go to different majority experts in {apart} of "
                   f"{len(st)} seeds (≥ 2 of 3): {ok(apart >= min(2, len(st)))}")
    return [*out, ""]


def _qa_math_apart(r: dict) -> bool:
    m = r["majority"]
    qa = [v[0] for d, v in m.items() if d.startswith("squad")]
    math_ = [v[0] for d, v in m.items() if d.startswith("gsm8k")]
    return bool(qa and math_ and qa[0] != math_[0])


def _plot(results: dict, png: Path) -> None:
    """I(domain; expert) per variant and seed, one panel per mix (plotly + kaleido)."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        print("plotly not installed: no plot written", file=sys.stderr)
        return
    mixes = [m for m in MIXES if any(r["mix"] == m for r in results["runs"])]
    fig = make_subplots(rows=1, cols=len(mixes), subplot_titles=mixes, shared_yaxes=True)
    for i, mix in enumerate(mixes, 1):
        for name in results["variants"]:
            vs = [r for r in results["runs"] if r["mix"] == mix and r["variant"] == name]
            if vs:
                fig.add_trace(go.Box(y=[r["mi_bits"] for r in vs], name=name, boxpoints="all", showlegend=False), 1, i)
    fig.update_yaxes(title_text="I(domain; expert), bits (max 1 with 2 experts)", range=[0, 1.05])
    fig.update_layout(width=1200, height=500, title="Routing by variant (each point a seed)", margin={"b": 140})
    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.write_image(str(png))
        print(f"wrote {png}")
    except Exception as e:  # kaleido needs a Chromium; the table stands without the plot
        print(f"plot not written ({e})", file=sys.stderr)


def _read_json(path: Path) -> dict:
    import gzip

    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/routing.py", description=__doc__.splitlines()[0])
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
    p.add_argument("--json", help="also save every run (updated after each) to this file")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--report-from", nargs="+", help="write the report from saved JSON files instead of running")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "routing.md")
    args = p.parse_args(argv)
    if args.report_from:
        parts = [_read_json(Path(f)) for f in args.report_from]
        tags = [Path(f).name.split("-")[0].replace("round", "r") for f in args.report_from]
        results = {"meta": {**parts[0]["meta"], "command": "python bench/routing.py --report-from "
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
        print(report(results, args.out))
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
        print(report(results, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
