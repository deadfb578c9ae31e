"""The quality benchmark's --quick path, end to end on the tiny random model (bench/quality.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.skipif(not (DATA / "gsm8k" / "train.jsonl").is_file(),
                                reason="needs ../shared/data (GSM8K + SQuAD v2.0)")


def _load_bench():
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench" / "quality.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = mod  # dataclasses look their module up while the file executes
    spec.loader.exec_module(mod)
    return mod


def test_quick_writes_a_complete_table(tmp_path):
    from ptmoe_core.config import MethodConfig
    from ptmoe_core.models import load_base_model
    from ptmoe_core.params import ModelShape, count_params
    from storage import Storage
    from storage.models import RunStatus

    q = _load_bench()
    out = tmp_path / "results.md"
    db = tmp_path / "studio.db"
    args = ["--quick", "--model", "tiny-random", "--device", "cpu", "--only", "pt,ptmoe", "--db", str(db),
            "--out", str(out), "--steps", "2", "--batch", "2", "--n-eval", "1", "--train-cap", "40", "--plots", "html",
            "--no-calibrate"]
    res = q.run(args)
    text = out.read_text()
    assert text.startswith("# PT-MoE vs. baselines")
    assert "python bench/quality.py --quick --model tiny-random" in text

    # the table: a row per method, every cell filled
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| method | trainable params"))
    header = [c.strip() for c in lines[head].strip("|").split("|")]
    rows = []
    for line in lines[head + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    assert [r[0] for r in rows] == ["PT", "PT-MoE"]
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
    for name, row in zip(("pt", "ptmoe"), rows, strict=True):
        r = by[name]
        cfg = MethodConfig(**{k: v for k, v in r["method"].items()})
        assert r["trainable_params"] == r["formula_params"] == count_params(cfg, shape)
        assert row[1] == f"{r['trainable_params']:,}"
    assert "expert_usage" in res["plots"] and res["plots"]["expert_usage"].is_file()

    # recorded in the database, and a second invocation reuses the runs instead of training again
    with Storage(str(db)) as st:
        runs = st.list_runs(experiment="paper-comparison-quick")
        assert sorted(r.name for r in runs) == ["pt", "ptmoe"]
        assert all(r.status is RunStatus.FINISHED for r in runs)
        assert all(st.evaluations(r.id) for r in runs)
    again = q.run([*args[:-3], "--plots", "none", "--no-calibrate"])
    assert again["meta"]["trained"] == 0 and again["meta"]["cached"] == 2


def test_full_plan_holds_the_ablations_and_the_balance_loss_control():
    q = _load_bench()
    plan = q.build_plan(quick=False)
    assert len({s.name for s in plan}) == len(plan) == 15
    groups = [s.group for s in plan]
    assert groups.count("methods") == 5 and groups.count("routing") == 3 and groups.count("balance") == 1
    by = {s.name: s.method for s in plan}
    assert {k: v for k, v in by["ptmoe-balance"].items() if k != "balance_loss"} == by["ptmoe"]
    assert by["ptmoe-balance"]["balance_loss"] > 0 and "balance_loss" not in by["ptmoe"]
    assert [s.name for s in q.build_plan(quick=True)] == list(q.METHODS)
