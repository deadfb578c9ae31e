"""Shared fixtures: a tiny random Llama for unit tests, the real SmolLM2 for integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_base():
    from ptmoe_core.config import ModelConfig
    from ptmoe_core.models import load_base_model

    return load_base_model(ModelConfig(name="tiny-random", device="cpu"))


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
