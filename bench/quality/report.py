"""The quality benchmark's report: ``docs/results.md`` from the runs' results (what
``run.summarize_result`` keeps of each run), with no training: tables per group, the runs over seeds,
routing and collapse, the paper's claims checked on the measured numbers, and the verdict.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

from ptmoe_core import routing_summary
from ptmoe_core.methods import METHODS as SPECS

from .plan import LABELS, METHODS, SEEDED

# The paper's headline numbers (LLaMA-3.2-1B-Instruct, docs PTMOE_METHOD.md): QA F1 all, GSM8K acc, params.
PAPER = {"lora": (56.13, 41.77, "106k"), "pt": (56.77, 34.11, "81k"), "dpt": (55.77, 26.08, "81k"),
         "smop": (56.25, 27.97, "86k"), "ptmoe": (58.26, 35.63, "80k")}


# ---------------------------------------------------------------------------------------------
# Derived numbers


def set_kinds(result: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """{data set: (answer type, ood)} from the evaluated records."""
    out: dict[str, tuple[str, bool]] = {}
    for r in result["records"]:
        out.setdefault(r["dataset"], (r["answer_type"], bool(r["ood"])))
    return out


def summary(result: dict[str, Any]) -> dict[str, float]:
    """QA F1/EM over span sets (in-domain, out-of-domain, all), math accuracy over number sets, and
    the engine's in-domain / out-of-domain macro averages (F1 on QA/text sets, accuracy on math)."""
    sc = result["scores"]
    kinds = set_kinds(result)

    def mean(keys: list[str], metric: str) -> float:
        vals = [sc[k][metric] for k in keys if k in sc]
        return sum(vals) / len(vals) if vals else float("nan")

    qa = [k for k, (t, _) in kinds.items() if t == "span"]
    qa_in = [k for k in qa if not kinds[k][1]]
    qa_ood = [k for k in qa if kinds[k][1]]
    math_sets = [k for k, (t, _) in kinds.items() if t == "number"]
    return {
        "qa_f1_in": mean(qa_in, "f1"), "qa_f1_ood": mean(qa_ood, "f1"), "qa_f1": mean(qa, "f1"),
        "qa_em": mean(qa, "em"), "math_acc": mean(math_sets, "accuracy"),
        "gsm8k": sc.get("gsm8k", {}).get("accuracy", float("nan")),
        "in_domain": sc.get("in_domain", {}).get("f1", float("nan")),
        "out_of_domain": sc.get("out_of_domain", {}).get("f1", float("nan")),
    }


def paired_bootstrap(a: dict[str, Any], b: dict[str, Any], answer_type: str = "span", n: int = 2000,
                     seed: int = 0) -> tuple[float, float, float] | None:
    """The difference a − b of the statistic the table reports, with a 95% paired-bootstrap interval:
    F1 averaged within each data set of ``answer_type``, then over the sets (macro). Each replicate
    resamples the questions within each set (stratified), so every set keeps its size and weight."""
    return seeds_bootstrap([a], [b], answer_type, n, seed)


def seeds_bootstrap(runs_a: list[dict[str, Any]], runs_b: list[dict[str, Any]], answer_type: str = "span",
                    n: int = 2000, seed: int = 0) -> tuple[float, float, float] | None:
    """As ``paired_bootstrap`` for the mean over training seeds: runs are paired by seed, each question's
    difference is averaged over the seeds (every seed answered the same questions), and the questions
    are resampled within each set. The seeds themselves are not resampled: the interval is about which
    questions were asked; the spread between seeds is reported beside it."""
    from ptmoe_core.metrics import paired_macro_bootstrap

    by_seed = {r.get("seed", 0): r for r in runs_b}
    pairs = [(ra, by_seed[ra.get("seed", 0)]) for ra in runs_a if ra.get("seed", 0) in by_seed]
    per_q: dict[tuple[str, str], list[float]] = {}
    for ra, rb in pairs:
        fa = {(r["dataset"], r["id"]): r["f1"] for r in ra["records"] if r["answer_type"] == answer_type}
        fb = {(r["dataset"], r["id"]): r["f1"] for r in rb["records"] if r["answer_type"] == answer_type}
        for k in set(fa) & set(fb):
            per_q.setdefault(k, []).append(fa[k] - fb[k])
    per_set: dict[str, list[float]] = {}
    for k in sorted(per_q):
        if len(per_q[k]) == len(pairs):  # answered in every pair of runs
            per_set.setdefault(k[0], []).append(sum(per_q[k]) / len(pairs))
    return paired_macro_bootstrap(per_set, n, seed)


