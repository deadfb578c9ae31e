"""Base-model loading: frozen parameters, device/dtype resolution, clear failures."""

from __future__ import annotations

import pytest
import torch

from ptmoe_core.config import ModelConfig
from ptmoe_core.errors import ModelLoadError
from ptmoe_core.models import load_base_model, resolve_dtype


def test_tiny_random_is_seeded_and_frozen(tiny_base):
    again = load_base_model(ModelConfig(name="tiny-random", device="cpu"))
    w1, w2 = tiny_base.model.model.layers[0].mlp.up_proj.weight, again.model.model.layers[0].mlp.up_proj.weight
    assert torch.equal(w1, w2)
    assert not any(p.requires_grad for p in again.model.parameters())
    assert tiny_base.hidden_size == 64 and tiny_base.tokenizer.chat_template


def test_dtype_defaults():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16


def test_offline_hub_model_fails_with_clear_message(monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # read at import time, so patch it too
    with pytest.raises(ModelLoadError, match="no-such-org/no-such-model.*(offline|unreachable)"):
        load_base_model(ModelConfig(name="no-such-org/no-such-model"))


def test_missing_local_dir_is_named(tmp_path):
    bad = tmp_path / "model"
    bad.mkdir()
    with pytest.raises(ModelLoadError, match="local path"):
        load_base_model(ModelConfig(name=str(bad)))


def test_cuda_requested_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        load_base_model(ModelConfig(name="tiny-random", device="cuda"))
