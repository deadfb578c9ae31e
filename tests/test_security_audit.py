"""The audit's classes (issue 19): each test fails if its promise in docs/SECURITY.md breaks."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.testing import running_app


@pytest.fixture(scope="module")
def demo_srv(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("audit"), demo=True) as s:
        yield s


@pytest.fixture(scope="module")
def client(demo_srv):
    return Client(demo_srv.url, verbose=False)


def raw_call(url: str, api: str, *args) -> tuple[str, str]:
    """One event through Gradio's HTTP API with the arguments exactly as given (no client uploading
    them first): (last SSE event name, its data)."""
    base = url.rstrip("/") + "/gradio_api/call" + api
    r = httpx.post(base, json={"data": list(args)}, timeout=30)
    r.raise_for_status()
    event = data = ""
    with httpx.stream("GET", f"{base}/{r.json()['event_id']}", timeout=60) as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = line.split(":", 1)[1].strip()
                if event in ("complete", "error"):
                    break
    return event, data


def forged(path: Path) -> dict:
    """A FileData naming a server path, as a hand-written API request can send it."""
    return {"path": str(path), "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def test_file_arguments_must_be_genuine_uploads(client, demo_srv, tmp_path_factory):
    """Every file argument of every endpoint: a server path is refused, an upload is accepted."""
    outside = tmp_path_factory.mktemp("server-files")
    rows = outside / "secret.jsonl"
    rows.write_text('{"question": "the secret question", "answer": "42"}\n')
    cfg = outside / "secret.json"
    cfg.write_text(json.dumps({"name": "secret-config-name"}))
    bundle = outside / "secret.ptmoe.zip"
    bundle.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    filters = ("any", "any", "", "", [], True)
    for api, args in (("/upload_data", (forged(rows), "jsonl")), ("/load_config", (forged(cfg),)),
                      ("/import_bundle", (forged(bundle), *filters))):
        event, data = raw_call(demo_srv.url, api, *args)
        assert event == "error", (api, data)
        assert "secret question" not in data and "secret-config-name" not in data, api
    assert not list((demo_srv.ctx.studio.data_dir / "uploads").glob("*secret*"))
    # a genuine upload of the same file still works
    spec, _, msg = client.predict(handle_file(str(rows)), "jsonl", api_name="/upload_data")
    assert spec.startswith("jsonl:uploads/") and "data folder" in msg


def int_fields(cfg, prefix=""):
    """(dotted name, owner, field) of every integer field of the config dataclasses, walked generically."""
    import dataclasses

    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from int_fields(value, name + ".")
        elif "int" in str(f.type) and not isinstance(value, bool):
            yield name, cfg, f.name


def test_every_integer_of_a_config_is_bounded_to_64_bits():
    from ptmoe_core.config import RunConfig
    from ptmoe_core.errors import ConfigError

    names = [n for n, _, _ in int_fields(RunConfig())]
    assert {"train.seed", "train.steps", "data.seed", "method.n_experts"} <= set(names)
    for name in names:
        for bad in (2**64, -(2**63) - 1, 10**5000):
            cfg = RunConfig()
            _, owner, attr = next(x for x in int_fields(cfg) if x[0] == name)
            setattr(owner, attr, bad)
            with pytest.raises(ConfigError) as e:
                cfg.validate()
            assert e.value.field == name and "64-bit" in str(e.value) and len(str(e.value)) < 200, name


def test_a_huge_integer_in_the_form_gets_a_message(client):
    from app import forms
    from ptmoe_core.config import RunConfig

    values = forms.values_from_config(RunConfig())
    values.update(seed=2**70, model="tiny-random")
    out = client.predict(*forms.values_list(values), api_name="/check_config")
    seed = out[forms.KEYS.index("seed")]
    assert "64-bit" in str(seed)


def test_stored_specs_are_confined_like_typed_ones(tmp_path):
    """A run's stored config (an imported bundle's, any run's) naming a file outside the data folder:
    Inspect's "draw from the run's evaluation sets" and the frozen-model floor refuse it before
    reading, and quote nothing of it."""
    from app import floors
    from app.inspect_tab import MODES
    from tests.jobs_fixtures import config

    secret = tmp_path / "outside" / "secret.jsonl"
    secret.parent.mkdir()
    secret.write_text('{"question": "the secret question", "answer": "hunter2"}\n' * 4)
    with running_app(tmp_path / "studio") as srv:
        srv.ctx.queue.stop()  # the run stays as stored: no job reads it
        rid = srv.ctx.storage.submit({**config("stored"), "data": {"train": ["builtin:arith"],
                                                                    "eval": [f"jsonl:{secret}"]}})
        c = Client(srv.url, verbose=False)
        with pytest.raises(AppError) as e:
            c.predict(rid, "final", MODES[1], "", "", "text", "all evaluation sets", 2, 0, None, False, None, 4,
                      False, api_name="/inspect")
        assert "outside the data folder" in str(e.value) and "hunter2" not in str(e.value)
        with pytest.raises(ValueError, match="outside the data folder") as e:
            floors.floor_of(srv.ctx.studio, srv.ctx.storage.get_run(rid))
        assert "secret question" not in str(e.value)


def test_decoding_bombs_stop_at_the_limit_while_decoding(tmp_path, monkeypatch):
    """A gzip JSONL whose one line unzips to 40 MB and a Parquet file whose one string decodes to 40 MB,
    against a 1 MB limit: refused while decoding, never holding the whole value (``bench/decode_bombs.py``
    measures the peak RSS of the full 300 MB versions)."""
    import gzip
    import tracemalloc

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ptmoe_core.data import load_spec, preview
    from ptmoe_core.errors import DataError

    line = tmp_path / "line.jsonl.gz"
    with gzip.open(line, "wb", compresslevel=9) as f:
        f.write(b'{"question": "')
        chunk = b"x" * (1 << 20)
        for _ in range(40):
            f.write(chunk)
        f.write(b'", "answer": "4"}\n')
    for read in (lambda: preview(f"jsonl:{line}", 3, max_bytes=1 << 20), lambda: load_spec(f"jsonl:{line}",
                                                                                             max_bytes=1 << 20)):
        tracemalloc.start()
        with pytest.raises(DataError, match="over the 1.0 MB limit"):
            read()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 8 << 20, peak  # a few times the limit, not the 40 MB line

    big = tmp_path / "string.parquet"
    pq.write_table(pa.table({"question": ["y" * (40 << 20)], "answer": ["4"]}), big, compression="zstd")
    assert big.stat().st_size < 200_000

    def decoded(*a, **k):
        raise AssertionError("a page was decoded before the footer's sizes were checked")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", decoded)
    for read in (lambda: preview(f"parquet:{big}", 3, max_bytes=1 << 20),
                 lambda: load_spec(f"parquet:{big}", max_bytes=1 << 20)):
        with pytest.raises(DataError, match="decoded content is over the 1.0 MB limit"):
            read()


@pytest.mark.parametrize("eval_every", [1, 0])  # an evaluation during the run, and the final one
def test_stop_ends_an_evaluation_between_batches(tiny_base, tmp_path, eval_every):
    """A Stop asked for while a run evaluates ends it after the current batch: 40 evaluation batches are
    not run out first; the run ends cancelled with its checkpoint and no evaluation reported."""
    from datasets import Dataset

    from ptmoe_core.callbacks import TrainerCallback
    from ptmoe_core.trainer import train
    from tests.test_trainer import config, examples

    class Rec(TrainerCallback):
        def __init__(self):
            self.steps, self.evals, self.ckpts = 0, 0, []

        def on_step(self, m):
            self.steps += 1

        def on_evaluate(self, report):
            self.evals += 1

        def on_checkpoint(self, step, path):
            self.ckpts.append(step)

    rec = Rec()
    asked = []

    def should_stop():
        asked.append(1)
        return rec.steps >= 1

    cfg = config(tmp_path, steps=1 if eval_every == 0 else 3, eval_every=eval_every, eval_batch_size=1,
                 max_new_tokens=2)
    res = train(cfg, callbacks=[rec], should_stop=should_stop, base=tiny_base,
                data=(examples(), {"toy": Dataset.from_list(examples(40))}))
    assert res.status == "cancelled" and res.step == 1 and rec.evals == 0 and rec.ckpts == [1]
    assert len(asked) < 5  # asked before the first batches, not after 40


def test_demo_visitors_cannot_delete_runs(client, demo_srv):
    """An unauthenticated demo: nobody deletes through the web (the run stays). With a login, demo mode
    still keeps gallery runs; a private studio lets its (logged-in) users delete."""
    from dataclasses import replace

    from tests.jobs_fixtures import config

    demo_srv.ctx.queue.stop()  # the run stays queued; deleting is what is tried
    rid = demo_srv.ctx.storage.submit(config("keep-me", steps=1))
    with pytest.raises(AppError, match="cannot be deleted in this shared demo"):
        client.predict(rid, "any", "any", "", "", [], True, api_name="/delete_run")
    assert demo_srv.ctx.storage.get_run(rid).name == "keep-me"
    s = demo_srv.ctx.settings
    logged_in_demo = replace(s, auth=(("ann", "pw"),))
    assert "gallery" in logged_in_demo.delete_refusal("gallery")
    assert logged_in_demo.delete_refusal("default") is None
    assert replace(s, demo=False).delete_refusal("gallery") is None


def test_demo_preview_follows_the_launch_rule(client):
    """One rule for launch and preview: no Hub loads, no oversized built-in sets in the web process."""
    for spec, why in (("hf:org/some-set", "reads no Hugging Face data"), ("builtin:arith?n=50000", "at most n=2,000")):
        with pytest.raises(AppError, match=why):
            client.predict(spec, 3, api_name="/preview_data")
    table, _ = client.predict("builtin:arith?n=8", 2, api_name="/preview_data")
    assert len(table["data"]) == 2


def test_demo_caps_the_number_of_evaluation_specs():
    from app import forms
    from app.settings import DEMO_LIMITS

    values = {**forms.default_values("tiny-random", demo=True),
              "eval_specs": ", ".join(["builtin:arith"] * (DEMO_LIMITS.eval_specs + 1))}
    cfg, errors = forms.check(values, demo=True)
    assert cfg is None and "evaluation data specs" in errors["eval_specs"]
    values["eval_specs"] = ", ".join(["builtin:arith"] * DEMO_LIMITS.eval_specs)
    assert "eval_specs" not in forms.check(values, demo=True)[1]


def test_uploads_have_a_total_disk_bound(tmp_path, client, demo_srv):
    from app import data_sources as ds

    up = tmp_path / "uploads"
    files = []
    for i in range(3):
        f = tmp_path / f"f{i}.jsonl"
        f.write_bytes((f'{{"question": "q{i}", "answer": "a"}}\n' * 12_000).encode())  # ~0.4 MB each
        files.append(f)
    ds.save_upload(files[0], up, max_mb=1, max_total_mb=1)
    ds.save_upload(files[1], up, max_mb=1, max_total_mb=1)
    with pytest.raises(ValueError, match="at most 1 MB"):
        ds.save_upload(files[2], up, max_mb=1, max_total_mb=1)
    assert ds.save_upload(files[0], up, max_mb=1, max_total_mb=1).exists()  # the same content again: no new file
    assert len(list(up.iterdir())) == 2
    assert demo_srv.ctx.settings.max_uploads_mb == 200
