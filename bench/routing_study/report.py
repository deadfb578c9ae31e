"""The router study's page (``docs/routing_study.md``) from its runs' results (``run.load_results``), with
no training and no database: scores, paired differences, routing on the evaluated questions, every
candidate against issue 22's targets, the decision and the targets of the chosen default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.quality.report import fmt_s, pct

from .plan import EXPERIMENT, variants

# ---------------------------------------------------------------------------------------------
# The diagnosis (``run.diagnose``) on the page


def diagnosis_lines(dg: dict[str, Any]) -> list[str]:
    L = ["## Diagnosis (no training): what the router reads", ""]
    L.append(f"On the router's input (masked mean input embedding, standardised as `router_norm` does), over the "
             f"{dg['n_train']} training inputs and the held-out evaluation questions (`--diagnose`):")
    L.append("")
    L.append("- A linear probe of the data set, fitted on the training inputs, on held-out questions: " + ", ".join(
        f"{s} {v:.0%}" for s, v in dg["probe"].items()) + ". The in-domain sets are linearly separable from the "
        "router's input: a linear router *can* route by data set.")
    L.append(f"- The data sets account for {dg['between_share']:.0%} of the standardised inputs' variance; the "
             "rest varies within each set. Nothing in training asks the router for the data set: its only signals "
             "are the LM loss through the chosen expert's probability and the balance loss, and AdamW moves each of "
             "its N×H weights by about the learning rate per step (10× the prompt's in the studio preset), far more "
             "than an orthogonally initialised row weighs. So the split is set by the first steps' per-example "
             "gradients over the ~200 inputs seen and then made confident (probationary), and held-out inputs of one "
             "set fall on both sides of it.")
    L.append("- The studio preset's balance loss is computed per micro-batch of 4 (`ptmoe_core/trainer.py`): it "
             "pushes every batch of 4 toward two inputs per expert, whichever data sets the batch holds, which "
             "rewards splitting a set as much as separating sets.")
    L.append("- Source separation along the line between their centroids (d′): " + ", ".join(
        f"{k} {v:.1f}" for k, v in dg["d_prime"].items()) + ".")
    for k, c in dg["clusters"].items():
        groups: dict[int, list[str]] = {}
        for s, (cl, _) in c["majority"].items():
            groups.setdefault(cl, []).append(s)
        L.append(f"- k-means with k = {k} on the training inputs, held-out questions: I(set; cluster) "
                 f"{c['mi']:.2f} bits; clusters (sets by majority): " + " | ".join(
                     ", ".join(v) for v in groups.values()) + "; majority share per set: " + ", ".join(
                     f"{s} {v:.0%}" for s, (_, v) in c["majority"].items()) + ".")
    merged = [k for k, c in dg["clusters"].items() if c["majority"].get("squad-v2", (0,))[0] ==
              c["majority"].get("gsm8k", (1,))[0] or min(v for _, v in c["majority"].values()) < 0.8]
    if merged:
        L.append(f"- So unsupervised clusters (k = {', '.join(map(str, merged))}) either put SQuAD and GSM8K together "
                 "or split a set below 80 %; the candidate fits the router to the training data sets themselves "
                 "(`method.router_init: domains`) instead.")
    L.append("")
    return L


# ---------------------------------------------------------------------------------------------
# Numbers from a result


def macro(res: dict[str, Any], ood: bool = False, answer_type: str | None = None) -> float:
    """Mean over data sets (of the ood group, and of ``answer_type`` if given) of each set's mean score (F1 for
    span/text answers, accuracy for numbers: the record's ``f1`` is that)."""
    sets: dict[str, list[float]] = {}
    for r in res["records"]:
        if r["ood"] == ood and (answer_type is None or r["answer_type"] == answer_type):
            sets.setdefault(r["dataset"], []).append(float(r["f1"]))
    return sum(sum(v) / len(v) for v in sets.values()) / len(sets) if sets else float("nan")


