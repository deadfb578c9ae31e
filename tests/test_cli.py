"""The CLI as a user runs it: counts, training from a config file, generation, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptmoe_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_params_paper_count():
    r = cli("params", "--method", "ptmoe", "--hidden", "2048", "--prompt-len", "40", "--experts", "2", "--rank", "36")
    assert r.returncode == 0 and r.stdout.strip() == "80706"
    r = cli("params", "--method", "all")  # each method as the paper's comparison configures it
    rows = dict(line.split("\t") for line in r.stdout.strip().splitlines())
    assert rows == {"ptmoe": "80706", "pt": "81920", "dpt": "81432", "smop": "86016", "lora": "106496"}
    r = cli("params", "--method", "all", "--prompt-len", "20")  # a given T overrides; ranks at most T
    rows = dict(line.split("\t") for line in r.stdout.strip().splitlines())
    assert rows["pt"] == str(20 * 2048) and rows["dpt"] == str(20 * 20 + 20 * 2048) and rows["smop"] == "86016"


@pytest.mark.parametrize(
    "args,needle",
    [
        (("params", "--method", "ptmoe", "--rank", "50"), "rank R=50 must not exceed"),
        (("train", "--config", "missing.yaml"), "file not found"),
        (("generate", "--adapter", "/nonexistent", "--input", "hi"), "adapter directory not found"),
        (("data", "nosuchprefix:foo"), "nosuchprefix"),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(args, needle):
    r = cli(*args)
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:")]) == 1


def test_train_then_generate_on_tiny_random(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: {name: tiny-random}\n"
        "method: {method: ptmoe, prompt_len: 4, rank: 2, n_experts: 2}\n"
        "data: {train: ['builtin:arith?n=16&n_eval=4'], max_eval_examples: 2, max_source_tokens: 64}\n"
        "train: {steps: 3, batch_size: 2, warmup_steps: 0, max_new_tokens: 2}\n"
    )
    out = tmp_path / "run"
    r = cli("train", "--config", str(cfg), "--output-dir", str(out), "--set", "train.save_every=2")
    assert r.returncode == 0, r.stderr
    assert "finished at step 3" in r.stdout and (out / "adapter" / "ptmoe_config.json").is_file()
    assert (out / "adapter" / "README.md").is_file()  # the model card comes with the final adapter
    assert (out / "checkpoints" / "step-000002").is_dir()
    r = cli("generate", "--adapter", str(out / "adapter"), "--input", "What is 3 plus 4?", "--all-experts", "--json",
            "--max-new-tokens", "3")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert [row["expert"] for row in rows] == [0, 1] and all(len(row["probs"]) == 2 for row in rows)