def families(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """{seed-0 run name: that run and its repeats over seeds, by seed}."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        out.setdefault(r.get("family") or r["name"], []).append(r)
    return {k: sorted(v, key=lambda r: r.get("seed", 0)) for k, v in out.items()}


def mean_summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    """``summary`` averaged over a family's runs (its seeds)."""
    sums = [summary(r) for r in runs]
    return {k: sum(x[k] for x in sums) / len(sums) for k in sums[0]}


def spread(values: list[float]) -> float:
    """Sample standard deviation (nan for fewer than two values)."""
    if len(values) < 2:
        return float("nan")
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def seeds_where(runs_a: list[dict[str, Any]], runs_b: list[dict[str, Any]], key: str, op: str) -> str:
    """'k of n' seeds in which a's ``key`` is ≥ (op "ge") or ≤ (op "le") b's, pairing runs by seed."""
    by_seed = {r.get("seed", 0): summary(r)[key] for r in runs_b}
    pairs = [(summary(r)[key], by_seed[r.get("seed", 0)]) for r in runs_a if r.get("seed", 0) in by_seed]
    k = sum(1 for a, b in pairs if (a >= b if op == "ge" else a <= b))
    return f"{k} of {len(pairs)}"


# ---------------------------------------------------------------------------------------------
# The report


def pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def fmt_s(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def fmt_params(n: int) -> str:
    return f"{n:,}"


def dataset_order(results: list[dict[str, Any]]) -> list[str]:
    kinds: dict[str, tuple[str, bool]] = {}
    for r in results:
        kinds.update(set_kinds(r))
    rank = {"span": 0, "number": 1, "text": 2}
    return sorted(kinds, key=lambda k: (kinds[k][1], k.startswith("builtin"), rank.get(kinds[k][0], 3), k))


def main_table(results: list[dict[str, Any]]) -> list[str]:
    """Method, parameters, QA EM/F1 per data set, math accuracy per set, averages, times."""
    sets = dataset_order(results)
    kinds: dict[str, tuple[str, bool]] = {}
    for r in results:
        kinds.update(set_kinds(r))
    head = ["method", "trainable params"]
    for s in sets:
        t, ood = kinds[s]
        head.append(f"{s} {'EM / F1' if t != 'number' else 'acc'}")
    head += ["QA F1 in / out", "math acc", "in-domain avg", "out-of-domain avg", "eval loss", "train time", "eval time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        sm = summary(r)
        row = [r["label"], fmt_params(r["trainable_params"])]
        for s in sets:
            sc = r["scores"].get(s)
            if sc is None:
                row.append("n/a")
            elif kinds[s][0] == "number":
                row.append(pct(sc["accuracy"]))
            else:
                row.append(f"{pct(sc['em'])} / {pct(sc['f1'])}")
        row += [f"{pct(sm['qa_f1_in'])} / {pct(sm['qa_f1_ood'])}", pct(sm["math_acc"]), pct(sm["in_domain"]),
                pct(sm["out_of_domain"]), "n/a" if r["eval_loss"] is None else f"{r['eval_loss']:.3f}",
                fmt_s(r["train_s"]), fmt_s(r["eval_s"])]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _mean_sd(vals: list[float]) -> str:
    sd = spread(vals)
    return pct(sum(vals) / len(vals)) + ("" if math.isnan(sd) else f" ± {pct(sd)}")


def seeds_table(fams: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Per run repeated over seeds: mean ± standard deviation over the seeds, and each seed's QA F1."""
    head = ["run", "seeds", "QA F1 (mean ± sd)", "QA F1 per seed", "math acc", "in-domain avg", "out-of-domain avg",
            "eval loss"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for runs in fams.values():
        sums = [summary(r) for r in runs]
        ms = {key: _mean_sd([x[key] for x in sums]) for key in ("qa_f1", "math_acc", "in_domain", "out_of_domain")}
        losses = [r["eval_loss"] for r in runs if r["eval_loss"] is not None]
        lines.append("| " + " | ".join([
            runs[0]["label"], ", ".join(str(r.get("seed", 0)) for r in runs), ms["qa_f1"],
            " / ".join(pct(x["qa_f1"]) for x in sums), ms["math_acc"], ms["in_domain"], ms["out_of_domain"],
            f"{sum(losses) / len(losses):.3f}" if losses else "n/a"]) + " |")
    return lines


def majority_experts(result: dict[str, Any]) -> dict[str, int]:
    """{evaluated data set: the expert most of its inputs went to}."""
    return {ds: max(range(len(ld)), key=ld.__getitem__) for ds, ld in result["expert_load"].items()}


def overall_load(result: dict[str, Any]) -> list[float]:
    """Share of each expert over the evaluated data sets (each set weighs the same)."""
    return routing_summary.overall_load(result["expert_load"])


def routing_lines(results: list[dict[str, Any]]) -> list[str]:
    """Per routed run: expert load per data set, mean router entropy, and whether it collapsed."""
    out = ["| run | N | router entropy at the end of training (ln N) | I(data set; expert), bits | "
           "expert load per data set (eval) | collapsed? |", "|---|---|---|---|---|---|"]
    for r in results:
        n = r["method"]["n_experts"] if SPECS[r["method"]["method"]].routed else 0
        if n < 2 or not r["expert_load"]:
            continue
        ents = [h["router_entropy"] for h in r["history"] if h.get("router_entropy") is not None]
        tail = ents[-max(1, len(ents) // 5):]
        ent = sum(tail) / len(tail) if tail else float("nan")
        loads = "; ".join(f"{ds}: " + "/".join(f"{v:.2f}" for v in load) for ds, load in r["expert_load"].items())
        used = sorted(set(majority_experts(r).values()))
        overall = overall_load(r)
        m = r["method"]
        if not m.get("probationary", True) and not m.get("straight_through", False):
            verdict = ("not trained: with non-probationary weights the router's probabilities never reach the "
                       "loss, so it gets no gradient and these choices are those of its random initialisation "
                       "(`method.straight_through` gives it one)")
        elif not m.get("probationary", True) and m.get("top_k", 1) >= n:
            verdict = (f"n/a: every input gets the equal mix 1/{n} of all experts whatever the router says (the "
                       "paper's non-selective, non-probationary row); its router trains through straight-through "
                       "but cannot change the answers")
        elif _collapsed(r) and ent >= 0.9 * math.log(n):
            verdict = (f"all inputs to expert {overall.index(max(overall))}, but with near-uniform probabilities: "
                       "the router has not learned to tell inputs apart")
        elif _collapsed(r):
            verdict = f"yes: {max(overall):.0%} of all evaluated inputs go to expert {overall.index(max(overall))}"
        elif len(used) == 1:
            verdict = f"partly: every data set's majority expert is {used[0]}"
        else:
            verdict = f"no: majority experts differ across data sets ({', '.join(map(str, used))})"
        routed = [x for x in r["records"] if x.get("expert") is not None]
        mi = routing_summary.mutual_information_bits([x["dataset"] for x in routed], [x["expert"] for x in routed])
        out.append(f"| {r['label']} | {n} | {ent:.3f} ({math.log(n):.3f}) | {mi:.2f} | {loads} | {verdict} |")
    return out


def holds(a: float, b: float, op: str) -> str:
    """'yes' / 'no' for a >= b (op "ge") or a <= b (op "le"); a tie says so."""
    if a == b:
        return "tie (equal)"
    return "yes" if (a > b) == (op == "ge") else "no"


def seeds_phrase(runs: list[dict[str, Any]]) -> str:
    return "1 seed" if len(runs) == 1 else f"mean of {len(runs)} seeds"


def comparison_lines(fams: dict[str, list[dict[str, Any]]]) -> tuple[list[str], bool | None]:
    """The paper's shape, each claim checked on the measured numbers (the mean over the seeds, and seed
    by seed); returns (lines, PT-MoE ahead of PT on QA F1 on the mean)."""
    lines: list[str] = []
    if not all(m in fams for m in ("pt", "ptmoe")):
        return ["PT and PT-MoE were not both run, so the paper's claims cannot be checked here."], None
    sm = {m: mean_summary(fams[m]) for m in METHODS if m in fams}
    pt, pm = sm["pt"], sm["ptmoe"]
    lines.append(f"| claim (paper, LLaMA-3.2-1B) | paper | measured here ({seeds_phrase(fams['ptmoe'])}) | "
                 "holds on the mean? | seeds where it holds |")
    lines.append("|---|---|---|---|---|")
    ahead = pm["qa_f1"] >= pt["qa_f1"]

    def claim(text: str, paper: str, a: str, b: str, key: str, op: str) -> None:
        lines.append(f"| {text} | {paper} | {pct(sm[a][key])} vs {pct(sm[b][key])} | "
                     f"{holds(sm[a][key], sm[b][key], op)} | {seeds_where(fams[a], fams[b], key, op)} |")

    claim("PT-MoE ≥ PT on QA F1", "58.26 vs 56.77", "ptmoe", "pt", "qa_f1", "ge")
    if "lora" in sm:
        pm_n, lora_n = fams["ptmoe"][0]["trainable_params"], fams["lora"][0]["trainable_params"]
        lines.append(f"| PT-MoE has fewer trainable parameters than LoRA | 80k vs 106k | {fmt_params(pm_n)} vs "
                     f"{fmt_params(lora_n)} | {'yes' if pm_n < lora_n else 'no'} | (same in every seed) |")
        claim("PT-MoE ≥ LoRA on QA F1", "58.26 vs 56.13", "ptmoe", "lora", "qa_f1", "ge")
    for m, paper in (("dpt", "55.77 vs 56.77"), ("smop", "56.25 vs 56.77")):
        if m in sm:
            claim(f"{LABELS[m]} ≤ PT on QA F1", paper, m, "pt", "qa_f1", "le")
    claim("PT-MoE ≥ PT on GSM8K accuracy", "35.63 vs 34.11", "ptmoe", "pt", "gsm8k", "ge")
    claim("PT-MoE ≥ PT out of domain (QA F1)", "55.54 vs 54.02", "ptmoe", "pt", "qa_f1_ood", "ge")
    lines.append("")
    order = sorted(sm, key=lambda m: -sm[m]["qa_f1"])
    lines.append(f"Ranking on QA F1 (all QA sets, {seeds_phrase(fams['ptmoe'])}), measured: " + " > ".join(
        f"{LABELS[m]} {pct(sm[m]['qa_f1'])}" for m in order) + ". The paper's: PT-MoE 58.26 > PT 56.77 > SMoP 56.25 "
        "> LoRA 56.13 > DPT 55.77.")
    qa = [r for r in fams["pt"][0]["records"] if r["answer_type"] == "span"]
    n_sets = len({r["dataset"] for r in qa})
    rows = [("ptmoe", m) for m in METHODS if m in fams and m != "ptmoe"]
    if "ptmoe-studio" in fams:
        rows.append(("ptmoe-studio", "ptmoe"))
    lines.append("")
    lines.append(f"Paired differences on QA F1 as the table averages it (per set, then over the {n_sets} QA sets, "
                 f"{len(qa)} QA questions, the same for every run), {seeds_phrase(fams['ptmoe'])} paired by seed, "
                 "with 95% bootstrap intervals that resample the questions within each set:")
    lines.append("")
    lines.append("| difference | points | 95% interval | interval | seeds where the first is ≥ |")
    lines.append("|---|---|---|---|---|")
    for a, b in rows:
        boot = seeds_bootstrap(fams[a], fams[b])
        if boot is None:
            continue
        d, lo, hi = boot
        sig = "excludes zero" if lo > 0 or hi < 0 else "includes zero"
        ahead_in = seeds_where(fams[a], fams[b], "qa_f1", "ge")
        lines.append(f"| {fams[a][0]['label']} − {fams[b][0]['label']} | {100 * d:+.1f} | "
                     f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {sig} | {ahead_in} |")
    return lines, ahead


def write_report(out: Path, results: list[dict[str, Any]], meta: dict[str, Any], plots: dict[str, Path],
                 plot_note: str | None) -> None:
    by_group: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_group.setdefault(r["group"], []).append(r)
    main = by_group.get("methods", [])
    ptmoe = [r for r in main if r["name"] == "ptmoe"]
    fams = families(results)
    seeded = {k: v for k, v in fams.items() if k in SEEDED}
    n_seeds = max((len(v) for v in seeded.values()), default=1)
    b = meta["budget"]
    L: list[str] = []
    L.append("# PT-MoE vs. baselines on real data (measured)")
    L.append("")
    L.append(f"Generated by `{meta['command']}` on {meta['date']} — machine: {meta['machine']}; model: "
             f"`{meta['model']}` (hidden size {meta['hidden']}); device: {meta['device']}, {meta['dtype']}, "
             f"{meta['threads']} torch thread(s); database experiment `{meta['experiment']}` ({meta['db']}). "
             f"Every number on this page comes from the runs listed here, executed by that command "
             f"(wall time of this invocation: {fmt_s(meta['wall_s'])}; {meta['trained']} run(s) trained by it and "
             f"{meta['cached']} reused from earlier invocations with the same configurations; the runs' own training + "
             f"evaluation time adds up to {fmt_s(sum(r['train_s'] + r['eval_s'] for r in results))}"
             f"{training_span(results)}). {load_note(results)}")
    L.append("")
    if meta["quick"]:
        L.append("> **This is the `--quick` smoke run**: a tiny budget (a few optimizer steps, a handful of "
                 "evaluation questions per data set). Its scores say whether the pipeline works end to end, not "
                 "which method is better; differences between methods here are within noise. Run "
                 "`python -m bench.quality` (the full plan) for the comparison.")
        L.append("")
    L.append("## Setup")
    L.append("")
    L.append("- " + methods_line(main))
    L.append(f"- Training mix (seed {b['seed']}): SQuAD v2.0 answerable questions (train split of "
             f"`../shared/data/squad/squad-v2-sample.json`, passages split 80/10/10), GSM8K "
             f"(`../shared/data/gsm8k/train.jsonl`, target = the final number), and `builtin:all` "
             f"(qa, arith, units, dates), capped at {b['train_cap']} / {b['train_cap']} / {b['train_cap'] // 4} per task "
             f"({meta['n_train']} examples; composition {meta['train_mix']}).")
    L.append(f"- Evaluation, {b['n_eval']} questions per data set (seeded subset), greedy, at most "
             f"{b['max_new_tokens']} new tokens: in-domain = SQuAD v2.0 test-split passages (never trained on), "
             f"GSM8K test file, `builtin:all` test split; out-of-domain = `builtin:all-ood` (new templates and "
             f"vocabulary).")
    L.append(f"- Same for every run: {b['steps']} optimizer steps × batch {b['batch_size']} "
             f"({b['steps'] * b['batch_size']} examples seen), warm-up {b['warmup']} steps then linear decay, "
             f"AdamW, learning rate {meta['lr_prompt']} for the soft-prompt methods and {meta['lr_lora']} for LoRA "
             f"(the engine's defaults when the runs were trained), at most {b['max_source_tokens']} source and {b['max_answer_tokens']} answer "
             f"tokens, same data order and seed" + (
                 f"; the five methods and the studio preset are also trained with seeds 1–{n_seeds - 1} "
                 "(initialisation, batch order and router noise change; the training data and the evaluation "
                 "questions stay the same)." if n_seeds > 1 else "."))
    L.append("- Metrics: SQuAD EM / F1 (official v2.0 script) on span answers (and on the text answers of `dates`); "
             + SQUAD_NOTES[meta["squad_unanswerable"]] + " Math: " + NUMBER_NOTES[meta["number_match"]] +
             " *In-domain avg* / *out-of-domain avg*: macro average over the data sets of each group (F1 on QA/text "
             "sets, accuracy on math sets). *QA F1 in / out*: mean F1 over the span sets. Eval loss: token-weighted "
             "answer loss over all evaluation sets.")
    L.append("- Trainable parameters are the adapter's real tensors on this model (checked against "
             "`ptmoe_core.params`); the paper's counts are for H=2048, where these configurations have "
             + ", ".join(f"{r['label']} {fmt_params(paper_shape_params(r))}" for r in main)
             + " (`python -m ptmoe_core params --method all`; the paper's table: PT-MoE 80k, PT 81k, DPT 81k, "
             "SMoP 86k, LoRA 106k).")
    L.append("")
    titles = {"methods": "The five methods", "studio": "PT-MoE in the studio preset (the studio's default; not the paper's)",
              "routing": "PT-MoE routing variants (selective × probationary; non-probationary with straight-through)",
              "balance": "PT-MoE with the optional balance loss (SMoP's Switch-style loss; not in the paper's PT-MoE)",
              "N": "Sweep: number of experts N", "T": "Sweep: prompt length T", "R": "Sweep: rank R"}
    for g in ("methods", "studio", "routing", "balance", "N", "T", "R"):
        rows = by_group.get(g)
        if not rows:
            continue
        if g != "methods" and ptmoe:  # the reference point (N=2, T=40, R=36, selective + probationary)
            rows = ptmoe + rows
        L.append(f"## {titles[g]}")
        L.append("")
        L.extend(main_table(rows))
        L.append("")
        if g == "methods" and n_seeds > 1:
            L.extend(seeds_section(seeded, by_group.get("seeds", []), n_seeds))
    if plots:
        L.append("## Plots")
        L.append("")
        if plot_note:
            L.append(f"_{plot_note}_")
            L.append("")
        captions = {"learning_curves": "Training loss, the five methods",
                    "learning_curves_ablations": "Training loss, PT-MoE variants and sweeps",
                    "router_entropy": "Router entropy during training",
                    "expert_usage": "Expert usage per domain (evaluation)",
                    "scores": "Scores per run (seed 0)",
                    "seeds": "Each seed's score, the five methods and the studio preset"}
        for k, p in plots.items():
            rel = os.path.relpath(p, out.parent)
            if p.suffix == ".png":
                L.append(f"![{captions.get(k, k)}]({rel})")
            else:
                L.append(f"- [{captions.get(k, k)}]({rel}) (interactive HTML)")
            L.append("")
    L.append("## Routing: is the router used, or has it collapsed?")
    L.append("")
    L.extend(routing_lines(results))
    L.append("")
    L.append("## Against the paper's shape")
    L.append("")
    comp, ahead = comparison_lines(seeded)
    L.extend(comp)
    L.append("")
    L.append("### Verdict")
    L.append("")
    L.extend(verdict_lines(main, results, ahead, meta, seeded))
    L.append("")
    L.append("## Runs")
    L.append("")
    L.append("| run | database id | method config | params (formula) | final training loss |")
    L.append("|---|---|---|---|---|")
    for r in results:
        m = r["method"]
        spec = SPECS[m["method"]]
        routed = spec.routed
        desc = (f"r={m['lora_r']} on {','.join(m['lora_targets'])}" if not spec.is_prompt else
                f"{m.get('preset', 'paper')}, T={m['prompt_len']}" +
                (f", R={m['rank']}" if spec.uses("rank") else "") + f", init={m['init']}" +
                (f", N={m['n_experts']}, top_k={m['top_k']}, probationary={m['probationary']}, "
                 f"noise={m.get('noise_type', 'multiplicative')} σ={m['noise_std']:g}" if routed else "") +
                (", straight_through" if routed and m.get("straight_through") else "") +
                (f", balance_loss={m['balance_loss']}" if m.get("balance_loss") else ""))
        L.append(f"| {r['name']} | {r['run_id']} | {m['method']}: {desc} | {fmt_params(r['formula_params'])} | "
                 f"{r['final_loss']:.3f} |")
    L.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(L) + "\n", encoding="utf-8")


def seeds_section(seeded: dict[str, list[dict[str, Any]]], repeats: list[dict[str, Any]], n_seeds: int) -> list[str]:
    """The runs repeated over training seeds: mean ± sd, each seed's QA F1, then every repeat's row."""
    L = [f"## Over {n_seeds} training seeds", "",
         "The same runs trained again with other seeds (the table above is seed 0). A seed changes the prompt "
         "initialisation, the batch order and the router noise; the data and the evaluation questions stay the "
         "same, so the spread below is what the training seed alone does to a score.", ""]
    L.extend(seeds_table(seeded))
    L.append("")
    if repeats:
        L.append("Each repeat, per data set:")
        L.append("")
        L.extend(main_table(repeats))
        L.append("")
    return L


SQUAD_NOTES = {
    "drop": "the SQuAD v2.0 column is **answerable-only**: unanswerable questions are dropped (the official "
            "script's HasAns subset), so it is not the script's overall v2.0 score.",
    "keep": "SQuAD v2.0's unanswerable questions are kept and scored as the official v2.0 script does (an empty "
            "answer, or \"unanswerable\", is right; golds that normalise to empty are dropped).",
}
NUMBER_NOTES = {
    "flexible": "accuracy with lm-evaluation-harness's GSM8K `flexible-extract` filter (the last number-like string "
                "must equal the gold after removing `,` `$` and a final `.`; \"72.0\", \"$18.00\" or \".5\" do not "
                "count), on GSM8K and the built-in number sets alike.",
    "strict": "accuracy with lm-evaluation-harness's GSM8K `strict-match` filter (the first \"#### N\" must equal the "
              "gold exactly).",
    "lenient": "the final number of the answer equals the gold as a value (\"72.0\" and \"$1,000.\" count; more "
               "lenient than lm-evaluation-harness).",
}


def methods_line(main: list[dict[str, Any]]) -> str:
    """How each of the five methods was configured, from the runs' resolved configs."""
    parts = []
    for r in main:
        m = r["method"]
        if not SPECS[m["method"]].is_prompt:
            parts.append(f"{r['label']}: r={m['lora_r']} on {', '.join(m['lora_targets'])}")
            continue
        bits = [f"`{m.get('preset', 'paper')}` preset", f"init {m['init']}"]
        if SPECS[m["method"]].routed:
            bits.append(f"{m['noise_type']} router noise σ={m['noise_std']:g}")
            bits.append(f"balance loss {m['balance_loss']:g}" if m["balance_loss"] else "no balance loss")
            if not m.get("router_bias", True):
                bits.append("no router bias")
        parts.append(f"{r['label']}: " + ", ".join(bits))
    return ("Methods, as the paper's comparison configures them (`ptmoe_core/presets.py`: the `paper` preset is "
            "PT-MoE as the paper describes it and each baseline with its authors' own router noise, balance loss "
            "and initialisation — SMoP's from github.com/jyjohnchoi/SMoP, DPT's uniform factors from "
            "github.com/XYaoooo/DPT; shapes `PAPER_SHAPES`): " + "; ".join(parts) + ".")


def paper_shape_params(result: dict[str, Any]) -> int:
    """The run's configuration counted at the paper's model shape (LLaMA-3.2-1B)."""
    from ptmoe_core.config import MethodConfig
    from ptmoe_core.params import LLAMA_32_1B, count_params

    return count_params(MethodConfig(**result["method"]), LLAMA_32_1B)


def training_span(results: list[dict[str, Any]]) -> str:
    """'; trained between <date> 08:53 and 10:11 (77.7 min of wall time)' from the runs' own timestamps."""
    stamps = [(r["finished_at"] - r["train_s"] - r["eval_s"], r["finished_at"]) for r in results if r.get("finished_at")]
    if not stamps:
        return ""
    t0, t1 = min(a for a, _ in stamps), max(b for _, b in stamps)
    day = dt.datetime.fromtimestamp
    return f"; trained between {day(t0):%Y-%m-%d %H:%M} and {day(t1):%H:%M} ({fmt_s(t1 - t0)} of wall time)"


def load_note(results: list[dict[str, Any]]) -> str:
    """How much of the CPU other processes used while the runs trained, where it was measured
    (``other_cpu``); for runs from before that, the 1-minute load average before each run."""
    shares = [r["other_cpu"] for r in results if r.get("other_cpu") is not None]
    older = [r for r in results if r.get("other_cpu") is None]
    if shares:
        busy = [x for x in shares if x > OTHER_CPU_BUSY]
        lo, hi = f"{min(shares):.0%}", f"{max(shares):.0%}"
        note = (f"While {len(shares)} of the {len(results)} runs trained, other processes used "
                f"{lo if lo == hi else f'{lo}–{hi}'} of the machine's CPU time"
                + (f" (over {OTHER_CPU_BUSY:.0%} during {len(busy)} of them, whose times are slower than on an "
                   "idle machine)." if busy else ", so their times are those of an idle machine."))
        if older:
            note += (f" For the other {len(older)}, only the load average before each run was recorded; it includes "
                     "this script's own previous run, so it cannot tell whether other work was running.")
        return note
    loads = [r["load_before"] for r in results if r.get("load_before")]
    if not loads:
        return "The machine's load while these runs trained was not recorded."
    busy = [x for x in loads if _busy(x)]
    first = sorted(float(x.split("/")[0]) for x in loads)
    span = f"{first[0]:.1f}–{first[-1]:.1f}" if len(first) > 1 else f"{first[0]:.1f}"
    if busy:
        return (f"Other work was running on the machine before {len(busy)} of {len(loads)} run(s) (1-minute load "
                f"average {span} before each run), so times are slower than on an idle machine.")
    return f"Nothing else was running before the runs started (1-minute load average {span})."


def _busy(load: str) -> bool:
    """Whether the 1-minute load average (first of "a / b / c") shows other work on the machine."""
    try:
        return float(load.split("/")[0]) > 0.5 * (os.cpu_count() or 1)
    except ValueError:
        return True  # unknown: do not claim an idle machine


def _collapsed(r: dict[str, Any]) -> bool:
    """The studio's collapse rule (``routing_summary.collapsed_expert``) on a result's per-set load."""
    return routing_summary.collapsed_expert(r["expert_load"]) is not None


def studio_lines(fams: dict[str, list[dict[str, Any]]], results: list[dict[str, Any]]) -> list[str]:
    """The studio preset against the paper's PT-MoE: score, interval, collapse, and the init control."""
    st, pm = fams.get("ptmoe-studio"), fams.get("ptmoe")
    if not st or not pm:
        return []
    a, b = mean_summary(st), mean_summary(pm)
    boot = seeds_bootstrap(st, pm)
    interval = "" if boot is None else f", 95% interval [{100 * boot[1]:+.1f}, {100 * boot[2]:+.1f}]"
    line = (f"- **Studio preset vs the paper's PT-MoE** ({seeds_phrase(st)}): QA F1 {pct(a['qa_f1'])} vs "
            f"{pct(b['qa_f1'])} ({100 * (a['qa_f1'] - b['qa_f1']):+.1f} points{interval}), in-domain avg "
            f"{pct(a['in_domain'])} vs {pct(b['in_domain'])}, out-of-domain avg {pct(a['out_of_domain'])} vs "
            f"{pct(b['out_of_domain'])}. Its router collapsed in {sum(map(_collapsed, st))} of {len(st)} seeds, the "
            f"paper's in {sum(map(_collapsed, pm))} of {len(pm)}.")
    old = next((r for r in results if r["name"] == "ptmoe-studio-before"), None)
    if old:
        st0 = next((r for r in st if r.get("seed", 0) == 0), st[0])
        line += (f" The studio preset before issue 22 (learned router, seed 0 only) scores QA F1 "
                 f"{pct(summary(old)['qa_f1'])} (studio seed 0: {pct(summary(st0)['qa_f1'])}) and its router "
                 + ("collapsed." if _collapsed(old) else
                    f"routes ({' / '.join(f'{v:.0%}' for v in overall_load(old))} over its experts)."))
    return [line]


def verdict_lines(main: list[dict[str, Any]], results: list[dict[str, Any]], ahead: bool | None,
                  meta: dict[str, Any], fams: dict[str, list[dict[str, Any]]] | None = None) -> list[str]:
    by = {r["name"]: r for r in main}
    fams = fams or {r["name"]: [r] for r in main}
    b = meta["budget"]
    out: list[str] = []
    if ahead is None:
        return ["Not enough methods were run to judge."]
    k = len(fams["ptmoe"])
    where = "in this run" if k == 1 else f"on the mean of {k} seeds"
    pm_f1, pt_f1 = mean_summary(fams["ptmoe"])["qa_f1"], mean_summary(fams["pt"])["qa_f1"]
    if pm_f1 == pt_f1:
        out.append(f"**PT-MoE ties with PT on QA F1 {where} (identical scores), so it does not come out ahead.**")
    elif ahead:
        boot = seeds_bootstrap(fams["ptmoe"], fams["pt"])
        seeds_ahead = "" if k == 1 else f" (ahead in {seeds_where(fams['ptmoe'], fams['pt'], 'qa_f1', 'ge')} seeds)"
        if boot is not None and boot[1] <= 0:
            out.append(f"PT-MoE scores above PT on QA F1 {where}{seeds_ahead}, **but the 95% interval of the "
                       "difference includes zero: these runs cannot tell the two apart**, so they do not show "
                       "PT-MoE ahead.")
        else:
            out.append(f"PT-MoE comes out above PT on QA F1 {where}{seeds_ahead}, and the 95% interval of the "
                       "difference excludes zero.")
    else:
        out.append(f"**PT-MoE does not come out ahead of PT on QA {where}.**")
    pm_runs = [r for r in fams["ptmoe"] if r["expert_load"]]
    if pm_runs and all(map(_collapsed, pm_runs)):
        out.append(f"Its router collapsed onto one expert in {'this run' if len(pm_runs) == 1 else 'every seed'}, so "
                   "whatever PT-MoE gains here comes from its decomposed prompt (A·B, scaled by the router's "
                   "probability), not from routing inputs to different experts.")
    n_qa = sum(1 for r in by["pt"]["records"] if r["answer_type"] == "span")
    better = [fams[m][0]["label"] for m in METHODS if m in fams and m != "ptmoe"
              and mean_summary(fams[m])["qa_f1"] > pm_f1]
    if better:
        out.append(f"It is not the best method here: {' and '.join(better)} "
                   f"score{'' if len(better) > 1 else 's'} higher on QA F1 ({where}).")
    out.append("")
    out.append("What we can see in the measurements:")
    out.append("")
    out.append(f"- **Budget**: {b['steps']} steps × batch {b['batch_size']} = {b['steps'] * b['batch_size']} training "
               f"examples per run, on a {meta['machine']}; the evaluation has {b['n_eval']} questions per data set "
               f"({n_qa} QA questions in all), so one question moves a set's score by {100 / b['n_eval']:.1f} points — "
               "far more than the paper's 1–2 point gaps. See the bootstrap intervals above. "
               + ("Each run is one seed" if k == 1 else f"The five methods and the studio preset ran with {k} seeds (the ablations and sweeps "
                                             "with one)")
               + f", and {len(results)} runs are compared on the same questions, so a single interval that excludes "
               "zero is weak evidence on its own.")
    gsm = [summary(r)["gsm8k"] for r in main]
    if gsm and max(gsm) <= 1 / max(1, b["n_eval"]):
        out.append(f"- **GSM8K is at the floor** for every method (at most one of {b['n_eval']} right): answering a "
                   f"multi-step word problem with the final number in {b['max_new_tokens']} tokens, without "
                   f"working, after {b['steps'] * b['batch_size']} training examples is beyond this 135M model, so "
                   "the math column cannot rank the methods.")
    if by["pt"]["history"] and by["ptmoe"]["history"]:
        out.append(f"- **Training loss** at the end (last step): PT {by['pt']['final_loss']:.3f}, PT-MoE "
                   f"{by['ptmoe']['final_loss']:.3f}" + "".join(
                       f", {r['label']} {r['final_loss']:.3f}" for r in main if r["name"] not in ("pt", "ptmoe")) +
                   "; eval loss: " + ", ".join(f"{r['label']} {r['eval_loss']:.3f}" for r in main
                                              if r["eval_loss"] is not None) + ".")
    pm = by.get("ptmoe")
    if pm and pm["expert_load"]:
        overall = overall_load(pm)
        ents = [h["router_entropy"] for h in pm["history"] if h.get("router_entropy") is not None]
        out.append(f"- **Router**: PT-MoE's evaluated inputs go {' / '.join(f'{v:.0%}' for v in overall)} to its "
                   f"{len(overall)} experts; router entropy went from {ents[0]:.3f} to {ents[-1]:.3f} nats during "
                   f"training (uniform = {math.log(len(overall)):.3f}). "
                   + (("Every input goes to one expert but the probabilities stay near uniform: the router has "
                       "not learned to separate domains in this budget." if ents[-1] >= 0.9 * math.log(len(overall))
                       else "The router has collapsed onto one expert, so PT-MoE acts as a single decomposed prompt.")
                      if _collapsed(pm) else
                      "The router still spreads inputs; see the table above for whether domains separate."))
    for name in ("ptmoe", "smop", "ptmoe-studio"):
        runs = [r for r in fams.get(name, []) if r["expert_load"]]
        if len(runs) > 1:
            collapsed = [r.get("seed", 0) for r in runs if _collapsed(r)]
            out.append(f"- **{runs[0]['label']} over {len(runs)} seeds**: the router sent ≥ 95 % of the evaluated "
                       f"inputs to one expert in {len(collapsed)} of them"
                       + (f" (seed {', '.join(map(str, collapsed))})" if collapsed else "")
                       + "; expert shares per seed: "
                       + "; ".join(f"seed {r.get('seed', 0)} " + "/".join(f"{v:.0%}" for v in overall_load(r))
                                   for r in runs) + ".")
    out.extend(studio_lines(fams, results))
    bal = next((r for r in results if r["name"] == "ptmoe-balance"), None)
    if pm and bal and bal["expert_load"]:
        share = overall_load(bal)
        top = majority_experts(bal)
        majority = (f"e{next(iter(top.values()))} for every data set" if len(set(top.values())) == 1 else
                    ", ".join(f"{ds} → e{e}" for ds, e in top.items()))
        out.append(f"- **Balance loss** (SMoP's Switch-style loss, not in the paper's PT-MoE): the same PT-MoE with "
                   f"`balance_loss` {bal['method']['balance_loss']} sends its evaluated inputs "
                   f"{' / '.join(f'{v:.0%}' for v in share)} to its experts (without it: "
                   f"{' / '.join(f'{v:.0%}' for v in overall_load(pm))}); majority expert per data set: {majority}. "
                   f"QA F1 {pct(summary(bal)['qa_f1'])} with it vs {pct(summary(pm)['qa_f1'])} without; math "
                   f"{pct(summary(bal)['math_acc'])} vs {pct(summary(pm)['math_acc'])}.")
    if pm:
        lora = f" and LoRA {fmt_params(by['lora']['trainable_params'])}" if "lora" in by else ""
        out.append(f"- **Scale**: `{meta['model']}` has hidden size {meta['hidden']} (the paper: 2048, 1B parameters); "
                   f"PT-MoE trains {fmt_params(pm['trainable_params'])} parameters here vs PT "
                   f"{fmt_params(by['pt']['trainable_params'])}{lora}. At H={meta['hidden']} the shared factor B "
                   "(R·H) dominates PT-MoE's count, so its saving over PT seen at H=2048 need not hold.")
    return out


# Other processes' share of all CPU time above which a run's timing is called "not idle".
OTHER_CPU_BUSY = 0.10


def lrs(results: list[dict[str, Any]], prompt: bool) -> str:
    """The learning rates the runs used (soft-prompt methods, or LoRA), as recorded."""
    vals = sorted({r["lr"] for r in results if r.get("lr") is not None and (r["method"]["method"] != "lora") == prompt})
    return ", ".join(f"{v:g}" for v in vals)