def routing(res: dict[str, Any], ood: bool = False) -> dict[str, Any] | None:
    """I(data set; expert) in bits, the least-used expert's share, each set's majority-expert share,
    and the mean confidence, over the evaluated questions (in-domain unless ``ood``), as the engine
    summarises routing (``ptmoe_core.routing_summary.RoutingSummary``)."""
    from ptmoe_core.routing_summary import RoutingSummary

    rs = [r for r in res["records"] if r["ood"] == ood and r.get("expert") is not None]
    n = res["method"].get("n_experts", 0)
    if not rs or res["method"]["method"] not in ("ptmoe", "smop") or n < 2:
        return None
    # I(·; expert) is measured against the data set (the study's records carry no domain of their own).
    s = RoutingSummary.of(({**r, "domain": r["dataset"]} for r in rs), n)
    if s is None:
        return None
    major = s.majority
    return {"mi": s.mi_bits, "min_load": min(s.load), "load": s.load, "majority": major,
            "min_majority": min(share for _, share in major.values()), "confidence": s.mean_confidence}


def headline(res: dict[str, Any]) -> str:
    rt = routing(res)
    route = (f"; I {rt['mi']:.2f} bits, min load {rt['min_load']:.0%}, min majority {rt['min_majority']:.0%}"
             if rt else "")
    return f"QA F1 {pct(macro(res, answer_type='span'))}, in-domain macro {pct(macro(res))}{route}"


def paired(runs_a: list[dict[str, Any]], runs_b: list[dict[str, Any]], keep) -> tuple[float, float, float, int, int] | None:
    """a − b of a macro score (mean over the sets whose records ``keep`` selects), paired by seed and
    question: each question's difference is averaged over the seeds both ran, then questions are
    resampled within each set (ptmoe_core.metrics.paired_macro_bootstrap, 95 %). (diff, lo, hi, seeds,
    questions): only questions every pair of runs answered count (a partial run limits them)."""
    from ptmoe_core.metrics import paired_macro_bootstrap

    by_seed = {r["seed"]: r for r in runs_b}
    pairs = [(a, by_seed[a["seed"]]) for a in runs_a if a["seed"] in by_seed]
    if not pairs:
        return None
    per_q: dict[tuple[str, str], list[float]] = {}
    for ra, rb in pairs:
        fb = {(r["dataset"], r["id"]): r["f1"] for r in rb["records"] if keep(r)}
        for r in ra["records"]:
            k = (r["dataset"], r["id"])
            if keep(r) and k in fb:
                per_q.setdefault(k, []).append(float(r["f1"]) - float(fb[k]))
    per_set: dict[str, list[float]] = {}
    for k in sorted(per_q):
        if len(per_q[k]) == len(pairs):
            per_set.setdefault(k[0], []).append(sum(per_q[k]) / len(pairs))
    boot = paired_macro_bootstrap(per_set)
    return None if boot is None else (*boot, len(pairs), sum(map(len, per_set.values())))


SCORES = {  # name -> (label, record filter)
    "qa": ("QA F1 (span sets, in-domain)", lambda r: r["answer_type"] == "span" and not r["ood"]),
    "in": ("in-domain macro", lambda r: not r["ood"]),
    "ood": ("out-of-domain macro", lambda r: r["ood"]),
}


# ---------------------------------------------------------------------------------------------
# The page


