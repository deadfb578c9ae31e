"""The routing benchmark (python -m bench.routing) through the job layer on the tiny random model: its
plan as sweeps, each run a worker job recorded in the database, reused by a second invocation, and the
report written from the saved runs."""

from __future__ import annotations

import json

from bench.routing import run as routing


def test_tiny_plan_runs_through_the_job_layer_and_is_reused(tmp_path, capsys):
    from storage import Storage
    from storage.models import RunStatus

    db, js = tmp_path / "studio.db", tmp_path / "routing.json"
    args = ["--model", "tiny-random", "--mix", "builtin", "--variants", "paper,studio", "--seeds", "0",
            "--steps", "1", "--n-eval", "1", "--max-new-tokens", "2", "--eval-batch", "4", "--db", str(db),
            "--json", str(js), "--no-report"]
    assert routing.main(args) == 0
    out = json.loads(js.read_text())
    assert [(r["mix"], r["variant"], r["seed"]) for r in out["runs"]] == [("builtin", "paper", 0), ("builtin", "studio", 0)]
    assert {r["method"]["preset"] for r in out["runs"]} == {"paper", "studio"}
    assert all(0.0 <= r["mi_bits"] <= 1.0 and r["records"] for r in out["runs"]) and out["floor"]["builtin"]["per_set"]
    with Storage(str(db)) as st:
        runs = st.list_runs(experiment="routing")
        assert sorted(r.name for r in runs) == ["builtin-paper-s0", "builtin-studio-s0"]
        assert all(r.status is RunStatus.FINISHED and r.sweep_id is not None and r.pid is not None for r in runs)
        assert {r.id for r in runs} == {r["run_id"] for r in out["runs"]}
    capsys.readouterr()
    assert routing.main(args) == 0  # nothing trained again
    assert "2 runs, 2 cached" in capsys.readouterr().out
    with Storage(str(db)) as st:
        assert len(st.list_runs(experiment="routing")) == 2
    md = tmp_path / "routing.md"
    assert routing.main(["--report-from", str(js), "--out", str(md), "--no-plot"]) == 0
    text = md.read_text()
    assert text.startswith("# Does the router route?") and "| paper |" in text and "| studio |" in text
