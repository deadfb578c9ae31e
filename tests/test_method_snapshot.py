"""Every method resolves, counts, validates and shows on the Train form and in its model card exactly as
before the methods moved into ``ptmoe_core.methods`` (the values in ``tests/data/method_snapshot.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from method_snapshot import snapshot

EXPECTED = json.loads((Path(__file__).parent / "data" / "method_snapshot.json").read_text(encoding="utf-8"))
NOW = json.loads(json.dumps(snapshot()))  # tuples -> lists, as in the file


@pytest.mark.parametrize("part", sorted(EXPECTED))
def test_unchanged(part):
    assert NOW[part] == EXPECTED[part]


def test_covers_every_part():
    assert sorted(NOW) == sorted(EXPECTED)