def by_variant(results: list[dict[str, Any]], order: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(results, key=lambda r: r["seed"]):
        out.setdefault(r["variant"], []).append(r)
    return {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}


def _per_seed(vals: list[float], f=pct) -> str:
    return " / ".join(f(v) for v in vals)


def _conf(c: float | None) -> str:
    return 'n/a' if c is None else f'{c:.2f}'


def _mean(vals: list[float]) -> float:
    return sum(vals) / len(vals) if vals else float("nan")


HYPOTHESES = [
    "## Hypotheses this study tests",
    "",
    "- **Within-set splitting** (see the diagnosis): the router's input separates the data sets, but nothing "
    "in training asks for them; a randomly started router, moved by AdamW at 10× the prompt's learning rate, "
    "settles on an arbitrary split of the inputs it saw. Test: fit the router to the training data sets before "
    "training and keep it fixed (`method.router_init: domains`, `method.router_lr_mult: 0`).",
    "- **Score loss of the studio preset**: in `docs/results.md` (16 questions per set, so weak evidence) every "
    "PT-MoE variant whose chosen prompt enters at full weight scored about PT's QA F1 (studio preset: router "
    "confidence ≈ 1.00; N = 1: weight exactly 1; top-2 probationary: weights sum to 1), while the paper's "
    "settings, whose undecided router scales the prompt by its probability (≈ 0.6–0.75), scored about 11 "
    "points more. So the hypothesis is that the prompt's scale, not the routing, explains most of the gap, "
    "with the full-rank init (`text_vocab`) explaining part (the studio preset with the paper's text init "
    "recovered part of it there). Test: the candidate keeps the paper's text init and fixes the router's "
    "confidence at 0.7, the paper's router's level, so each data set's prompt enters at about the paper's scale.",
    "- **Round 2: split updates** (after `domains` scored below `paper`): at 50 steps × batch 4 the adapter sees "
    "200 examples, and a top-1 router gives each expert only its group's share of them. Test: mix both experts by "
    "the fixed router's probabilities (`domains-dense`: every input trains both prompts, its own the most), and "
    "let the fitted router keep learning at the paper's rate (`domains-learn`), which lets the scale adapt but "
    "may undo the fit.",
    "- **Does routing help at all?** PT-MoE with one expert (`n1`, nothing to choose) against two.",
    "- **Round 3: a router that learns but keeps the fit** (after `domains-learn` scored best but drifted from the "
    "fit and split data sets): the router learning at 0.1 × the prompt's rate (`domains-slow`), a loss toward the "
    "fitted start's choice for each input (`domains-anchor`, `method.router_anchor`), and both.",
    "- **Round 4: fresh seeds** (after `domains-slow` met every target on seeds 0–2, the seeds every candidate was "
    "chosen on): seeds 3 and 4 of `domains-slow`, which no decision had seen, to check it was not a lucky draw; "
    "and the fixed fitted router at the confidence the learning routers reached (0.85, `domains-confident`), to "
    "test whether the fixed router's lower score came from its prompt scale rather than from holding the split.",
    "- **Round 5: fresh seeds for the chosen default** (after `domains-confident` met every target on seeds 0–2 and "
    "became the default): seeds 3 and 4 of `domains-confident`, `paper` and `pt`. Its routing held; its score did "
    "not (seed 4: 6 QA F1 points below `paper`), so over 5 seeds it misses the QA F1 target against `paper`. The "
    "decision rule changed after this round, and we say so: it ranked scores on seeds 0–2, the seeds every "
    "candidate was chosen on, where the winner is favoured by its luck there; it now ranks the settings checked on "
    "fresh seeds over all their seeds first. Under the old rule `domains-confident` would stay the default.",
    "",
]


def write_page(out: Path, results: list[dict[str, Any]], meta: dict[str, Any], default: str | None) -> None:
    vs = variants()
    fams = by_variant(results, list(vs))
    sets = list(dict.fromkeys(r["dataset"] for res in results for r in res["records"]))
    n_q = {s: len({r["id"] for res in results for r in res["records"] if r["dataset"] == s}) for s in sets}
    L = ["# Routing that pays: the router study (issue 22)", ""]
    L.append(f"Generated by `{meta['command']}` on {meta['date']} from the runs stored in experiment "
             f"`{EXPERIMENT}` ({meta['db']}); machine: {meta['machine']}, shared with other work (each run's "
             "other-process CPU share is listed). Every number below comes from those runs' stored answers.")
    L.append("")
    L.append("## Setup")
    L.append("")
    L.append("- Training: the comparison's mix as `bench/quality.py` builds it (SQuAD v2 answerable 400, GSM8K 400, "
             "built-in 4 × 100; 1200 examples), SmolLM2-135M frozen, 50 optimizer steps × batch 4, warm-up 5, "
             "lr 0.01, every variant the same data order per seed; seeds change init, batch order and router noise.")
    L.append("- Evaluation (the same questions for every run and seed): " + ", ".join(
        f"{s} {n_q[s]}" for s in sets) + " questions; SQuAD's test-split passages hold only "
        f"{n_q.get('squad-v2', 0)} answerable questions, all used. Greedy, 16 new tokens. Score = F1 on span/text "
        "answers, accuracy (lm-eval-harness flexible-extract) on numbers; macro = mean over the sets.")
    L.append("- Paired differences: per question, averaged over the seeds both variants ran (paired by seed), "
             "then a 95 % bootstrap resampling questions within each set (`ptmoe_core.metrics.paired_macro_bootstrap`). "
             "The interval is about the questions; the seeds' spread is listed beside it.")
    L.append("")
    if meta.get("diagnosis"):
        L += diagnosis_lines(meta["diagnosis"])
    L += HYPOTHESES
    L.append("## Variants")
    L.append("")
    L.append("| variant | settings that differ from the paper preset | seeds run |")
    L.append("|---|---|---|")
    from ptmoe_core.presets import preset_values
    paper_vals = {**preset_values("paper", "ptmoe")}
    for name, runs in fams.items():
        m = runs[0]["method"]
        diff = ", ".join(f"{k}={m[k]}" for k in paper_vals if m.get(k) != paper_vals[k]) if m["method"] == "ptmoe" \
            else f"{m['method']}: T={m['prompt_len']}, init={m['init']}"
        L.append(f"| {vs.get(name, (name,))[0]} (`{name}`) | {diff or 'none'} | {', '.join(str(r['seed']) for r in runs)} |")
    missing = [f"`{k}` ({v[0]})" for k, v in vs.items() if k not in fams]
    if missing:
        L.append("")
        L.append("Defined but without a run that finished training: " + ", ".join(missing) + ".")
    L.append("")
    L.append("## Scores")
    L.append("")
    head = ["variant", "seeds", "questions answered (per seed)", "QA F1 in-domain mean (per seed)",
            "in-domain macro mean (per seed)"]
    if any(r["ood"] for res in results for r in res["records"]):
        head.append("out-of-domain macro")
    head += [f"{s}" for s in sets if not s.endswith("-ood")] + ["train time (mean)", "eval time (mean)"]
    L += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in fams.items():
        qa, ind = [macro(r, answer_type="span") for r in runs], [macro(r) for r in runs]
        answered = " / ".join(f"{len(r['records'])}" + (" (partial)" if r.get("partial") else "") for r in runs)
        row = [f"`{name}`", str(len(runs)), answered, f"{pct(_mean(qa))} ({_per_seed(qa)})",
               f"{pct(_mean(ind))} ({_per_seed(ind)})"]
        if "out-of-domain macro" in head:
            ood = [macro(r, ood=True) for r in runs if any(x["ood"] for x in r["records"])]
            row.append(f"{pct(_mean(ood))} ({len(ood)} seed{'s' if len(ood) != 1 else ''})" if ood else "n/a")
        for s in sets:
            if not s.endswith("-ood"):
                vals = [_mean([float(x["f1"]) for x in r["records"] if x["dataset"] == s]) for r in runs]
                row.append(pct(_mean(vals)))
        tr = [r["train_s"] for r in runs if r.get("train_s")]
        row += [fmt_s(_mean(tr)) if tr else "n/a", fmt_s(_mean([r["eval_s"] for r in runs]))]
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("## Routing on the evaluated questions (in-domain sets)")
    L.append("")
    L.append("| variant | seed | I(data set; expert), bits | expert load | min majority-expert share (set) | "
             "majority expert per set (share) | mean confidence | train other-CPU share |")
    L.append("|---|---|---|---|---|---|---|---|")
    for name, runs in fams.items():
        for r in runs:
            rt = routing(r)
            if rt is None:
                continue
            worst = min(rt["majority"], key=lambda s: rt["majority"][s][1])
            maj = "; ".join(f"{s}→e{e} ({v:.0%})" for s, (e, v) in rt["majority"].items())
            other = r.get("train_other_cpu")
            L.append(f"| `{name}` | {r['seed']} | {rt['mi']:.2f} | {'/'.join(f'{x:.0%}' for x in rt['load'])} | "
                     f"{rt['min_majority']:.0%} ({worst}) | {maj} | "
                     f"{_conf(rt['confidence'])} | "
                     f"{'n/a' if other is None else f'{other:.0%}'} |")
    L.append("")
    L.append("## Paired differences")
    L.append("")
    L.append("On the questions both runs of a seed answered (a partial run's evaluation pairs on the questions it "
             "reached; the scores table above averages each run's own answered questions, so it can differ).")
    L.append("")
    L.append("| difference | score | points | 95 % interval | seeds paired | questions paired | per seed (a − b) |")
    L.append("|---|---|---|---|---|---|---|")
    # Against the paper and PT (the targets), and N = 2 against N = 1 (does the choice of expert help?).
    rows = [(a, b) for a in fams for b in ("paper", "pt", "n1")
            if a != b and b in fams and a not in ("pt", "n1") or (a, b) == ("n1", "pt") and b in fams]
    for a, b in rows:
        for key in ("qa", "in", "ood"):
            label, keep = SCORES[key]
            boot = paired(fams[a], fams[b], keep)
            if boot is None or (key == "ood" and not any(keep(r) for r in fams[a][0]["records"])):
                continue
            d, lo, hi, k, nq = boot
            bs = {r["seed"]: r for r in fams[b]}
            per = " / ".join(f"{100 * paired([r], [bs[r['seed']]], keep)[0]:+.1f}" for r in fams[a] if r["seed"] in bs)
            L.append(f"| `{a}` − `{b}` | {label} | {100 * d:+.1f} | [{100 * lo:+.1f}, {100 * hi:+.1f}] | {k} | {nq} | "
                     f"{per} |")
    L.append("")
    L += candidates_lines(fams)
    L += decision_lines(fams)
    L += targets_lines(fams, default, meta)
    out.write_text("\n".join(L) + "\n")


BASELINES = ("pt", "paper", "n1")  # what the candidates are measured against, not candidates themselves


def score_check(runs: list[dict[str, Any]], against: list[dict[str, Any]], key: str) -> tuple[str, bool | None]:
    """One score target of issue 22 (mean difference ≥ −1 point, 95 % interval not wholly below 0) as
    table text and whether it is met (None: not measured, or fewer than 3 paired seeds)."""
    boot = paired(runs, against, SCORES[key][1])
    if boot is None:
        return "n/a", None
    d, lo, hi, k, _ = boot
    ok = 100 * d >= -1 and hi >= 0
    return f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" + ("" if k >= 3 else f" ({k} seed{'s' * (k > 1)})"), \
        (ok if k >= 3 else None)


def candidates_lines(fams: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every routed variant against every target, one row each: the study's answer at a glance."""
    L = ["## Every candidate against the targets", "",
         "Score differences are a − b in points with the 95 % interval (paired by seed and question); a cell is "
         "**met** when the mean is ≥ −1 and the interval is not wholly below 0, over 3 seeds. Routing cells are "
         "the worst seed.", "",
         "| variant | seeds | QA F1 − `paper` | QA F1 − `pt` | in-domain macro − `paper` | in-domain macro − `pt` | "
         "min I (bits, ≥ 0.5) | min expert load (≥ 10 %) | min majority share (≥ 80 %) | all met |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in fams.items():
        if name in BASELINES:
            continue
        cells, oks = [], []
        for key in ("qa", "in"):
            for b in ("paper", "pt"):
                text, ok = score_check(runs, fams.get(b, []), key)
                cells.append(text + ("" if ok is None else f" **{'met' if ok else 'missed'}**"))
                oks.append(ok)
        rts = [rt for rt in (routing(r) for r in runs) if rt is not None]
        if rts:
            lows = worst_routing(rts)
            cells += [f"{lows[0]:.2f}", f"{lows[1]:.0%}", f"{lows[2]:.0%}"]
            oks += routing_checks(lows)
        else:
            cells += ["n/a"] * 3
            oks.append(False)
        verdict = "yes" if all(oks) else "no" if any(o is False for o in oks) else "not yet (fewer than 3 seeds)"
        L.append(f"| `{name}` | {len(runs)} | " + " | ".join(cells) + f" | {verdict} |")
    return L + [""]


def meets_all(runs: list[dict[str, Any]], fams: dict[str, list[dict[str, Any]]]) -> bool:
    """Every target of issue 22 met over 3 seeds (scores against `paper` and `pt`, routing in every seed)."""
    scores = [score_check(runs, fams.get(b, []), key)[1] for key in ("qa", "in") for b in ("paper", "pt")]
    return all(ok is True for ok in scores) and routes_in_every_seed(runs)


def worst_routing(rts: list[dict[str, Any]]) -> tuple[float, float, float]:
    """(lowest I(data set; expert), lowest least-used expert's load, lowest majority share) over seeds."""
    return (min(rt["mi"] for rt in rts), min(rt["min_load"] for rt in rts), min(rt["min_majority"] for rt in rts))


def routing_checks(lows: tuple[float, float, float]) -> list[bool]:
    """Issue 22's routing targets on the worst seed: I ≥ 0.5 bits, load ≥ 10 %, majority share ≥ 80 %."""
    return [lows[0] >= 0.5, lows[1] >= 0.1, lows[2] >= 0.8]


def routes_in_every_seed(runs: list[dict[str, Any]]) -> bool:
    rts = [routing(r) for r in runs]
    return bool(rts) and None not in rts and all(routing_checks(worst_routing(rts)))


def preset_of(method: dict[str, Any]) -> str | None:
    """The presets whose values a variant's method config has (top_k 0 and N both mean every expert), or None."""
    from ptmoe_core.methods.routing import experts_per_input
    from ptmoe_core.presets import PRESETS, preset_values

    def norm(d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "top_k": experts_per_input(d.get("top_k", 1), method["n_experts"])}

    have = norm(method)
    found = [p for p in PRESETS if all(have.get(k) == v for k, v in norm(preset_values(p, method["method"])).items())]
    return ", ".join(f"`{p}`" for p in found) or None


def decision_lines(fams: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The default the study's rule picks, from the stored runs: a two-expert PT-MoE setting meeting every
    target over 3 seeds; if none does, the one that scores best (in-domain macro, then QA F1), as issue 22
    asks ("choose the default by score first"); and, for people who want to inspect routing, the
    best-scoring one that routes by data set in every seed. Settings run on the most seeds (fresh seeds
    beyond those the candidates were chosen on) rank first, on those seeds: a setting seen only on the seeds
    it was picked on is favoured by its luck there."""
    L = ["## Decision", "",
         "Rule: a two-expert PT-MoE setting that meets every target over 3 seeds becomes the default; if none does, "
         "the one with the best in-domain macro (then QA F1) does, and the best-scoring setting whose router "
         "specialises by data set in every seed becomes the `routed` preset. Settings run on the most seeds rank "
         "first, on those seeds; the others follow, ranked on the seeds every setting ran. A variant's routing "
         "must hold in every seed it ran.", ""]
    ranked = {name: runs for name, runs in fams.items() if runs[0]["method"]["method"] == "ptmoe"
              and runs[0]["method"].get("n_experts") == 2 and len(runs) >= 3}
    if not ranked:
        return L + ["No two-expert setting has 3 seeds yet."]
    seeds = {name: {r["seed"] for r in runs} for name, runs in ranked.items()}
    most = max(len(v) for v in seeds.values())
    top = [n for n in ranked if len(seeds[n]) == most]
    top_seeds = set.intersection(*(seeds[n] for n in top))
    common = set.intersection(*seeds.values())

    def scores(runs: list[dict[str, Any]], on: set[int]) -> tuple[float, float]:
        shared = [r for r in runs if r["seed"] in on]
        return _mean([macro(r) for r in shared]), _mean([macro(r, answer_type="span") for r in shared])

    tiered = len(top) < len(ranked) and top_seeds != common
    head = f"seeds {_seed_text(common)}, every setting"
    L += ["| variant | seeds | in-domain macro (" + head + ") | QA F1 (" + head + ") | "
          + (f"in-domain macro (seeds {_seed_text(top_seeds)}) | QA F1 (seeds {_seed_text(top_seeds)}) | " if tiered else "")
          + "routes by data set in every seed | every target met | preset with exactly these settings |",
          "|---|---|---|---|" + ("---|---|" if tiered else "") + "---|---|---|"]
    rows = []
    for name, runs in ranked.items():
        first = name in top and tiered
        rank_by = scores(runs, top_seeds if first else common)
        rows.append({"name": name, "k": len(runs), "common": scores(runs, common), "top": rank_by if first else None,
                     "key": (not first, -rank_by[0], -rank_by[1]), "routes": routes_in_every_seed(runs),
                     "met": meets_all(runs, fams), "preset": preset_of(runs[0]["method"]), "runs": runs})
    rows.sort(key=lambda r: r["key"])
    for r in rows:
        extra = "" if not tiered else (" | ".join(pct(x) for x in r["top"]) + " | " if r["top"] else "– | – | ")
        L.append(f"| `{r['name']}` | {r['k']} | {pct(r['common'][0])} | {pct(r['common'][1])} | {extra}"
                 f"{'yes' if r['routes'] else 'no'} | {'yes' if r['met'] else 'no'} | {r['preset'] or '–'} |")
    met = [r for r in rows if r["met"]]
    chosen = met[0] if met else rows[0]
    routed = next((r for r in rows if r["routes"]), None)
    L += ["", f"- **Default:** `{chosen['name']}` ({'meets every target' if met else 'no setting meets every target; best score'}"
          f"; preset {chosen['preset'] or 'none yet'})."]
    if routed is not None and routed is not chosen:
        on = {r["seed"] for r in chosen["runs"]} & {r["seed"] for r in routed["runs"]}
        (ri, rq), (ci, cq) = scores(routed["runs"], on), scores(chosen["runs"], on)
        L.append(f"- **For routing by data set:** `{routed['name']}`, the best-scoring setting that routes by data set in "
                 f"every seed (preset {routed['preset'] or 'none yet'}); it scores "
                 f"{100 * (ri - ci):+.1f} in-domain macro and {100 * (rq - cq):+.1f} QA F1 "
                 f"points against the default (means over seeds {_seed_text(on)}; the paired intervals are above).")
    return L + [""]


def _seed_text(seeds: set[int]) -> str:
    s = sorted(seeds)
    return f"{s[0]}–{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 2 else ", ".join(map(str, s))


def targets_lines(fams: dict[str, list[dict[str, Any]]], default: str | None, meta: dict[str, Any]) -> list[str]:
    """Each target of issue 22 for the variant ``default``: met / missed, with the numbers."""
    if default is None:
        return ["## Targets (issue 22)", "", "No stored variant has the studio preset's settings yet.", ""]
    L = [f"## Targets (issue 22) for `{default}`", ""]
    runs = fams.get(default)
    if not runs:
        return L + [f"`{default}` has no finished run yet."]
    cmd = f"`{meta['command_base']}`"
    for key in ("qa", "in"):
        label, keep = SCORES[key]
        for b in ("paper", "pt"):
            boot = paired(runs, fams.get(b, []), keep)
            if boot is None:
                L.append(f"- {label} vs `{b}`: not measured ({b} has no run of the same seeds).")
                continue
            d, lo, hi, k, nq = boot
            ok = 100 * d >= -1 and hi >= 0
            L.append(f"- {label}, `{default}` − `{b}` over {k} seed(s), {nq} paired questions: {100 * d:+.1f} points "
                     f"[{100 * lo:+.1f}, "
                     f"{100 * hi:+.1f}] (target: mean ≥ −1 and the interval not wholly below 0): "
                     f"**{'met' if ok else 'missed'}**" + ("" if k >= 3 else f" (only {k} of the 3 seeds asked for finished)") +
                     f" — {cmd}")
    rts = [(r["seed"], routing(r)) for r in runs]
    rts = [(s, rt) for s, rt in rts if rt is not None]
    if rts:
        mi = [rt["mi"] for _, rt in rts]
        low = [rt["min_load"] for _, rt in rts]
        maj = [rt["min_majority"] for _, rt in rts]
        L.append(f"- I(data set; expert) ≥ 0.5 bits in every seed: per seed {', '.join(f'{x:.2f}' for x in mi)}: "
                 f"**{'met' if min(mi) >= 0.5 else 'missed'}**")
        L.append(f"- no expert below 10 % of the load in every seed: least-used expert per seed "
                 f"{', '.join(f'{x:.0%}' for x in low)}: **{'met' if min(low) >= 0.1 else 'missed'}**")
        L.append(f"- every data set's majority expert takes ≥ 80 % of it, every seed: lowest per seed "
                 f"{', '.join(f'{x:.0%}' for x in maj)}: **{'met' if min(maj) >= 0.8 else 'missed'}**")
        for seed, rt in rts:
            shared: dict[int, list[str]] = {}
            for ds, (e, _) in rt["majority"].items():
                shared.setdefault(e, []).append(ds)
            L.append(f"  - seed {seed}, which sets share an expert: " + "; ".join(
                f"e{e}: {', '.join(v)}" for e, v in sorted(shared.items())))
    else:
        L.append("- routing targets: not applicable (no router)")
    a = [r["train_s"] for r in runs if r.get("train_s")]
    b = [r["train_s"] for r in fams.get("studio", []) if r.get("train_s")]
    fit = meta.get("diagnosis", {}).get("fit_cpu_s")
    L.append("- training wall time vs the studio preset before this study (change < 10 %): " + (
        f"the runs' own times ({fmt_s(_mean(a))} vs {fmt_s(_mean(b))}) are not comparable here, because other "
        "work shared the CPU in very different amounts while they trained; " if a and b else "") + (
        f"the only work the candidate adds is grouping the training inputs and fitting the router, {fit:.1f} "
        "CPU-seconds on these 1200 inputs (`--diagnose`), against minutes of training: **met** as estimated from "
        "the added work, not from a timed pair of runs" if fit is not None else "not measured"))
    L.append(f"- mean I(domain; expert) ≥ 0.6 bits on the built-in tasks over 3 seeds: measured by "
             f"`python -m bench.routing --mix builtin --variants studio --seeds 0,1,2` — {meta.get('builtin_note', 'not run in this study')}")
    return L

