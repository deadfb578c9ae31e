"""Adapter files: save -> load is exact; corrupt or mismatched adapters are refused clearly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ptmoe_core.adapter import CONFIG_NAME, WEIGHTS_NAME, build_adapter, load_adapter, save_adapter
from ptmoe_core.config import MethodConfig
from ptmoe_core.errors import AdapterError
from ptmoe_core.methods import NAMES
from tests.test_methods import batch, small


@pytest.mark.parametrize("method", NAMES)
def test_save_load_gives_identical_outputs(tiny_base, tmp_path, method):
    a = build_adapter(tiny_base, small(method), init_text="Answer.", seed=1)
    with torch.no_grad():  # move away from the init so a fresh adapter would differ
        for p in a.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    a.eval()
    save_adapter(a, tmp_path / "ad")
    cfg = json.loads((tmp_path / "ad" / CONFIG_NAME).read_text())
    assert cfg["method"]["method"] == method and cfg["base_model"]["hidden_size"] == 64
    assert cfg["trainable_params"] == a.num_trainable() and cfg["format_version"] == 2
    b = load_adapter(tmp_path / "ad", base=tiny_base)
    bt = batch()
    with torch.no_grad():
        o1, r1 = a(bt)
        o2, r2 = b(bt)
    assert torch.equal(o1.logits, o2.logits)
    if r1 is not None:
        assert torch.equal(r1.probs, r2.probs)


@pytest.fixture
def saved(tiny_base, tmp_path):
    a = build_adapter(tiny_base, small("ptmoe"))
    return save_adapter(a, tmp_path / "ad")


def test_missing_directory(tiny_base, tmp_path):
    with pytest.raises(AdapterError, match="not found"):
        load_adapter(tmp_path / "nope", base=tiny_base)


def test_corrupt_config(tiny_base, saved):
    (saved / CONFIG_NAME).write_text("{not json")
    with pytest.raises(AdapterError, match="corrupt"):
        load_adapter(saved, base=tiny_base)


def test_corrupt_weights(tiny_base, saved):
    (saved / WEIGHTS_NAME).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(AdapterError, match="corrupt or not a safetensors"):
        load_adapter(saved, base=tiny_base)


def test_wrong_tensor_shape(tiny_base, saved):
    sd = load_file(str(saved / WEIGHTS_NAME))
    sd["B"] = torch.zeros(3, 3)
    save_file(sd, str(saved / WEIGHTS_NAME))
    with pytest.raises(AdapterError, match="shape"):
        load_adapter(saved, base=tiny_base)


def test_nan_weights_refused(tiny_base, saved):
    sd = load_file(str(saved / WEIGHTS_NAME))
    sd["A"][0, 0, 0] = float("nan")
    save_file(sd, str(saved / WEIGHTS_NAME))
    with pytest.raises(AdapterError, match="NaN"):
        load_adapter(saved, base=tiny_base)


def test_other_base_model_refused(tiny_base, saved):
    other = dataclasses.replace(tiny_base, hidden_size=128, name="other")
    with pytest.raises(AdapterError, match="hidden size"):
        load_adapter(saved, base=other)
    renamed = dataclasses.replace(tiny_base, name="some/other-model")
    with pytest.raises(AdapterError, match="trained on 'tiny-random'"):
        load_adapter(saved, base=renamed)


def test_invalid_method_settings_refused(tiny_base, saved):
    cfg = json.loads((saved / CONFIG_NAME).read_text())
    cfg["method"]["rank"] = 999
    (saved / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match="rank"):
        load_adapter(saved, base=tiny_base)


def test_lora_leaves_shared_base_untouched(tiny_base):
    before = {n for n, _ in tiny_base.model.named_modules()}
    build_adapter(tiny_base, MethodConfig(method="lora"))
    assert {n for n, _ in tiny_base.model.named_modules()} == before
