"""A public Space is safe by default: demo mode, GPU or not, with a ceiling on every knob a visitor can
turn, lifted only by the owner's secret credentials; old uploads are deleted."""

from __future__ import annotations

import os
import time

import pytest

from app import data_sources as ds
from app import forms
from app.inspection import MAX_TYPED_CHARS, typed_examples
from app.settings import DEMO_LIMITS, SettingsError, from_args

SPACE = {"SPACE_ID": "me/studio"}


def test_a_space_is_in_demo_mode_even_with_a_gpu():
    for gpu in (False, True):
        s = from_args([], env=SPACE, gpu=gpu)
        assert s.demo and s.limits is DEMO_LIMITS and s.upload_ttl_h


def test_only_the_owners_secret_lifts_the_limits_on_a_space():
    s = from_args([], env={**SPACE, "PTMOE_AUTH": "owner:secret"}, gpu=True)
    assert not s.demo and s.limits is None and s.gradio_auth() == [("owner", "secret")]
    with pytest.raises(SettingsError, match="PTMOE_AUTH"):
        from_args([], env={**SPACE, "PTMOE_DEMO": "0"}, gpu=True)
    assert from_args(["--demo"], env={**SPACE, "PTMOE_AUTH": "o:s"}, gpu=True).demo
    assert not from_args([], env={}, gpu=False).demo and from_args([], env={"PTMOE_DEMO": "1"}, gpu=False).demo


def values(**change):
    return {**forms.default_values("tiny-random", demo=True), **change}


@pytest.mark.parametrize("change,key", [
    ({"steps": DEMO_LIMITS.steps + 1}, "steps"),
    ({"batch_size": DEMO_LIMITS.batch_size + 1}, "batch_size"),
    ({"grad_accum": DEMO_LIMITS.grad_accum + 1}, "grad_accum"),
    ({"max_new_tokens": DEMO_LIMITS.max_new_tokens + 1}, "max_new_tokens"),
    ({"max_source_tokens": DEMO_LIMITS.max_source_tokens + 1}, "max_source_tokens"),
    ({"max_answer_tokens": DEMO_LIMITS.max_answer_tokens + 1}, "max_answer_tokens"),
    ({"max_eval_examples": DEMO_LIMITS.max_eval_examples + 1}, "max_eval_examples"),
    ({"max_train_examples": None}, "max_train_examples"),
    ({"method": "lora", "lora_r": DEMO_LIMITS.lora_r + 1}, "lora_r"),
    ({"prompt_len": DEMO_LIMITS.prompt_len + 1, "rank": 4}, "prompt_len"),
    ({"n_experts": DEMO_LIMITS.n_experts + 1}, "n_experts"),
    ({"steps": 300, "batch_size": 8, "grad_accum": 4, "warmup_steps": 0}, "steps"),  # examples seen
    ({"steps": 200, "eval_every": 1}, "eval_every"),
    ({"steps": 200, "save_every": 1}, "save_every"),
    ({"model": "some/hub-model"}, "model"),
    ({"train_specs": "hf:rajpurkar/squad"}, "train_specs"),
    ({"eval_specs": "hf:openai/gsm8k:main"}, "eval_specs"),
    ({"train_specs": f"builtin:all?n={DEMO_LIMITS.builtin_n + 1}"}, "train_specs"),
    ({"train_specs": f"builtin:arith?n_eval={DEMO_LIMITS.builtin_n + 1}"}, "train_specs"),
])
def test_demo_limits_every_knob(change, key):
    cfg, errors = forms.check(values(**change), demo=True)
    assert cfg is None and key in errors and "demo mode" in errors[key], errors
    assert forms.check(values(**change))[0] is not None or key == "model", "only demo mode refuses it"


def test_demo_defaults_pass_the_demo_limits():
    assert forms.check(values(), demo=True) == (forms.check(values(), demo=True)[0], {})


def test_old_uploads_are_deleted_in_demo_mode(tmp_path):
    up = tmp_path / "uploads"
    up.mkdir()
    old, fresh = up / "old.jsonl", up / "fresh.jsonl"
    old.write_text("x")
    fresh.write_text("y")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    src = tmp_path / "new.jsonl"
    src.write_text('{"question": "q", "answer": "a"}\n')
    saved = ds.save_upload(src, up, max_mb=1, ttl_h=24)
    assert saved.is_file() and fresh.is_file() and not old.exists()
    os.utime(fresh, (day_ago, day_ago))
    ds.save_upload(src, up, max_mb=1)  # no ttl outside demo mode: nothing deleted
    assert fresh.exists()


def test_previews_read_no_more_than_the_upload_limit(tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_text('{"question": "q", "answer": "a"}\n' * 100_000)  # 3.3 MB
    rows, note = ds.preview_rows([f"jsonl:{big.name}"], 2, tmp_path, max_bytes=1024 * 1024)
    assert len(rows) == 2 and "seeded shuffle" in note
    with pytest.raises(Exception, match="over the 1.0 MB limit"):
        ds.preview_rows([f"jsonl:{big.name}?split=train"], 2, tmp_path, max_bytes=1024 * 1024)


def test_typed_inspect_input_is_bounded_before_any_work():
    with pytest.raises(ValueError, match="at most 20,000"):
        typed_examples("What is 2 plus 2? " * 2000)
    with pytest.raises(ValueError, match="passage"):
        typed_examples("q", context="x" * (MAX_TYPED_CHARS + 1))
    assert len(typed_examples("a\nb => 2")) == 2


def test_demo_mode_queues_only_a_few_runs(tmp_path):
    from app.queries import queue_full
    from storage import Storage

    with Storage(str(tmp_path / "studio.db"), runs_dir=tmp_path / "runs") as st:
        cfg = forms.config_from_values(values())
        for _ in range(DEMO_LIMITS.queued_runs - 1):
            st.submit(cfg)
        assert queue_full(st, DEMO_LIMITS) is None and queue_full(st, None) is None
        st.submit(cfg)
        assert "already waiting" in queue_full(st, DEMO_LIMITS)
        assert queue_full(st, None) is None
