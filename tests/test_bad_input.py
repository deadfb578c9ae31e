"""Bad input through the CLI and the config loader: one ``error:`` line, exit status 2, no traceback,
no silent default; every float option refuses NaN and infinity; sizes are bounded before the work."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from ptmoe_core.cli import main
from ptmoe_core.config import MAX_STEPS, RunConfig
from ptmoe_core.errors import ConfigError
from ptmoe_core.methods.lora import MAX_LORA_R

TINY = "model: {name: tiny-random, device: cpu}\ndata: {train: ['builtin:arith?n=8&n_eval=2'], max_eval_examples: 1}\n"


def run_cli(capsys, *args: str) -> str:
    """The error line of a CLI call that must fail cleanly."""
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def no_training(monkeypatch):
    """A config that should be refused must never reach the trainer (on a build that accepts it, the
    test fails at once instead of training the defaults, or 1e300 steps)."""
    import ptmoe_core.trainer

    def refuse(*args, **kwargs):
        raise AssertionError("the bad configuration was accepted and training started")

    monkeypatch.setattr(ptmoe_core.trainer, "train", refuse)


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("body,needle", [
    ("", "is empty"),
    ("# only a comment\n", "is empty"),
    ("train: {steps: 1e400}\n", "train.steps: expected a finite integer"),
    ("train: {steps: 1e300}\n", "train.steps"),
    (f"train: {{steps: {MAX_STEPS + 1}}}\n", "too large"),
    ("method: {method: lora, lora_r: 100000000}\n", "method.lora_r"),
    ("method: {noise_std: .nan}\n", "method.noise_std: expected a finite number"),
    ("method: {method: lora, lora_alpha: .inf}\n", "method.lora_alpha"),
    ("method: {expert_perturb: .nan}\n", "method.expert_perturb"),
    ("train: {max_grad_norm: .nan}\n", "train.max_grad_norm"),
    ("train: {weight_decay: .inf}\n", "train.weight_decay"),
    ("model: [a, b\ntrain: {steps: 3}\n", "line 2"),
    ("a: &x [1, 2]\nb: *x\n", "aliases"),
])
def test_train_config_errors_are_one_line(tmp_path, capsys, no_training, body, needle):
    line = run_cli(capsys, "train", "--config", write(tmp_path / "c.yaml", body))
    assert needle in line, line


def test_a_folder_given_as_config_says_it_is_a_folder(tmp_path, capsys, no_training):
    assert "is a folder" in run_cli(capsys, "train", "--config", str(tmp_path))


def test_nan_through_set_is_refused(capsys, tmp_path, no_training):
    line = run_cli(capsys, "train", "--config", write(tmp_path / "c.yaml", TINY), "--set", "method.noise_std=NaN")
    assert "method.noise_std" in line


def test_an_unknown_key_through_set_names_the_closest(capsys, tmp_path, no_training):
    line = run_cli(capsys, "train", "--config", write(tmp_path / "c.yaml", TINY), "--set", "train.stepz=5")
    assert line.startswith("error: train.stepz: unknown configuration key; did you mean train.steps, ")


def test_yaml_alias_bomb_is_refused_before_expansion(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 12)]  # 9**12 leaves
    with pytest.raises(ConfigError, match="aliases"):
        RunConfig.from_file(write(tmp_path / "bomb.yaml", "\n".join(levels) + "\n"))


def test_every_float_option_refuses_nan_and_infinity():
    floats = []
    for section in ("model", "method", "data", "train"):
        sub = getattr(RunConfig(), section)
        floats += [(section, f.name) for f in dataclasses.fields(sub)
                   if isinstance(getattr(sub, f.name), float) or "float" in str(f.type)]
    assert ("method", "noise_std") in floats and ("train", "lr") in floats
    for section, name in floats:
        for bad in (math.nan, math.inf, -math.inf):
            cfg = RunConfig()
            setattr(getattr(cfg, section), name, bad)
            with pytest.raises(ConfigError) as e:
                cfg.validate()
            assert e.value.field == f"{section}.{name}", (section, name, bad)
            with pytest.raises(ConfigError):
                RunConfig.from_dict({section: {name: bad}})


def test_lora_rank_is_checked_against_the_model_before_allocation(tmp_path, capsys):
    cfg = write(tmp_path / "c.yaml", TINY + f"method: {{method: lora, lora_r: {MAX_LORA_R}}}\n"
                                           "train: {steps: 1, batch_size: 1, warmup_steps: 0}\n")
    line = run_cli(capsys, "train", "--config", cfg, "--output-dir", str(tmp_path / "out"))
    assert "method.lora_r" in line and "exceeds the full rank" in line


def test_malformed_data_files_give_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"question": "q", "answer": ' + "[" * 200_000 + "]" * 200_000 + "}\n")
    assert "nested too deeply" in run_cli(capsys, "data", f"jsonl:{deep}")
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"version": "v2.0", "data": [{"paragraphs": [{"context": "It costs 12 euros.", "qas": [
        {"id": "a", "question": "How much?", "answers": [{"text": 12, "answer_start": 9}]}]}]}]}))
    assert main(["data", f"squad:{squad}?split=all", "--show", "1"]) == 0, capsys.readouterr().err
    assert "12" in capsys.readouterr().out
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text(json.dumps({"question": None, "answer": "so #### 4"}) + "\n")
    assert "question is null" in run_cli(capsys, "data", f"gsm8k:{gsm}")
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"question": None, "answer": "4"}) + "\n")
    assert "question is null" in run_cli(capsys, "data", f"jsonl:{plain}")


@pytest.mark.parametrize("config,needle", [
    ({"format_version": "2", "method": {}, "base_model": {"name": "tiny-random"}}, "format_version"),
    ({"method": ["ptmoe"], "base_model": {"name": "tiny-random"}}, "'method' is a list"),
    ({"method": {"method": "lora", "lora_targets": 5}, "base_model": {"name": "tiny-random"}}, "lora_targets"),
    ({"method": {}, "base_model": "tiny-random"}, "'base_model' is a str"),
    ({"method": {}, "base_model": {"name": "tiny-random"}, "meta": {"seed": "x"}}, "meta.seed"),
])
def test_malformed_adapter_config_gives_one_line(tmp_path, capsys, config, needle):
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    assert needle in run_cli(capsys, "generate", "--adapter", str(tmp_path), "--input", "hi")
