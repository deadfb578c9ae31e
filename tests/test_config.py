"""RunConfig: round trips, coercion of UI/YAML values, clear errors naming the field."""

from __future__ import annotations

import json

import pytest

from ptmoe_core.config import RunConfig
from ptmoe_core.errors import ConfigError


def test_dict_round_trip_and_defaults():
    cfg = RunConfig()
    assert cfg.method.method == "ptmoe" and (cfg.method.prompt_len, cfg.method.n_experts, cfg.method.rank) == (40, 2, 36)
    assert cfg.method.top_k == 1 and cfg.method.probationary
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_yaml_and_json_files(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("name: x\nmethod:\n  method: smop\n  n_experts: 4\ntrain:\n  steps: '50'\n  lr: 1e-3\n")
    cfg = RunConfig.from_file(y).validate()
    assert cfg.method.n_experts == 4 and cfg.train.steps == 50 and cfg.train.lr == pytest.approx(1e-3)
    j = tmp_path / "c.json"
    j.write_text(cfg.to_json())
    assert RunConfig.from_file(j) == cfg


@pytest.mark.parametrize(
    "d,field",
    [
        ({"method": {"rnak": 3}}, "method"),
        ({"train": {"steps": "ten"}}, "train.steps"),
        ({"train": {"steps": 2.5}}, "train.steps"),
        ({"method": {"probationary": "maybe"}}, "method.probationary"),
        ({"train": "fast"}, "train"),
    ],
)
def test_bad_values_name_the_field(d, field):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(d)
    assert e.value.field == field


@pytest.mark.parametrize(
    "d,field",
    [
        ({"train": {"warmup_steps": 500, "steps": 100}}, "train.warmup_steps"),
        ({"train": {"lr": -1}}, "train.lr"),
        ({"train": {"batch_size": 0}}, "train.batch_size"),
        ({"data": {"train": []}}, "data.train"),
        ({"data": {"train": ["squad.json"]}}, "data"),
        ({"model": {"device": "tpu"}}, "model.device"),
    ],
)
def test_impossible_settings_fail_validation(d, field):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(d).validate()
    assert e.value.field == field


def test_malformed_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("method: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.from_file(p)
    with pytest.raises(ConfigError, match="not found"):
        RunConfig.from_file(tmp_path / "missing.json")


def test_lr_default_depends_on_method():
    cfg = RunConfig()
    assert cfg.train.resolved_lr("ptmoe") == pytest.approx(1e-2)
    assert cfg.train.resolved_lr("lora") == pytest.approx(2e-3)


# ---- dotted overrides: the CLI's --set, a copied or continued run's changes --------------------------


def test_overrides_set_nested_keys_on_a_copy():
    from ptmoe_core.config import apply_overrides

    d = {"train": {"steps": 10}, "method": {"method": "ptmoe"}}
    out = apply_overrides(d, ["train.steps=50", "method.lora_targets=[\"q_proj\"]", "model.name=tiny-random",
                              "method.probationary=false", "data.eval=[]", "name=a=b", "train={\"lr\": 0.5}"])
    assert out == {"train": {"lr": 0.5}, "method": {"method": "ptmoe", "lora_targets": ["q_proj"],
                                                    "probationary": False},
                   "model": {"name": "tiny-random"}, "data": {"eval": []}, "name": "a=b"}
    assert d == {"train": {"steps": 10}, "method": {"method": "ptmoe"}}  # the caller's dict is left as it was
    cfg = RunConfig.from_overrides(d, ["train.steps=70", "method.n_experts=3"])
    assert cfg.train.steps == 70 and cfg.method.n_experts == 3


@pytest.mark.parametrize("item, message", [
    ("train.stepz=5", r"^train\.stepz: unknown configuration key; did you mean train\.steps"),
    ("nope=1", r"^nope: unknown configuration key \(keys look like"),
    ("train.steps", r"^--set: expected KEY=VALUE, got 'train\.steps'"),
    ("train.steps.x=1", r"^train\.steps\.x: unknown configuration key; did you mean train\.steps"),
    ("train.steps=abc", r"^train\.steps: expected an integer, got 'abc'"),
    ("method.probationary=maybe", r"^method\.probationary: expected true/false, got 'maybe'"),
    ("train.lr=NaN", r"^train\.lr: expected a finite number"),
    ("train.steps=0", r"^train\.steps"),
])
def test_overrides_refuse_unknown_keys_and_bad_values_in_one_line(item, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_overrides({}, [item])


def test_a_value_where_a_section_belongs_is_refused():
    from ptmoe_core.config import apply_overrides

    with pytest.raises(ConfigError, match=r"^train: expected a mapping, got 5"):
        apply_overrides({"train": 5}, ["train.steps=2"])
