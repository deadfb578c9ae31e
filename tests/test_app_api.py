"""The studio through its API (gradio_client), served in-process on the tiny random model, with real
jobs: every named endpoint, including launch -> finish -> inspect, stop and delete.

The tests of this module share one server and run in order (each builds on the runs before)."""

from __future__ import annotations

import html
import json
import time
import zipfile
from html import unescape
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import forms  # noqa: E402
from app.testing import running_app  # noqa: E402

EXPECTED = {
    "/check_config", "/launch", "/stop", "/run_status", "/save_config", "/load_config", "/copy_from_run",
    "/builtin_specs", "/upload_data", "/folder_specs", "/list_data_files", "/hub_specs", "/preview_data",
    "/inspect_runs", "/inspect_run_info", "/inspect", "/show_example", "/list_runs", "/run_details",
    "/compare_runs", "/rename_run", "/delete_run", "/download_adapter", "/current_run", "/apply_preset",
}
EXPECTED |= {"/export_run", "/import_bundle"}  # run bundles
EXPECTED |= {"/launch_sweep", "/list_sweeps", "/sweep_summary", "/compare_grid_points", "/cancel_sweep",
             "/resume_sweep", "/delete_sweep"}  # sweeps (app/sweep_view.py)
CALLED: set[str] = set()
N = len(forms.KEYS)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("studio")) as s:
        yield s


@pytest.fixture(scope="module")
def client(srv):
    return Client(srv.url, verbose=False)


def call(client, name, *args):
    CALLED.add(name)
    return client.predict(*args, api_name=name)


def tiny_values(**kw):
    v = forms.default_values("tiny-random")
    v.update(name="tiny-ptmoe", steps=4, batch_size=2, warmup_steps=0, eval_every=0, save_every=2, max_new_tokens=4,
             max_train_examples=64, max_eval_examples=3, max_source_tokens=96, max_answer_tokens=8)
    v.update(kw)
    return v


def wait_status(client, run_id, statuses, timeout=150.0, min_step=0):
    deadline = time.monotonic() + timeout
    while True:
        html = call(client, "/run_status", run_id)[0]
        status = html.split('data-status="', 1)[1].split('"', 1)[0]
        step = int(html.split("step ", 1)[1].split(" ", 1)[0]) if "step " in html else 0
        if status in statuses and step >= min_step:
            return html
        assert status not in ("FAILED",) or "FAILED" in statuses, html
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {status}: {html}")
        time.sleep(0.5)


def info_of(update) -> str:
    return update.get("info", "") if isinstance(update, dict) else ""


# ---------------------------------------------------------------------------------------------


