"""The method registry (``ptmoe_core.methods``): every method is described once, completely, and every
list the studio shows or checks comes from it."""

from __future__ import annotations

from dataclasses import fields

import pytest

from app import forms
from ptmoe_core import methods
from ptmoe_core.config import MethodConfig
from ptmoe_core.errors import ConfigError
from ptmoe_core.methods import METHODS, OPTIONS, method_spec, routing
from ptmoe_core.params import LLAMA_32_1B
from ptmoe_core.presets import PRESETS, paper_method
from ptmoe_core.prompts import MODULES, SoftPromptMethod

SETTINGS = {f.name for f in fields(MethodConfig)} - {"method", "preset"}


def test_lookup_names_the_unknown_method():
    with pytest.raises(ConfigError) as e:
        method_spec("moe")
    assert e.value.field == "method.method" and "'moe'" in str(e.value) and "ptmoe" in str(e.value)
    with pytest.raises(ConfigError, match="'moe' is not one of"):
        MethodConfig(method="moe").validate()


def test_every_setting_is_described_once():
    # A MethodConfig field without an Option would have no help, no rule and no place on the form.
    assert set(OPTIONS) == SETTINGS
    for spec in METHODS.values():
        names = [o.name for o in spec.options]
        assert len(names) == len(set(names)), spec.name
        assert set(names) <= SETTINGS
    assert all(o.help.strip() for o in OPTIONS.values())


@pytest.mark.parametrize("name", list(METHODS))
def test_spec_is_consistent(name):
    spec = METHODS[name]
    assert spec.name == name and spec.label and spec.title and spec.description
    used = {o.name for o in spec.options}
    assert set(spec.paper_shape) <= used  # the paper's shape sets only the method's own settings
    assert set(spec.presets) <= set(PRESETS)
    assert all(set(v) <= SETTINGS for v in spec.presets.values())
    if spec.peft is not None:
        assert {ours for ours, _ in spec.peft.agree} <= used
    if spec.is_prompt:
        assert issubclass(MODULES[spec.module], SoftPromptMethod)
        assert MODULES[spec.module].routed == spec.routed
    assert spec.routed == set(routing.OPTIONS).issubset(spec.options)
    # The formula counts the paper's configuration without error and the config validates.
    cfg = MethodConfig.from_dict(paper_method(name))
    cfg.validate()
    assert spec.count(cfg, LLAMA_32_1B) > 0


def test_form_takes_its_lists_from_the_registry():
    assert [m for _, m in forms.method_choices()] == list(METHODS)
    for name, spec in METHODS.items():
        assert forms.METHOD_FIELDS[name] == spec.form_fields
        assert forms.METHOD_LABELS[name] == spec.label
    form_options = {o.name for o in methods.FORM_OPTIONS}
    assert form_options == {o.name for o in OPTIONS.values() if o.kind is not None}
    assert form_options <= set(forms.KEYS)
    for key in form_options:
        assert forms.HELP[key] == OPTIONS[key].help
        assert forms.BY_PATH[f"method.{key}"].kind == OPTIONS[key].kind
    # The Advanced routing section is laid out from the registry: every option there has a label.
    assert forms.ROUTER_AIDS == tuple(o.name for o in routing.ADVANCED)
    assert all(o.label and o.kind for o in routing.ADVANCED)


def test_router_option_rules_come_from_their_declaration():
    for o in routing.OPTIONS:
        if o.check is None:
            continue
        bad = -1.0 if o.kind == "float" else "nonsense"
        with pytest.raises(ConfigError) as e:
            MethodConfig.for_preset("ptmoe", **{o.name: bad}).validate()
        assert e.value.field == f"method.{o.name}"
        MethodConfig.for_preset("pt", **{o.name: bad}).validate()  # a method without a router ignores them
