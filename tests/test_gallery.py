"""bench/gallery.py end to end on the tiny model (2 steps): four valid bundles that say how they were
made, written without importing the database or Gradio; its PT-MoE runs are the app's defaults and
the paper's settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ptmoe_core.bundle import SUFFIX, read_bundle

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("gradio", "sqlalchemy", "storage", "app")
CHECK = """
import runpy, sys
sys.argv = ["bench.gallery", *{args!r}]
try:
    runpy.run_module("bench.gallery", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r})
print("LOADED", loaded)
sys.exit(code or (3 if loaded else 0))
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gallery")
    args = ["--model", "tiny-random", "--steps", "2", "--eval-examples", "2", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", CHECK.format(args=args, forbidden=FORBIDDEN)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert "LOADED []" in p.stdout  # no database, no Gradio: it runs on a bare GPU machine
    return out


def test_one_command_writes_the_gallery(made):
    files = sorted(made.glob(f"*{SUFFIX}"))
    assert [f.name for f in files] == [f"{k}{SUFFIX}" for k in sorted(["ptmoe-studio", "ptmoe-routed", "pt", "lora"])]
    assert sum(f.stat().st_size for f in files) <= 2 * 1024 * 1024
    bundles = {b.provenance["gallery_key"]: b for b in map(read_bundle, files)}
    assert {k: b.method for k, b in bundles.items()} == {"ptmoe-studio": "ptmoe", "ptmoe-routed": "ptmoe",
                                                         "pt": "pt", "lora": "lora"}
    for b in bundles.values():
        prov = b.provenance
        assert prov["command"].startswith("python -m bench.gallery --model tiny-random --steps 2")
        assert prov["device"] == "cpu" and prov["date"][:2] == "20" and prov["run_overrides"]["method"]
        assert b.config["train"]["steps"] == 2 and b.config["data"]["train"] == ["builtin:all"]
        assert [e.step for e in b.evaluations] == [1, 2] and b.evaluations[-1].records
        assert b.floor is not None and b.floor.evaluation.records  # the frozen model, once, on the same sets
        assert b.metrics["loss"]["steps"] == [1, 2]
    assert len({b.floor.key for b in bundles.values()}) == 1
    routed = bundles["ptmoe-routed"].evaluations[-1].records[0]
    assert len(routed.probs) == 2 and bundles["pt"].evaluations[-1].records[0].probs is None
    readme = (made / "README.md").read_text()
    assert all(f"`{f.name}`" in readme for f in files) and "python -m bench.gallery" in readme


def test_the_two_ptmoe_runs_differ_only_by_their_preset(made):
    from ptmoe_core.presets import differences

    studio, routed = (json.loads(json.dumps(read_bundle(made / f"{k}{SUFFIX}").config["method"]))
                      for k in ("ptmoe-studio", "ptmoe-routed"))
    assert studio["preset"] == "studio" and routed["preset"] == "routed"
    diff = {k for k in studio if studio[k] != routed[k]} - {"preset"}
    assert diff and diff == set(differences("studio", "ptmoe", routed))


def test_the_studio_run_is_the_apps_default(tmp_path):
    """The gallery's "studio defaults" run trains what the Train tab launches by default (CPU, no demo),
    apart from the number of evaluation questions and the name."""
    from app import forms
    from app.testing import gallery_script

    g = gallery_script()
    app_cfg = forms.config_from_values(forms.default_values("smollm2-135m")).to_dict()
    run = next(r for r in g.RUNS if r.key == "ptmoe-studio")
    ours = g.run_config(run, "smollm2-135m", "auto", tmp_path).to_dict()
    assert ours["method"] == app_cfg["method"]
    # lr None and the resolved default are the same; evaluation batching changes no result.
    skip = {("data", "max_eval_examples"), ("train", "lr"), ("train", "eval_batch_size")}
    for part in ("data", "train", "model"):
        for k, v in app_cfg[part].items():
            if (part, k) not in skip:
                assert ours[part][k] == v, (part, k)


def test_bad_arguments_are_usage_errors():
    p = subprocess.run([sys.executable, "-m", "bench.gallery", "--only", "nope"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "unknown run key(s) ['nope']" in p.stderr
