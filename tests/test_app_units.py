"""The app's pure parts: settings, the form <-> config mapping, plots, HTML views, inspection
analysis, caches, data-folder rules. No server, no model."""

from __future__ import annotations

import threading
import time

import plotly.graph_objects as go
import pytest

from app import data_sources as ds
from app import forms, plots, views
from app.inspection import InspectResult, project_2d, rows_from_records, summary, typed_examples
from app.settings import SettingsError, from_args, is_loopback, parse_auth
from app.state import InspectQueue, LRUCache
from ptmoe_core.config import DEFAULT_LR, DEFAULT_PROMPT_LR, RunConfig
from ptmoe_core.methods import NAMES
from ptmoe_core.params import ModelShape, count_params

# ---------------------------------------------------------------------------------------------
# settings


def test_defaults_bind_loopback():
    s = from_args([], env={}, gpu=False)
    assert s.host == "127.0.0.1" and s.port == 7860 and not s.auth and not s.demo


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.org", "::"])
def test_public_host_needs_auth(host):
    with pytest.raises(SettingsError, match="--auth"):
        from_args(["--host", host], env={}, gpu=False)


def test_public_host_with_auth_flag_or_env():
    s = from_args(["--host", "0.0.0.0", "--auth", "ann:secret"], env={}, gpu=False)
    assert s.gradio_auth() == [("ann", "secret")]
    s = from_args(["--host", "0.0.0.0"], env={"PTMOE_AUTH": "a:b,c:d:e"}, gpu=False)
    assert s.auth == (("a", "b"), ("c", "d:e"))


def test_loopback_names():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")


@pytest.mark.parametrize("bad", ["nopassword", ":pw", "user:"])
def test_bad_auth_is_refused(bad):
    with pytest.raises(SettingsError):
        parse_auth(bad)


def test_space_binds_all_and_demo_without_gpu():
    s = from_args([], env={"SPACE_ID": "me/studio"}, gpu=False)
    assert s.host == "0.0.0.0" and s.demo and s.on_space


def test_bad_port_and_upload_limit():
    with pytest.raises(SettingsError, match="port"):
        from_args(["--port", "70000"], env={}, gpu=False)
    with pytest.raises(SettingsError, match="upload"):
        from_args([], env={"PTMOE_MAX_UPLOAD_MB": "lots"}, gpu=False)
    assert from_args(["--max-upload-mb", "5"], env={}, gpu=False).max_file_size == "5mb"