def test_named_endpoints(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == EXPECTED


def test_check_config_reports_field_and_params(client, srv):
    out = call(client, "/check_config", *forms.values_list(tiny_values()))
    assert len(out) == N + 3  # + parameters, CLI, summary (the folded sections are layout, not outputs)
    params_html, cli, summary = out[N], out[N + 1], out[N + 2]
    assert "Ready to launch" in summary
    from ptmoe_core.models import tiny_config
    from ptmoe_core.params import ModelShape, count_params

    cfg = forms.config_from_values(tiny_values())
    expected = count_params(cfg.method, ModelShape.from_hf_config(tiny_config(49152)))
    assert f"{expected:,}" in params_html and "LoRA" in params_html
    assert cli.startswith("python -m ptmoe_core train") and "tiny-random" in cli

    bad = call(client, "/check_config", *forms.values_list(tiny_values(rank=99, warmup_steps=50)))
    k = forms.KEYS.index("rank")
    assert "must not exceed the prompt length" in info_of(bad[k]) and "invalid" in bad[k]["elem_classes"]
    assert "Fix before launching" in bad[N + 2] and "rank R" in bad[N + 2]
    # a field that is fine keeps its help text
    assert info_of(bad[forms.KEYS.index("steps")]) == forms.HELP["steps"]


def test_data_sources(client, srv):
    data = srv.ctx.studio.data_dir
    train, ev = call(client, "/builtin_specs", ["arith", "dates"], True)
    assert train == "builtin:arith, builtin:dates" and "builtin:arith-ood" in ev
    (data / "mine").mkdir(parents=True, exist_ok=True)
    rows = [{"question": f"What is {i} plus 1?", "answer": str(i + 1)} for i in range(12)]
    (data / "mine" / "plus.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert "mine/plus.jsonl" in call(client, "/list_data_files")["choices"][0]
    spec, _ = call(client, "/folder_specs", "mine/plus.jsonl", "auto")
    assert spec == "jsonl:mine/plus.jsonl"
    table, note = call(client, "/preview_data", spec, 3)
    assert len(table["data"]) == 3 and "What is" in table["data"][0][2] and "3 rows" in note
    up = Path(srv.ctx.settings.data_dir).parent / "upload me.jsonl"
    up.write_text("\n".join(json.dumps(r) for r in rows[:5]))
    uspec, _, msg = call(client, "/upload_data", handle_file(str(up)), "jsonl")
    assert uspec.startswith("jsonl:uploads/") and "data folder" in msg
    assert (data / uspec.split(":", 1)[1]).is_file()
    assert call(client, "/hub_specs", "org/some-set") == ("hf:org/some-set", "")
    with pytest.raises(AppError, match="outside the data folder"):
        call(client, "/preview_data", f"jsonl:{up}", 3)


def test_choosing_a_preset_fills_the_method_fields(client):
    for preset in ("paper", "studio"):
        fill = forms.preset_fill(preset, "ptmoe")
        out = call(client, "/apply_preset", preset, "ptmoe")
        assert dict(zip(fill, out, strict=True)) == fill
    summary = call(client, "/check_config", *forms.values_list(tiny_values(mi_loss=0.5)))[N + 2]
    assert "Ready to launch" in summary and "Preset **studio**; differs from it: mi_loss `0.5`" in summary


def test_save_and_load_config(client):
    v = tiny_values(name="saved", method="smop", n_experts=3)
    saved = call(client, "/save_config", *forms.values_list(v))
    path = saved["value"] if isinstance(saved, dict) else saved
    assert Path(path).read_text().startswith("name: saved")
    out = call(client, "/load_config", handle_file(path))
    loaded = dict(zip(forms.KEYS, out[:N], strict=True))
    assert loaded["method"] == "smop" and loaded["n_experts"] == 3 and loaded["name"] == "saved"
    assert "Loaded" in out[N]


def test_launch_refuses_invalid_config(client, srv):
    out = call(client, "/launch", *forms.values_list(tiny_values(top_k=5)))
    assert "Not launched" in out[N] and "top k" in out[N]
    assert srv.ctx.storage.list_runs() == []


def test_launch_finish_and_watch(client, srv):
    out = call(client, "/launch", *forms.values_list(tiny_values()))
    assert "Queued run" in out[N]
    run_id = out[N + 1]["value"]
    assert run_id == 1
    html = wait_status(client, run_id, {"FINISHED"})
    assert "step 4 / 4" in html and "100%" in html
    res = call(client, "/run_status", run_id)
    assert res[1] is not None and "train loss" in json.dumps(res[1])  # loss plot
    assert "expert 0" in json.dumps(res[3])  # expert load over training
    heat, mi = json.dumps(res[5]), json.dumps(res[6])  # routing by domain, I(domain; expert) over steps
    assert "builtin-arith" in heat and "I(domain; expert) =" in heat and "last 10 steps" in mi
    assert "[studio] run 1 starting" in res[7]  # log tail
    assert "Method preset <b>studio</b>" in res[8] and "method.router_lr_mult" in unescape(res[8])  # the run's config
    watch, _ = call(client, "/current_run")  # a fresh page shows the newest run
    assert watch["value"] == run_id
    r = srv.ctx.storage.get_run(run_id)
    assert r.status == "FINISHED" and Path(r.adapter_path).is_dir()


def test_inspect_typed_inputs_side_by_side(client):
    run_upd, base_upd = call(client, "/inspect_runs", None, None)
    assert run_upd["value"] == 1 and [1] == [c[1] for c in run_upd["choices"]]
    info, ckpt, sets, steps, max_new = call(client, "/inspect_run_info", 1)
    assert max_new["value"] == 4  # the run's own answer length
    assert "N=2 experts" in info
    assert [c[1] for c in ckpt["choices"]] == ["final", "4", "2"]
    assert "builtin-arith" in [c[1] for c in sets["choices"]] and steps["value"] == "4"
    out = call(client, "/inspect", 1, "final", "Type inputs", "What is 17 plus 25? => 42\nHello there", "",
               "number", "all evaluation sets", 4, 0, None, True, 1, 4)
    status, table, row_no, detail = out[:4]
    assert "2 inputs" in status and "1 with gold" in status
    assert table.count('<tr data-row="') == 2
    assert "Forced e0" in table and "Forced e1" in table and "Baseline: #1 tiny-ptmoe (ptmoe)" in table
    assert "What is 17 plus 25?" in table and "pt-bar-fill" in table and "pt-chip" in table
    assert row_no == 1 and "Input #1" in detail
    second = call(client, "/show_example", 2)
    assert "Input #2" in second and "Hello there" in second and "no gold" in second
    with pytest.raises(AppError, match="pick 1 to 2"):
        call(client, "/show_example", 5)


def test_inspect_eval_sets_checkpoint_and_stored(client, srv):
    out = call(client, "/inspect", 1, "2", "Draw from the run's evaluation sets", "", "", "text", "all evaluation sets",
               2, 0, None, False, None, 4)
    assert "8 inputs" in out[0] and "@ step 2" in out[0]  # 2 per set × 4 built-in sets
    heat, conf, dom, proj, usage = out[4:9]
    assert all(p is not None for p in (heat, conf, dom, proj, usage))
    assert "PC1" in json.dumps(proj)
    out = call(client, "/inspect", 1, "final", "Draw from the run's evaluation sets", "", "", "text", "builtin-qa",
               3, 1, None, False, None, 4)
    assert "3 inputs" in out[0] and "BUILTIN-QA".lower() in out[1].lower()
    out = call(client, "/inspect", 1, "final", "The run's stored evaluation", "", "", "text", "all evaluation sets",
               2, 0, "4", False, None, 4)
    assert "stored evaluation at step 4" in out[0] and "12 inputs" in out[0]  # 3 per set × 4 sets
    assert "Frozen model" not in out[1] and "Baseline" not in out[1]
    # The stored evaluation with a baseline run's stored answers and the frozen model's (the floor,
    # computed once and cached in the runs folder).
    out = call(client, "/inspect", 1, "final", "The run's stored evaluation", "", "", "text", "all evaluation sets",
               2, 0, "4", False, 1, 4, True)
    assert "Baseline: #1" in out[1] and "Frozen model (no adapter)" in out[1] and out[1].count('<tr data-row="') == 12
    assert len(list((srv.ctx.studio.runs_dir / "floors").glob("*.json"))) == 1
    # Typed inputs through the frozen model as well.
    out = call(client, "/inspect", 1, "final", "Type inputs", "What is 2 plus 2? => 4", "", "number",
               "all evaluation sets", 2, 0, None, False, None, 4, True)
    assert "Frozen model (no adapter)" in out[1] and "Frozen model (no adapter)" in call(client, "/show_example", 1)
    with pytest.raises(AppError, match="type at least one input"):
        call(client, "/inspect", 1, "final", "Type inputs", "  ", "", "text", "all evaluation sets", 2, 0, None,
             False, None, 4)


def test_runs_table_compare_rename_download(client, srv, tmp_path):
    table, sel, cmp = call(client, "/list_runs", "FINISHED", "any", "", "", [])
    assert [row[0] for row in table["data"]] == [1] and table["data"][0][3] == "ptmoe"
    assert call(client, "/list_runs", "any", "lora", "", "", [])[0]["data"] == []
    assert call(client, "/list_runs", "any", "any", "tiny", "ptmoe", [])[0]["data"][0][1] == "tiny-ptmoe"
    details = call(client, "/run_details", 1)
    assert "tiny-ptmoe" in details[0] and "FINISHED" in details[0]
    scores, loss, ev = call(client, "/compare_runs", [1])
    assert "Macro" in scores and "builtin-arith" in scores and f"{srv.ctx.storage.get_run(1).trainable_params:,}" in scores
    assert "#1 tiny-ptmoe" in html.unescape(json.dumps(loss))  # Plotly shows the escaped label as typed
    msg, det = call(client, "/rename_run", 1, "tiny renamed")
    assert "tiny renamed" in msg and srv.ctx.storage.get_run(1).name == "tiny renamed"
    f, msg = call(client, "/download_adapter", 1)
    path = f["value"] if isinstance(f, dict) else f
    names = zipfile.ZipFile(path).namelist()
    assert {"ptmoe_config.json", "adapter_model.safetensors", "README.md"} <= set(names)  # PT-MoE: studio format + card
    values = call(client, "/copy_from_run", 1)
    assert values[forms.KEYS.index("name")] == "tiny renamed-copy" and values[forms.KEYS.index("steps")] == 4
    assert "Copied" in values[N]


def test_floor_export_and_import(client, srv, tmp_path):
    """The frozen model's scores as the floor; a run exported as a bundle; importing it back finds it
    already here; a broken file is refused in one line, changing nothing."""
    scores, _, _ = call(client, "/compare_runs", [1], True)
    assert "tiny-random · frozen model (no adapter)" in scores and "frozen" in scores
    f, msg = call(client, "/export_run", 1)
    bundle = Path(f["value"] if isinstance(f, dict) else f)
    assert bundle.name.endswith(".ptmoe.zip") and "exported" in msg
    from ptmoe_core.bundle import read_bundle

    assert read_bundle(bundle).name == "tiny renamed" and read_bundle(bundle).floor is not None
    msg, *_ = call(client, "/import_bundle", handle_file(str(bundle)), "any", "any", "", "", [], True)
    assert "already here as run #1" in msg
    bad = tmp_path / "broken.ptmoe.zip"
    bad.write_bytes(bundle.read_bytes()[:500])
    with pytest.raises(AppError, match="truncated or corrupt zip") as e:
        call(client, "/import_bundle", handle_file(str(bad)), "any", "any", "", "", [], True)
    assert "\n" not in str(e.value)
    assert [row[0] for row in call(client, "/list_runs", "any", "any", "", "", [], True)[0]["data"]] == [1]


def test_stop_and_delete(client, srv):
    out = call(client, "/launch", *forms.values_list(tiny_values(name="long", steps=3000, save_every=0)))
    run_id = out[N + 1]["value"]
    wait_status(client, run_id, {"RUNNING"}, min_step=1)
    with pytest.raises(AppError, match="running"):
        call(client, "/delete_run", run_id, "any", "any", "", "", [])
    assert "Stopping run" in call(client, "/stop", run_id)
    html = wait_status(client, run_id, {"KILLED"}, timeout=60)
    assert "cancelled" in html
    assert "is KILLED" in call(client, "/stop", run_id)
    # A stopped run saved a checkpoint: it can be inspected (and serve as a baseline).
    run_upd, _ = call(client, "/inspect_runs", None, None)
    label = dict((v, k) for k, v in run_upd["choices"])[run_id]
    assert label.endswith("— stopped")
    _, ckpt, *_ = call(client, "/inspect_run_info", run_id)
    assert ckpt["choices"] and ckpt["choices"][0][0].startswith("checkpoint at step")
    out = call(client, "/inspect", run_id, ckpt["value"], "Type inputs", "What is 2 plus 2? => 4", "", "number",
               "all evaluation sets", 2, 0, None, False, 1, 4)
    assert "1 input" in out[0] and "Baseline: #1" in out[1]
    folder = Path(srv.ctx.storage.get_run(run_id).output_dir)
    assert folder.is_dir()
    msg, table, _, _, _ = call(client, "/delete_run", run_id, "any", "any", "", "", [])
    assert f"Deleted run #{run_id}" in msg and not folder.exists()
    assert [row[0] for row in table["data"]] == [1]


def test_a_failing_job_explains_itself(client, srv):
    (srv.ctx.studio.data_dir / "broken.jsonl").write_text('{"title": "no question or answer here"}\n' * 5)
    out = call(client, "/launch", *forms.values_list(tiny_values(name="broken", train_specs="jsonl:broken.jsonl")))
    run_id = out[N + 1]["value"]
    html = wait_status(client, run_id, {"FAILED"}, timeout=120)
    assert "Failed:" in html and "broken.jsonl" in html and "Traceback" not in html
    assert srv.ctx.storage.get_run(run_id).status == "FAILED"


def test_a_sweep_from_the_train_tab_to_the_sweep_view(client, srv):
    from storage.sweeps import wait_sweep

    form = forms.values_list(tiny_values(name="sw<b>x</b>", steps=2, save_every=0))
    rows = ["method.n_experts", "1, 2", "method.nope", "1", None, ""]
    with pytest.raises(AppError, match="not in the list of choices"):  # Gradio refuses a key it did not offer
        call(client, "/launch_sweep", *rows, "0", "sweeps", *form)
    rows[2:4] = [None, ""]
    with pytest.raises(AppError) as e:
        call(client, "/launch_sweep", "method.n_experts", "1, 0", *rows[2:], "0", "sweeps", *form)
    assert "grid method.n_experts=0: method.n_experts" in unescape(str(e.value))
    msg = call(client, "/launch_sweep", *rows, "0", "sweeps", *form)
    assert "2 runs" in msg and "<b>" not in msg
    (sweep,) = srv.ctx.storage.list_sweeps("sweeps")
    runs = wait_sweep(srv.ctx.storage, sweep.id, timeout=240, poll_s=0.5)
    assert [r.status for r in runs] == ["FINISHED", "FINISHED"], [r.error_message for r in runs]
    assert call(client, "/list_sweeps", None)["value"] == sweep.id
    table, key, *_ = call(client, "/sweep_summary", sweep.id, None)
    assert "method.n_experts=2" in unescape(table) and "1/1" in table
    assert "<b>x" not in table and "&lt;b&gt;x" in table
    assert key["value"] == "method.n_experts"
    cmp = call(client, "/compare_grid_points", sweep.id, "method.n_experts=1", "method.n_experts=2")
    assert "F1 points, 95 % interval" in cmp and "question pairs" in cmp
    assert "Cancel requested for 0 run(s)" in call(client, "/cancel_sweep", sweep.id)
    assert "Nothing to resume" in call(client, "/resume_sweep", sweep.id)
    msg = call(client, "/delete_sweep", sweep.id)  # (the confirmation box it hides is layout, not an output)
    assert f"Deleted sweep #{sweep.id}" in msg and srv.ctx.storage.list_sweeps() == []


def test_every_endpoint_was_called():
    assert EXPECTED <= CALLED, sorted(EXPECTED - CALLED)
