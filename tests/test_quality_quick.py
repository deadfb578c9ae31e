"""The quality benchmark (python -m bench.quality): its plan as sweeps, and the --quick path end to end through
the job layer on the tiny random model."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.skipif(not (DATA / "gsm8k" / "train.jsonl").is_file(),
                                reason="needs ../shared/data (GSM8K + SQuAD v2.0)")


def _load_bench():
    """The quality benchmark's names in one namespace: its plan, run and report modules and the runner."""
    from types import SimpleNamespace

    from bench import runner
    from bench.quality import plan, report
    from bench.quality import run as run_mod

    return SimpleNamespace(**{**vars(runner), **vars(plan), **vars(report), **vars(run_mod)})


def test_quick_writes_a_complete_table(tmp_path):
    from ptmoe_core.config import MethodConfig
    from ptmoe_core.models import load_base_model
    from ptmoe_core.params import ModelShape, count_params
    from storage import Storage
    from storage.models import RunStatus

    q = _load_bench()
    out = tmp_path / "results.md"
    db = tmp_path / "studio.db"
    args = ["--quick", "--model", "tiny-random", "--device", "cpu", "--only", "pt,dpt,smop,ptmoe", "--db", str(db),
            "--out", str(out), "--steps", "2", "--batch", "2", "--n-eval", "1", "--train-cap", "40", "--plots", "html",
            "--no-calibrate", "--seeds", "2"]
    res = q.run(args)
    text = out.read_text()
    assert text.startswith("# PT-MoE vs. baselines")
    assert "python -m bench.quality --quick --model tiny-random" in text

    # the table: a row per method, every cell filled
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| method | trainable params"))
    header = [c.strip() for c in lines[head].strip("|").split("|")]
    rows = []
    for line in lines[head + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    assert [r[0] for r in rows] == ["PT", "DPT", "SMoP", "PT-MoE"]  # seed 0; the repeats have their section
    for r in rows:
        assert len(r) == len(header)
        assert all(c and c != "n/a" for c in r), r
    for col in ("squad-v2 EM / F1", "gsm8k acc", "builtin-qa-ood EM / F1", "in-domain avg", "out-of-domain avg",
                "train time"):
        assert col in header

    # parameter counts are the engine's (real tensors and formula)
    base = load_base_model(name="tiny-random", device="cpu")
    shape = ModelShape.from_hf_config(base.model.config)
    by = {r["name"]: r for r in res["results"]}
    for name, row in zip(("pt", "dpt", "smop", "ptmoe"), rows, strict=True):
        r = by[name]
        cfg = MethodConfig(**{k: v for k, v in r["method"].items()})
        assert r["trainable_params"] == r["formula_params"] == count_params(cfg, shape)
        assert row[1] == f"{r['trainable_params']:,}"
        assert r["config"]["method"]["preset"] == "paper" and r["config"]["data"]["number_match"] == "flexible"
    assert by["smop"]["method"]["noise_std"] == 1.0 and by["dpt"]["method"]["init"] == "uniform"
    assert "**answerable-only**" in text and "`flexible-extract`" in text
    assert "expert_usage" in res["plots"] and res["plots"]["expert_usage"].is_file()

    # the second seed: its own runs, trained with seed 1 on the same data and questions, and a mean over seeds
    assert "## Over 2 training seeds" in text and "seeds where it holds" in text and "mean of 2 seeds" in text
    assert res["plots"]["seeds"].is_file()
    for m in ("pt", "dpt", "smop", "ptmoe"):
        again_, first = by[f"{m}-seed1"], by[m]
        assert again_["config"]["train"]["seed"] == 1 and first["config"]["train"]["seed"] == 0
        assert again_["config"]["data"] == first["config"]["data"] and again_["method"] == first["method"]
        assert [(r["dataset"], r["id"]) for r in again_["records"]] == [(r["dataset"], r["id"]) for r in first["records"]]
    assert by["ptmoe-seed1"]["history"][-1]["loss"] != by["ptmoe"]["history"][-1]["loss"]

    # recorded in the database, and a second invocation reuses the runs instead of training again
    with Storage(str(db)) as st:
        runs = st.list_runs(experiment="paper-comparison-quick")
        assert sorted(r.name for r in runs) == sorted(f"{m}{s}" for m in ("pt", "dpt", "smop", "ptmoe")
                                                      for s in ("", "-seed1"))
        assert all(r.status is RunStatus.FINISHED for r in runs)
        assert all(st.evaluations(r.id) for r in runs)
        # trained by the job layer: each run a worker process of its own, in one sweep per family
        assert all(r.sweep_id is not None and r.pid is not None for r in runs)
        sweeps = {w.name: w for w in st.list_sweeps(experiment="paper-comparison-quick")}
        assert sorted(sweeps) == ["dpt", "pt", "ptmoe", "smop"]
        assert all(w.spec["seeds"] == [0, 1] for w in sweeps.values())
        assert {r.sweep_id for r in runs if r.name.startswith("ptmoe")} == {sweeps["ptmoe"].id}
        assert all((Path(r.output_dir) / q.RESULT_FILE).is_file() for r in runs)
    again = q.run([*args[:-5], "--plots", "none", "--no-calibrate", "--seeds", "2"])
    assert again["meta"]["trained"] == 0 and again["meta"]["cached"] == 8


def by_name(plan, name):
    return next(s.method for s in plan if s.name == name)


def test_full_plan_holds_the_ablations_and_the_balance_loss_control():
    from ptmoe_core.config import MethodConfig

    q = _load_bench()
    plan = q.build_plan(quick=False)
    assert len({s.name for s in plan}) == len(plan) == 17
    groups = [s.group for s in plan]
    assert groups.count("methods") == 5 and groups.count("routing") == 3 and groups.count("balance") == 1
    assert groups.count("studio") == 2
    assert by_name(plan, "ptmoe-studio-before") == {**by_name(plan, "ptmoe-studio"), **q.STUDIO_BEFORE}
    by = {s.name: s.method for s in plan}
    assert {k: v for k, v in by["ptmoe-balance"].items() if k != "balance_loss"} == by["ptmoe"]
    assert by["ptmoe-balance"]["balance_loss"] > 0 and "balance_loss" not in by["ptmoe"]
    assert [s.name for s in q.build_plan(quick=True)] == list(q.METHODS)
    # the five methods as the paper configures them; PT-MoE also in the studio preset
    assert all(by[m]["preset"] == "paper" for m in q.METHODS) and by["ptmoe-studio"]["preset"] == "studio"
    smop = MethodConfig.from_dict(by["smop"])
    assert (smop.prompt_len, smop.noise_std, smop.balance_loss, smop.router_bias) == (20, 1.0, 0.01, False)
    dpt = MethodConfig.from_dict(by["dpt"])
    assert (dpt.rank, dpt.init) == (39, "uniform")
    # every routing variant trains its router: non-probationary rows route with straight-through
    for name in ("ptmoe-sel-noprob", "ptmoe-soft-noprob"):
        cfg = MethodConfig.from_dict(by[name])
        assert not cfg.probationary and cfg.straight_through
    assert not MethodConfig.from_dict(by["ptmoe-soft-prob"]).straight_through


def test_bootstrap_resamples_the_tables_statistic():
    """Unequal set sizes: the interval is around the macro (per-set) difference the table reports,
    not the pooled per-question one."""
    import random

    q = _load_bench()
    rng = random.Random(1)

    def result(shift_big: float, shift_small: float) -> dict:
        recs = [{"dataset": "big", "id": str(i), "answer_type": "span", "f1": min(1.0, rng.random() * .2 + shift_big)}
                for i in range(40)]
        recs += [{"dataset": "small", "id": str(i), "answer_type": "span", "f1": shift_small} for i in range(4)]
        recs += [{"dataset": "gsm8k", "id": "0", "answer_type": "number", "f1": 1.0}]
        return {"records": recs}

    a, b = result(0.5, 1.0), result(0.5, 0.0)  # a wins only on the 4-question set
    d, lo, hi = q.paired_bootstrap(a, b)
    per_set = {ds: [x["f1"] - y["f1"] for x, y in zip(a["records"], b["records"], strict=True)
                    if x["dataset"] == ds] for ds in ("big", "small")}
    macro = sum(sum(v) / len(v) for v in per_set.values()) / 2
    pooled = sum(sum(v) for v in per_set.values()) / 44
    assert d == pytest.approx(macro) and abs(d - pooled) > 0.3
    assert lo <= d <= hi and lo > pooled  # the pooled mean would sit outside the interval
    assert q.paired_bootstrap({"records": []}, b) is None


def _fake_result(q, spec, rng):
    """A result dict shaped as summarize_result writes it, with random scores (for the report only)."""
    import dataclasses

    from ptmoe_core.config import MethodConfig
    from ptmoe_core.methods import METHODS

    method = dataclasses.asdict(MethodConfig.from_dict(spec.method))
    n = method["n_experts"] if METHODS[method["method"]].routed else 1
    sets = {"squad-v2": ("span", False), "gsm8k": ("number", False), "builtin-qa-ood": ("span", True)}
    records = [{"dataset": ds, "id": str(i), "ood": ood, "answer_type": t, "f1": rng.random(), "em": rng.random() > .5,
                "correct": rng.random() > .5, "expert": rng.randrange(n) if n > 1 else None}
               for ds, (t, ood) in sets.items() for i in range(4)]
    scores = {ds: {"em": rng.random(), "f1": rng.random(), "accuracy": rng.random()} for ds in sets}
    scores |= {"in_domain": {"f1": rng.random()}, "out_of_domain": {"f1": rng.random()}}
    hist = [{"step": k, "loss": 3 - k / 10, "router_entropy": 0.69 - k / 100 if n > 1 else None,
             "expert_load": [1 / n] * n if n > 1 else [], "tokens_per_s": 300.0} for k in range(1, 6)]
    load = {ds: [sum(r["expert"] == e for r in records if r["dataset"] == ds) / 4 for e in range(n)]
            for ds in sets} if n > 1 else {}
    return {"name": spec.name, "label": spec.label, "group": spec.group, "run_id": rng.randrange(1, 99),
            "method": method, "trainable_params": 1000, "formula_params": 1000, "lr": 1e-2, "scores": scores,
            "eval_loss": 1.5, "train_s": 100.0, "eval_s": 50.0, "final_loss": 2.5, "history": hist,
            "expert_load": load, "records": records, "finished_at": 1.7e9 + rng.random() * 1000,
            "load_before": "0.1 / 0.2 / 0.3"}


def _meta(q, command: str, trained: int) -> dict:
    """What run() passes write_report besides the results, for a full-plan report on CPU."""
    return {"command": command, "date": "2026-01-01 00:00", "machine": "x86_64 2-core CPU",
            "model": "smollm2-135m", "hidden": 576, "device": "cpu", "dtype": "float32", "threads": 2,
            "experiment": "paper-comparison", "db": "studio.db", "quick": False, "number_match": "flexible",
            "squad_unanswerable": "drop", "budget": {**q.dataclasses.asdict(q.FULL), "warmup": q.FULL.warmup},
            "n_train": 1200, "train_mix": "gsm8k 400", "lr_prompt": "0.01", "lr_lora": "0.002", "wall_s": 4000.0,
            "trained": trained, "cached": 0}


def test_full_report_has_every_section(tmp_path):
    """write_report on the full plan's shape (the full run takes over an hour, so its report code is
    checked here on results of that shape)."""
    import random

    q = _load_bench()
    rng = random.Random(0)
    results = [_fake_result(q, s, rng) for s in q.build_plan(quick=False)]
    meta = _meta(q, "python bench/quality.py", len(results))
    out = tmp_path / "results.md"
    q.write_report(out, results, meta, {}, None)
    text = out.read_text()
    for title in ("## The five methods", "## PT-MoE routing variants", "## PT-MoE with the optional balance loss",
                  "## Sweep: number of experts N", "## Sweep: prompt length T", "## Sweep: rank R",
                  "## Routing: is the router used", "## Against the paper's shape", "### Verdict", "## Runs"):
        assert title in text, title
    assert "**Balance loss**" in text and "balance_loss=0.1" in text
    assert "Nothing else was running before the runs started" in text and "trained between" in text
    assert "no gradient" not in text  # every routing variant's router trains (straight-through)
    assert "equal mix 1/2 of all experts" in text  # soft non-probationary: the router cannot act
    assert "**answerable-only**" in text and "flexible-extract" in text
    assert "`paper` preset" in text and "DPT 81,432" in text and "SMoP 86,016" in text
    assert "## PT-MoE in the studio preset" in text
    assert "I(data set; expert), bits" in text
    runs = text.split("## Runs")[1]
    assert all(f"| {s.name} |" in runs for s in q.build_plan(quick=False))


def test_seeds_repeat_the_methods_with_a_new_training_seed_only(tmp_path):
    q = _load_bench()
    one = q.build_plan(quick=False)
    three = q.build_plan(quick=False, seeds=3)
    assert three[:len(one)] == one  # the seed-0 runs (and so their cached results) do not change
    repeats = three[len(one):]
    assert [s.name for s in repeats] == [f"{n}-seed{k}" for k in (1, 2) for n in q.SEEDED]
    by = {s.name: s for s in one}
    for s in repeats:
        assert s.group == "seeds" and s.family == s.base and s.method == by[s.base].method
    c0 = q.make_config(by["ptmoe"], q.FULL, "tiny-random", "cpu", DATA, tmp_path)
    c2 = q.make_config(repeats[-3], q.FULL, "tiny-random", "cpu", DATA, tmp_path)
    assert repeats[-3].name == "ptmoe-seed2"
    assert (c0.train.seed, c2.train.seed) == (0, 2) and c2.data == c0.data  # same data and questions
    assert q.config_key(c0) != q.config_key(c2)
    with pytest.raises(SystemExit, match="--seeds"):
        q.build_plan(quick=False, seeds=0)


def test_seeds_bootstrap_pairs_runs_by_seed_and_averages_over_them():
    q = _load_bench()

    def run(seed: int, f1s: list[float]) -> dict:
        return {"seed": seed, "records": [{"dataset": "s", "id": str(i), "answer_type": "span", "f1": f}
                                          for i, f in enumerate(f1s)]}

    a = [run(1, [1.0, 1.0, 0.0, 0.0]), run(0, [1.0, 1.0, 1.0, 1.0])]  # order must not matter: paired by seed
    b = [run(0, [0.0, 0.0, 0.0, 0.0]), run(1, [1.0, 1.0, 1.0, 1.0])]
    d, lo, hi = q.seeds_bootstrap(a, b)
    assert d == pytest.approx((1.0 + -0.5) / 2)  # seed 0: +1, seed 1: −0.5
    assert lo <= d <= hi
    assert q.spread([1.0]) != q.spread([1.0])  # nan for one value
    assert q.spread([1.0, 3.0]) == pytest.approx(2 ** 0.5)


def test_report_over_seeds(tmp_path):
    """With --seeds, the methods' claims are checked on the mean over seeds, seed by seed, and every repeat
    is listed."""
    import random

    q = _load_bench()
    rng = random.Random(3)
    plan = q.build_plan(quick=False, seeds=3)
    results = [{**_fake_result(q, s, rng), "seed": s.seed, "family": s.family} for s in plan]
    meta = _meta(q, "python bench/quality.py --seeds 3", len(plan))
    out = tmp_path / "results.md"
    q.write_report(out, results, meta, {}, None)
    text = out.read_text()
    assert "## Over 3 training seeds" in text and "measured here (mean of 3 seeds)" in text
    fams = q.families(results)
    pm = q.mean_summary(fams["ptmoe"])["qa_f1"]
    assert pm == pytest.approx(sum(q.summary(r)["qa_f1"] for r in fams["ptmoe"]) / 3)
    seeds_rows = text.split("## Over 3 training seeds")[1].split("Each repeat")[0]
    assert f"| PT-MoE | 0, 1, 2 | {q.pct(pm)} ± " in seeds_rows
    ahead = q.seeds_where(fams["ptmoe"], fams["pt"], "qa_f1", "ge")
    assert f"| PT-MoE ≥ PT on QA F1 | 58.26 vs 56.77 | {q.pct(pm)} vs" in text and f"| {ahead} |" in text
    assert "| PT-MoE, studio preset − PT-MoE |" in text
    assert "PT-MoE over 3 seeds" in text
    assert "**Studio preset vs the paper's PT-MoE** (mean of 3 seeds)" in text
    assert "The studio preset before issue 22" in text
    runs = text.split("## Runs")[1]
    assert all(f"| {s.name} |" in runs for s in plan)


def test_load_note_counts_other_processes_not_the_benchmark_itself():
    q = _load_bench()
    idle = [{"other_cpu": 0.01, "load_before": "2.0 / 2.0 / 2.0"}, {"other_cpu": 0.03, "load_before": "2.1 / 2 / 2"}]
    assert "their times are those of an idle machine" in q.load_note(idle)  # a load of 2 is our own last run
    assert "used 1% of the machine's" in q.load_note([idle[0], idle[0]])
    busy = q.load_note([*idle, {"other_cpu": 0.4}])
    assert "over 10% during 1 of them" in busy and "1%–40%" in busy
    mixed = q.load_note([*idle, {"load_before": "2.0 / 2.0 / 2.0"}])
    assert "2 of the 3 runs" in mixed and "For the other 1" in mixed
    before = q.cpu_snapshot()
    if before is not None:  # Linux: our own busy loop is not "other" work
        t = q.time.time()
        while q.time.time() - t < 0.3:
            pass
        share = q.other_cpu_share(before, q.cpu_snapshot())
        assert share is not None and 0.0 <= share <= 1.0
    assert q.other_cpu_share(None, before) is None


def test_the_plan_as_sweeps_expands_to_the_same_runs_as_before():
    """The plan's runs as the sweeps expand them: the names and configuration keys the benchmark had
    before it ran through the job layer (tests/data/quality_plan_snapshot.json, written by the old
    bench/quality.py), so every run cached by earlier invocations is found again."""
    import json

    q = _load_bench()
    snap = json.loads((ROOT / "tests" / "data" / "quality_plan_snapshot.json").read_text())
    for label, quick, seeds in (("quick", True, 1), ("full-seeds2", False, 2)):
        b = q.QUICK if quick else q.FULL
        plan = q.build_plan(quick, None, seeds)
        planned = q.sweeps(plan, b, "smollm2-135m", "auto", Path("/data"), "paper-comparison")
        assert [{"name": p.name, "config_key": p.key} for p in planned] == snap[label], label
        # one sweep per family; a seed-0 run and its repeats share it and differ only in train.seed
        fams = {s.family for s in plan}
        assert len({id(p.sweep) for p in planned}) == len(fams)
        assert all(p.sweep.name == s.family and p.config.train.seed == s.seed for p, s in zip(planned, plan, strict=True))
