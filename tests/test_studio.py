"""The studio service (app/studio.py) without a server or Gradio: launch, stop, inspect, compare and
bundles, on the tiny random model."""

from __future__ import annotations

import sys

import pytest

from app import forms
from app.main import close_context, create_context
from app.studio import Studio
from app.testing import tiny_settings


@pytest.fixture
def studio(tmp_path):
    ctx = create_context(tiny_settings(tmp_path), start_jobs=False)
    try:
        yield Studio(ctx)
    finally:
        close_context(ctx)


def tiny_values(**kw):
    v = forms.default_values("tiny-random")
    v.update(name="tiny-ptmoe", steps=2, batch_size=2, warmup_steps=0, eval_every=0, save_every=0, max_new_tokens=2,
             max_train_examples=16, max_eval_examples=2, max_source_tokens=64, max_answer_tokens=4,
             train_specs="builtin:arith", eval_specs="builtin:arith, builtin:qa")
    v.update(kw)
    return v


def test_the_studio_imports_no_gradio():
    import subprocess

    code = "import sys, app.studio; sys.exit('gradio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_launch_and_stop_have_one_path(studio):
    bad = studio.launch(tiny_values(steps=0))
    assert bad.run_id is None and "steps" in bad.checked.errors
    ok = studio.launch(tiny_values())
    assert ok.run_id is not None and not ok.checked.errors
    r = studio.storage.get_run(ok.run_id)
    assert str(r.status) == "QUEUED" and r.name == "tiny-ptmoe"
    info = studio.stop(ok.run_id)
    assert info.is_final or info.cancel_requested
