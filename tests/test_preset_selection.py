"""Choosing a method preset: config files (YAML / JSON) round-trip with their preset, the CLI's
``--preset`` overrides the file's, and the Train form fills, records and shows the preset."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import asdict
from html import unescape
from pathlib import Path

import pytest
import yaml

from app import forms
from app.config_view import config_html
from ptmoe_core.cli import build_parser, preset_note, train_config
from ptmoe_core.config import MethodConfig, RunConfig
from ptmoe_core.errors import ConfigError
from ptmoe_core.presets import PRESETS, preset_values

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ptmoe_builtin.yaml"


def _write(path: Path, d: dict) -> Path:
    path.write_text(yaml.safe_dump(d) if path.suffix == ".yaml" else json.dumps(d), encoding="utf-8")
    return path


def _method_values(cfg: RunConfig) -> dict:
    return {k: getattr(cfg.method, k) for k in preset_values(cfg.method.preset, cfg.method.method)}


# ---------------------------------------------------------------------------------------------
# config files


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("method", ["ptmoe", "smop", "pt", "lora"])
def test_presets_round_trip_through_config_files(tmp_path, suffix, preset, method):
    f = _write(tmp_path / f"c{suffix}", {"name": "x", "method": {"method": method, "preset": preset, "mi_loss": 0.5}})
    cfg = RunConfig.from_file(f)
    assert cfg.method.preset == preset
    assert _method_values(cfg) == {**preset_values(preset, method), "mi_loss": 0.5}  # explicit key over preset
    again = RunConfig.from_file(_write(tmp_path / f"again{suffix}", cfg.to_dict()))  # every value now explicit
    assert again == cfg and RunConfig.from_dict(cfg.to_dict()) == cfg


def test_the_example_config_takes_its_method_choices_from_the_studio_preset():
    cfg = RunConfig.from_file(EXAMPLE)
    assert cfg.method.preset == "studio" and forms.preset_differences(cfg) == {}
    assert "balance_loss" not in yaml.safe_load(EXAMPLE.read_text())["method"]


# ---------------------------------------------------------------------------------------------
# CLI


def _train_args(*argv: str):
    return build_parser().parse_args(["train", *argv])


def test_cli_preset_overrides_the_files_preset_and_fills_what_it_leaves_out(tmp_path):
    f = _write(tmp_path / "c.yaml", {"method": {"method": "ptmoe", "preset": "studio", "balance_loss": 0.2}})
    paper = train_config(_train_args("--config", str(f), "--preset", "paper"))
    assert paper.method.preset == "paper"
    assert _method_values(paper) == {**preset_values("paper", "ptmoe"), "balance_loss": 0.2}
    assert preset_note(paper) == "method preset: paper; set otherwise: balance_loss=0.2 (preset 0.0)"
    studio = train_config(_train_args("--config", str(f)))
    assert _method_values(studio) == {**preset_values("studio", "ptmoe"), "balance_loss": 0.2}
    # --preset wins over --set method.preset; without a file the preset fills everything
    both = train_config(_train_args("--set", "method.preset=studio", "--preset", "paper"))
    assert both.method == MethodConfig.for_preset("ptmoe", "paper")
    assert preset_note(both) == "method preset: paper"
    assert train_config(_train_args("--set", "method.method=smop")).method == MethodConfig.for_preset("smop")


def test_cli_preset_errors_are_one_line(tmp_path):
    f = _write(tmp_path / "c.yaml", {"method": "ptmoe"})
    with pytest.raises(ConfigError, match="method: expected a mapping"):
        train_config(_train_args("--config", str(f), "--preset", "paper"))
    r = subprocess.run([sys.executable, "-m", "ptmoe_core", "train", "--preset", "fancy"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "invalid choice: 'fancy'" in r.stderr and "Traceback" not in r.stderr


def test_cli_help_and_params_mention_the_preset():
    helps = {}
    for cmd in ("train", "params"):
        r = subprocess.run([sys.executable, "-m", "ptmoe_core", cmd, "--help"], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        helps[cmd] = " ".join(r.stdout.split())
    assert "--preset {studio,paper,routed}" in helps["train"] and "exactly as the paper describes it" in helps["train"]
    assert "--preset {studio,paper,routed}" in helps["params"]
    counts = [subprocess.run([sys.executable, "-m", "ptmoe_core", "params", "--method", "ptmoe", "--preset", p],
                             cwd=ROOT, capture_output=True, text=True, timeout=120).stdout for p in PRESETS]
    assert counts[0] == counts[1] == "80706\n"


def test_cli_train_with_preset_paper_records_the_papers_values(tmp_path):
    cfg = _write(tmp_path / "c.yaml", {
        "model": {"name": "tiny-random"},
        "method": {"method": "ptmoe", "prompt_len": 4, "rank": 2, "n_experts": 2},
        "data": {"train": ["builtin:arith?n=8&n_eval=2"], "max_eval_examples": 1, "max_source_tokens": 64},
        "train": {"steps": 1, "batch_size": 2, "warmup_steps": 0, "max_new_tokens": 1},
    })
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "ptmoe_core", "train", "--config", str(cfg), "--preset", "paper",
                        "--output-dir", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "method preset: paper" in r.stdout
    stored = RunConfig.from_dict(json.loads((out / "run_config.json").read_text()))
    assert stored.method.preset == "paper" and _method_values(stored) == preset_values("paper", "ptmoe")


# ---------------------------------------------------------------------------------------------
# the Train form


def test_form_defaults_are_the_studio_preset_without_overrides():
    v = forms.default_values("tiny-random")
    cfg = forms.config_from_values(v)
    assert v["preset"] == "studio" and forms.preset_differences(cfg) == {}
    assert _method_values(cfg) == preset_values("studio", "ptmoe")
    assert forms.preset_summary(cfg) == "Preset **studio**, unchanged."


@pytest.mark.parametrize("method", ["ptmoe", "smop", "dpt"])
def test_choosing_a_preset_fills_the_form_and_the_cli_command_reproduces_it(method):
    v = forms.default_values("tiny-random")
    v.update(method=method, preset="paper", **forms.preset_fill("paper", method))
    cfg = forms.config_from_values(v)
    cfg.validate()
    assert cfg.method.preset == "paper" and _method_values(cfg) == preset_values("paper", method)
    cmd = forms.cli_command(cfg)
    assert "--preset paper" in cmd and "method.init" not in cmd and "router_lr_mult" not in cmd
    argv = shlex.split(cmd.replace("\\\n", " "))[3:]  # after "python -m ptmoe_core"
    assert train_config(build_parser().parse_args(argv)) == cfg
    # back to studio: the preset's own values again, nothing recorded as changed
    v.update(preset="studio", **forms.preset_fill("studio", method))
    back = forms.config_from_values(v)
    assert forms.preset_differences(back) == {} and "--preset" not in forms.cli_command(back)


def test_a_changed_field_is_shown_as_differing_from_the_preset():
    v = forms.default_values("tiny-random")
    v.update(router_lr_mult=3, mi_loss=0.25)
    cfg = forms.config_from_values(v)
    assert set(forms.preset_differences(cfg)) == {"router_lr_mult", "mi_loss"}
    text = forms.preset_summary(cfg)
    assert text.startswith("Preset **studio**; differs from it:") and "mi_loss `0.25` (preset `0.0`)" in text
    assert "--set method.mi_loss=0.25" in forms.cli_command(cfg)
    html = config_html({**cfg.to_dict(), "name": "<b>mine</b>"})
    assert "Method preset <b>studio</b>" in html and "2 method fields differ" in html
    assert "● method.mi_loss</td><td>0.25</td><td>0.0</td>" in unescape(html)
    assert "&lt;b&gt;mine&lt;/b&gt;" in html and "<b>mine</b>" not in html
    # a row per resolved value, except the preset (in the heading), plus the table's header row
    assert html.count("<tr") == len(forms.flatten(cfg.to_dict())) - 1 + 1


def test_router_aid_fields_are_on_the_form_for_routed_methods_only():
    for key in forms.ROUTER_AIDS:
        assert key in forms.KEYS and "Not in the paper" in forms.HELP[key]
        assert key in forms.METHOD_FIELDS["ptmoe"] and key not in forms.METHOD_FIELDS["pt"]
    # Every value a preset sets is on the form, but the router bias (a structural choice the preset
    # decides: only SMoP's authors drop it).
    assert set(forms.preset_fill("studio", "ptmoe")) == {forms.BY_PATH[f"method.{k}"].key
                                                          for k in preset_values("studio", "ptmoe") if k != "router_bias"}


def test_a_stored_config_from_before_presets_shows_the_papers_values():
    old = RunConfig().to_dict()
    old["method"] = {k: v for k, v in asdict(MethodConfig.for_preset("ptmoe", "paper")).items()
                     if k not in ("preset", "noise_type", "router_lr_mult", "router_norm", "bias_balance", "mi_loss")}
    html = config_html(old)
    assert "Method preset <b>paper</b>" in html and "every method field as the preset sets it" in html
    assert "cannot be read" in config_html({"method": {"rank": "many"}})