def test_launch_refuses_public_host_without_auth(capsys, monkeypatch):
    import launch

    monkeypatch.delenv("PTMOE_AUTH", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert launch.main(["--host", "0.0.0.0"]) == 2
    assert "refusing to serve on 0.0.0.0" in capsys.readouterr().err


def test_launch_starts_and_names_its_database_runs_and_data_folders(tmp_path, capsys, monkeypatch):
    # What `make run` prints before serving; the serving itself (app.main.launch) is left out here.
    import app.main
    import launch

    monkeypatch.delenv("PTMOE_AUTH", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    served = []
    monkeypatch.setattr(app.main, "launch", served.append)
    runs, data = tmp_path / "runs", tmp_path / "data"
    data.mkdir()
    assert launch.main(["--db", str(tmp_path / "s.db"), "--runs-dir", str(runs), "--data-dir", str(data)]) == 0
    err = capsys.readouterr().err
    assert len(served) == 1 and f"runs in {runs}" in err and f"data folder {data}" in err, err


# ---------------------------------------------------------------------------------------------
# form <-> config


def test_default_form_is_ptmoe_sized_for_the_machine():
    for gpu, demo, steps, batch in ((True, False, 100, 8), (False, False, 40, 4), (False, True, 20, 4)):
        v = forms.default_values(gpu=gpu, demo=demo)
        cfg = forms.config_from_values(v).validate()
        m = cfg.method
        assert (m.method, m.prompt_len, m.n_experts, m.rank, m.top_k) == ("ptmoe", 40, 2, 36, 1)
        assert cfg.model.name == "smollm2-135m" and cfg.data.train == ["builtin:all"]
        assert (cfg.train.steps, cfg.train.batch_size) == (steps, batch)
        assert cfg.train.lr == DEFAULT_PROMPT_LR
        assert m.preset == "studio" and forms.preset_differences(cfg) == {}  # the preset decides the method aids
        assert forms.values_from_config(cfg) == v
        assert not forms.check(v, demo=demo)[1]


def test_form_round_trips_every_method():
    for method in NAMES:
        v = forms.default_values("tiny-random")
        v["method"] = method
        cfg = forms.config_from_values(v).validate()
        assert forms.values_from_config(cfg)["method"] == method


@pytest.mark.parametrize("change, key", [
    ({"rank": 50}, "rank"),  # R > T
    ({"top_k": 3}, "top_k"),  # > N
    ({"steps": 0}, "steps"),
    ({"warmup_steps": 500}, "warmup_steps"),
    ({"train_specs": ""}, "train_specs"),
    ({"train_specs": "nonsense"}, "train_specs"),
    ({"batch_size": None}, "batch_size"),
    ({"lr": 50}, "lr"),
])
def test_check_names_the_field_at_fault(change, key):
    v = {**forms.default_values("tiny-random"), **change}
    cfg, errors = forms.check(v)
    assert cfg is None and key in errors and errors[key]


def test_check_demo_limits_and_spec_checker():
    v = {**forms.default_values("tiny-random", demo=True), "steps": 5000}
    _, errors = forms.check(v, demo=True)
    assert "steps" in errors
    v = {**forms.default_values(), "model": "some/hub-model"}
    assert "model" in forms.check(v, demo=True)[1]
    v = forms.default_values()
    _, errors = forms.check(v, spec_check=lambda s: "nope" if s.startswith("builtin") else None)
    assert errors == {"train_specs": "nope"}


def test_param_counts_are_the_engine_formulas():
    cfg = forms.config_from_values(forms.default_values()).validate()
    shape = ModelShape(hidden=576, layers=30, heads=9, kv_heads=3, intermediate=1536)
    c = forms.param_counts(cfg, shape)
    assert c["method"] == count_params(cfg.method, shape) == 2 * 40 * 36 + 36 * 576 + 2 * 576 + 2
    lora = RunConfig().method
    lora.method = "lora"
    assert c["lora"] == count_params(lora, shape)
    assert c["paper"] == 80706  # PT-MoE T=40 N=2 R=36 on Llama-3.2-1B, as in the README
    html = forms.params_html(cfg, shape)
    assert f"{c['method']:,}" in html and f"{c['lora']:,}" in html


def test_cli_command_reproduces_the_config():
    from ptmoe_core.config import apply_overrides

    v = {**forms.default_values("tiny-random"), "method": "smop", "n_experts": 4, "steps": 20, "name": "x y"}
    cfg = forms.config_from_values(v).validate()
    cmd = forms.cli_command(cfg)
    assert cmd.startswith("python -m ptmoe_core train")
    import shlex

    args = shlex.split(cmd.replace("\\\n", " "))
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    rebuilt = RunConfig.from_dict(apply_overrides(RunConfig().to_dict(), sets))
    rebuilt.output_dir = cfg.output_dir
    assert rebuilt.to_dict() == cfg.to_dict()
    assert forms.cli_command(cfg, "my.yaml") == "python -m ptmoe_core train --config my.yaml"


def test_lr_follows_method_only_at_defaults():
    assert forms.default_lr("lora") == DEFAULT_LR["lora"] and forms.default_lr("ptmoe") == DEFAULT_PROMPT_LR
    assert forms.is_default_lr(DEFAULT_PROMPT_LR) and forms.is_default_lr(None) and not forms.is_default_lr(0.05)


# ---------------------------------------------------------------------------------------------
# plots and views


def test_every_plot_builder_handles_empty_and_real_data():
    figs = [
        plots.loss_curve([], []), plots.loss_curve([1, 2, 3, 4, 5, 6], [3, 2, 2, 1, 1, 1], [6], [1.2]),
        plots.eval_curves({}), plots.eval_curves({"macro": ([5, 10], [0.1, 0.3])}),
        plots.expert_load_area([], []), plots.expert_load_area([1, 2], [[0.5, 0.5], [1.0, 0.0]]),
        plots.router_entropy([], []), plots.router_entropy([1, 2], [0.6, 0.5], 2),
        plots.overlay_curves({}, "t", "y"), plots.overlay_curves({"a": ([1, 2], [1, 2])}, "t", "y"),
        plots.prob_heatmap([], [], []), plots.prob_heatmap([[0.2, 0.8], [0.9, 0.1]], [1, 0], ["a", "b"]),
        plots.confidence_hist([], []), plots.confidence_hist([0.6, 0.9, 0.7], [True, False, None]),
        plots.usage_matrix([], [], 0), plots.usage_matrix(["x", "x", "y"], [0, 1, 1], 2),
        plots.usage_bars(["x", "y"], [0, 1], 2), plots.projection_scatter([], [], []),
        plots.usage_heatmap({}, 2, "t", "n"), plots.usage_heatmap({"a": [1, 0]}, 2, "t", "n", "sub"),
        plots.domain_mi_curve([], [], 0, 10), plots.domain_mi_curve([1, 2], [0.1, 0.5], 1.0, 10),
        plots.projection_scatter([[0, 1], [1, 0]], [0, 1], ["a", "b"], [0.7, 0.3]),
    ]
    assert all(isinstance(f, go.Figure) for f in figs)


def test_heatmap_groups_rows_by_chosen_expert():
    fig = plots.prob_heatmap([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [0, 1, 0], ["q1", "q2", "q3"])
    labels = list(fig.data[0].y)
    assert [lab.split(" ")[0] for lab in labels] == ["#1", "#3", "#2"]  # e0 rows (by confidence), then e1


def test_usage_matrix_rows_are_shares():
    fig = plots.usage_matrix(["a", "a", "a", "b"], [0, 1, 1, 0], 2)
    z = fig.data[0].z
    assert [round(sum(r), 6) for r in z] == [1.0, 1.0] and z[0] == pytest.approx([1 / 3, 2 / 3])


def test_routing_by_domain_plots_from_stored_metrics(tmp_path):
    """The Train tab's routing-by-domain plots, built from what a job stores: specialisation shows as
    I(domain; expert) rising to 1 bit, a collapse is named, and domain names from files are escaped."""
    from app import queries
    from ptmoe_core.callbacks import StepMetrics
    from storage import Storage
    from storage.worker import StorageCallback

    evil = "<img src=x onerror=alert(1)>"
    with Storage(str(tmp_path / "studio.db"), runs_dir=tmp_path / "runs") as st:
        run = st.submit(RunConfig(name="r"))
        cb = StorageCallback(st, run)
        for step in range(1, 31):  # 10 steps mixed, 10 specialised, 10 collapsed onto expert 1
            rout = ({"qa": [1, 1], evil: [1, 1]} if step <= 10 else
                    {"qa": [2, 0], evil: [0, 2]} if step <= 20 else {"qa": [0, 2], evil: [0, 2]})
            cb.on_step(StepMetrics(step=step, total_steps=30, loss=1.0, lr=0.1, tokens_per_s=1.0, grad_norm=0.1,
                                   domain_routing=rout))
        cb.flush()
        c = queries.curves(st, run)
    assert c.routing.steps == list(range(1, 31)) and c.routing.n_experts == 2
    at = {s: queries.routing_view(queries.domain_routing.DomainRouting(2, c.routing.steps[:s], c.routing.counts[:s]))
          for s in (10, 20, 30)}
    assert at[10].bits[-1] == pytest.approx(0.0) and at[10].collapsed is None
    assert at[20].bits[-1] == pytest.approx(1.0) and at[20].collapsed is None and at[20].max_bits == 1.0
    view = at[30]
    assert view.bits[-1] == pytest.approx(0.0) and view.collapsed == 1
    assert view.last == {"qa": [0, 20], evil: [0, 20]} and view.last_steps == (21, 30)
    assert max(view.bits) == pytest.approx(1.0) and view.bits[19] == pytest.approx(1.0)
    assert "collapsed onto expert 1" in view.subtitle()
    heat = plots.usage_heatmap(view.last, view.n_experts, "t", "n", view.subtitle())
    assert heat.data[0].z[0] == pytest.approx([0.0, 1.0]) and "&lt;img src=x onerror=alert(1)&gt;" in heat.data[0].y
    assert not any("<" in label for label in heat.data[0].y)
    curve = plots.domain_mi_curve(view.steps, view.bits, view.max_bits, 10)
    assert list(curve.data[0].y) == pytest.approx(view.bits)
    empty = queries.routing_view(queries.domain_routing.DomainRouting())
    assert empty.subtitle() == "" and isinstance(plots.domain_mi_curve([], [], 0, 10), go.Figure)


def test_inspect_table_escapes_and_has_optional_columns():
    rows = [{"question": "<script>x</script>", "gold": ["4"], "prediction": "4 & more", "expert": 1,
             "probs": [0.3, 0.7], "confidence": 0.7, "score": 1.0, "correct": True,
             "forced": [{"expert": 0, "text": "a", "score": 0.0, "correct": False},
                        {"expert": 1, "text": "b", "score": 1.0, "correct": True}],
             "baseline": {"run": "#2", "text": "c", "score": 0.0, "correct": False}}]
    html = views.inspect_table(rows, "#2 pt")
    assert "<script>" not in html and "&lt;script&gt;" in html and "4 &amp; more" in html
    assert "Forced e0" in html and "Forced e1" in html and "Baseline: #2 pt" in html
    assert 'data-row="0"' in html and "width:70.0%" in html
    detail = views.example_detail(rows[0], 0)
    assert "Input #1" in detail and "&lt;script&gt;" in detail


def test_eta_uses_the_pace_of_steps():
    from types import SimpleNamespace

    from app.queries import eta_seconds

    run = SimpleNamespace(started_at=100.0, ended_at=None, step=4, total_steps=10)
    assert eta_seconds(run, now=140.0) == pytest.approx(60.0)  # 10 s per step so far, loading included
    assert eta_seconds(run, now=140.0, step_times=[130.0, 132.0, 134.0, 136.0]) == pytest.approx(12.0)
    assert eta_seconds(SimpleNamespace(started_at=None, ended_at=None, step=0, total_steps=10)) is None


def test_scores_table_bolds_only_a_winner():
    from app.queries import scores_table_html

    header = ["Run", "Method", "Params", "qa", "Macro"]
    html = scores_table_html(header, [["#1 a", "ptmoe", 100, 0.5, 0.5], ["#2 b", "lora", 900, 0.25, 0.25]])
    assert "<b>50.0</b>" in html and "<b>25.0</b>" not in html and "900" in html
    tie = scores_table_html(header, [["#1 a", "ptmoe", 100, 0.0, 0.0], ["#2 b", "pt", 50, 0.0, None]])
    assert "<b>" not in tie and "–" in tie


def test_progress_bar_text():
    html = views.progress("RUNNING", 25, 100, 50.0, 150.0, "r", 3)
    assert "step 25 / 100" in html and "25%" in html and "2m 30s left" in html and 'data-status="RUNNING"' in html


# ---------------------------------------------------------------------------------------------
# inspection analysis


def test_typed_examples_with_gold_answers():
    ex = typed_examples("What is 2+2? => 4\n\n  Who? => Ann | Anna \nplain line", context="ctx", answer_type="number")
    assert [e["question"] for e in ex] == ["What is 2+2?", "Who?", "plain line"]
    assert [e["answers"] for e in ex] == [["4"], ["Ann", "Anna"], []]
    assert all(e["context"] == "ctx" and e["answer_type"] == "number" for e in ex)


def test_projection_is_pca():
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 8, generator=g, dtype=torch.float64)
    x[:, 0] *= 10  # one dominant direction
    pts, explained = project_2d(x.tolist())
    assert len(pts) == 20 and all(len(p) == 2 for p in pts)
    assert explained[0] > 0.8 and explained[0] >= explained[1]
    again, _ = project_2d(x.tolist())
    assert again == pts  # deterministic (signs fixed)
    xc = x - x.mean(0)
    var = torch.tensor(pts)[:, 0].var() * 19
    assert float(var) == pytest.approx(explained[0] * float((xc**2).sum()), rel=1e-6)


def test_rows_from_stored_records():
    from ptmoe_core.eval_record import EvalRecord

    rec = EvalRecord(split="validation", id="q1", dataset="builtin-qa",
                     domain="builtin-qa", ood=False, answer_type="span", input="Who?", context="Ann met Bo.",
                     gold=["Ann"], prediction="Ann", expert=0, probs=[0.8, 0.2], confidence=0.8, entropy=0.5,
                     em=1.0, f1=1.0, correct=True, score=1.0)
    row = rows_from_records([rec])[0]
    assert row["expert"] == 0 and row["correct"] is True and row["gold"] == ["Ann"] and row["domain"] == "builtin-qa"
    assert row["context"] == "Ann met Bo."


# ---------------------------------------------------------------------------------------------
# caches and the inspection queue


def test_lru_cache_is_bounded_and_loads_once():
    c = LRUCache(2)
    calls = []
    for k in ["a", "b", "a", "c", "a"]:
        c.get_or_load(k, lambda k=k: calls.append(k) or k.upper())
    assert calls == ["a", "b", "c"] and len(c) == 2 and c.keys() == ["c", "a"]


def test_inspect_queue_bounds_concurrency():
    q = InspectQueue(2)
    active, peak, lock = [0], [0], threading.Lock()

    def work():
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1

    threads = [threading.Thread(target=q.run, args=(work,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2 and q.running == 0 and q.waiting == 0


# ---------------------------------------------------------------------------------------------
# the data folder


def test_specs_are_confined_to_the_data_folder(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    outside = tmp_path / "b.jsonl"
    outside.write_text('{"question": "q", "answer": "a"}\n')
    assert ds.check_spec("jsonl:sub/a.jsonl", data) is None
    assert ds.check_spec(f"jsonl:{data}/sub/a.jsonl", data) is None
    assert "outside the data folder" in ds.check_spec(f"jsonl:{outside}", data)
    assert "outside the data folder" in ds.check_spec("jsonl:../b.jsonl", data)
    assert "not found" in ds.check_spec("jsonl:missing.jsonl", data)
    assert "unknown built-in" in ds.check_spec("builtin:nope", data)
    assert ds.check_spec("builtin:all-ood", data) is None and ds.check_spec("hf:org/set", data) is None
    assert "local path" in ds.check_spec(f"hf:{tmp_path}", data) and "local path" in ds.check_spec("hf:../x", data)
    assert ds.resolve_spec("jsonl:sub/a.jsonl@5", data) == f"jsonl:{(data / 'sub' / 'a.jsonl').resolve()}@5"
    assert ds.list_data_files(data) == ["sub/a.jsonl"]
    with pytest.raises(ValueError):
        ds.data_file(data, "../b.jsonl")


def test_upload_is_copied_into_uploads(tmp_path):
    src = tmp_path / "my data.jsonl"
    src.write_text('{"question": "q", "answer": "a"}\n')
    up = tmp_path / "data" / "uploads"
    saved = ds.save_upload(src, up, max_mb=1)
    assert saved.parent == up and saved.read_text() == src.read_text() and " " not in saved.name
    assert ds.save_upload(src, up, max_mb=1) == saved  # same content, same file
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(ValueError, match="upload limit"):
        ds.save_upload(big, up, max_mb=1)


def test_builtin_choice_to_specs():
    assert ds.builtin_specs(["qa", "arith", "units", "dates"], False) == (["builtin:all"], [])
    assert ds.builtin_specs(["arith"], True) == (["builtin:arith"], ["builtin:arith", "builtin:arith-ood"])
    assert ds.builtin_specs([], False) == ([], [])
    assert ds.file_spec("auto", "x.parquet") == "parquet:x.parquet" and ds.file_spec("squad", "d.json") == "squad:d.json"


def test_model_shapes_and_local_model_folders(tmp_path):
    from ptmoe_core.models import tiny_config

    data = tmp_path / "data"
    inside = data / "models" / "mini"
    outside = tmp_path / "elsewhere"
    for d in (inside, outside):
        d.mkdir(parents=True)
        tiny_config(100).save_pretrained(d)
    shape, note = ds.load_shape("tiny-random", data)
    assert (shape.hidden, shape.layers, note) == (64, 2, "")
    shape, note = ds.load_shape("models/mini", data)
    assert shape is not None and shape.hidden == 64
    assert ds.resolve_model("models/mini", data) == str(inside.resolve())
    shape, note = ds.load_shape(str(outside), data)
    assert shape is None and "inside the data folder" in note
    shape, note = ds.load_shape("../elsewhere", data)
    assert shape is None and "inside the data folder" in note


def test_inspect_summary_states_mutual_information_and_collapse():
    def result(domains, experts):
        rows = [{"domain": d, "expert": e, "probs": [0.5, 0.5]} for d, e in zip(domains, experts, strict=True)]
        return summary(InspectResult(rows=rows, n_experts=2, method="ptmoe"))

    split = result(["qa", "qa", "math", "math"], [0, 0, 1, 1])
    assert "I(domain; expert) = 1.00 bits over 2 domains" in split and "not collapsed" in split
    collapsed = result(["qa"] * 5 + ["math"] * 5, [1] * 10)
    assert "I(domain; expert) = 0.00 bits" in collapsed and "collapsed onto expert 1 (100% of the inputs, each domain weighing the same)" in collapsed
    typed = result([None, None, None], [0, 1, 0])
    assert "needs inputs from two or more domains" in typed and "not collapsed" in typed
    assert "I(domain" not in summary(InspectResult(rows=[{"domain": "a", "expert": None}], n_experts=0, method="pt"))
