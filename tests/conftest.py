"""Shared fixtures: a tiny random Llama for unit tests, the real SmolLM2 for integration tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# bench/gpu_check.py runs the unit tests on a GPU with PTMOE_TEST_DEVICE=cuda; CI never does.
TEST_DEVICE = os.environ.get("PTMOE_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def tiny_base():
    from ptmoe_core.config import ModelConfig
    from ptmoe_core.models import load_base_model

    return load_base_model(ModelConfig(name="tiny-random", device=TEST_DEVICE, dtype="float32"))


@pytest.fixture(scope="session")
def smol_base():
    from ptmoe_core.config import ModelConfig
    from ptmoe_core.models import load_base_model

    return load_base_model(ModelConfig(name="smollm2-135m", device="cpu"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared reference data not found at {SHARED_DATA}")
    return SHARED_DATA
