"""Pushing to the Hub: the card's metadata through huggingface_hub's own classes, parsed back offline,
and the refusal paths with the real client (no network here: a closed port, a local server that
refuses every token, offline mode). The upload itself cannot be reached from here."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from ptmoe_core.adapter import build_adapter, save_adapter
from ptmoe_core.config import MethodConfig
from ptmoe_core.hub import HubError, push
from ptmoe_core.model_card import TrainingSummary, write_model_card
from tests.test_model_card import evaluation, record, run_config

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_NotARealTokenButSecret0123456789"


def test_the_card_metadata_parses_back_with_the_scores_as_model_index():
    from ptmoe_core.model_card import render_card

    ev = evaluation()
    card = ModelCard(render_card(record(), TrainingSummary.from_run(run_config(), ev, 10)))
    data = card.data
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and data.library_name == "ptmoe-studio"
    assert data.model_name == "arith-vs-squad"
    got = {(r.dataset_name, r.metric_type): r.metric_value for r in data.eval_results}
    want = {(s, m): ev.scores[s][k] for s in ("arith", "squad")
            for k, m in (("em", "exact_match"), ("f1", "f1"), ("accuracy", "accuracy"))}
    assert got == want  # macro is an average over sets, not a data set: not in the model-index
    assert all(r.task_type == "text-generation" for r in data.eval_results)
    assert "model-index" in card.content and card.text.startswith("\n# arith-vs-squad")


def test_a_card_without_scores_has_no_model_index():
    from ptmoe_core.model_card import render_card

    card = ModelCard(render_card(record("pt")))
    assert card.data.eval_results is None and "model-index" not in card.content


@pytest.fixture()
def adapter_dir(tmp_path, tiny_base) -> Path:
    a = build_adapter(tiny_base, MethodConfig(method="ptmoe", prompt_len=4, n_experts=2, rank=2), seed=0)
    d = tmp_path / "adapter"
    save_adapter(a, d)
    write_model_card(d, TrainingSummary.from_run(run_config(), evaluation(), 10))
    return d


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def _cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptmoe_core", "push", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "HF_TOKEN": TOKEN, **env})


def _one_line(p: subprocess.CompletedProcess) -> str:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and not p.stdout.strip(), (p.stdout, p.stderr)
    assert TOKEN not in p.stderr + p.stdout
    return lines[0]


def test_cli_push_unreachable_hub_says_so_in_one_line(adapter_dir):
    p = _cli(["--adapter", str(adapter_dir), "--repo", "someone/tiny"], HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    line = _one_line(p)
    assert "push to someone/tiny not done" in line and "cannot reach the Hub" in line


def _in_process(args: list[str], capsys) -> subprocess.CompletedProcess:
    """The CLI in this process (huggingface_hub read HF_ENDPOINT / HF_HUB_OFFLINE at import; the tests
    set its constants instead), with the same checks as a subprocess."""
    from ptmoe_core.cli import main

    rc = main(["push", *args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)


def test_cli_push_offline_mode(adapter_dir, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    line = _one_line(_in_process(["--adapter", str(adapter_dir), "--repo", "someone/tiny"], capsys))
    assert "not done" in line and "offline mode" in line


class _Refuse(http.server.BaseHTTPRequestHandler):
    """A Hub that answers every request with 401, as the real one does for a bad token."""

    def _refuse(self):
        body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _refuse

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture()
def refusing_hub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_bad_token_is_refused_in_one_line(adapter_dir, refusing_hub, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", refusing_hub)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    line = _one_line(_in_process(["--adapter", str(adapter_dir), "--repo", "someone/tiny"], capsys))
    assert "refused the token (HTTP 401)" in line


def test_bad_input_is_refused_before_any_network(tmp_path, adapter_dir):
    with pytest.raises(HubError, match="USER/NAME"):
        push(adapter_dir, "no-slash", endpoint="http://127.0.0.1:9")
    with pytest.raises(HubError, match="not a valid name"):
        push(adapter_dir, "some one/bad name", endpoint="http://127.0.0.1:9")
    with pytest.raises(Exception, match="ptmoe_config.json|not an adapter|adapter"):
        push(tmp_path, "someone/x", endpoint="http://127.0.0.1:9")


def test_runs_tab_push_never_stores_or_logs_the_token(tmp_path, adapter_dir, refusing_hub, caplog):
    import logging
    import shutil

    from app.studio import push_message
    from storage import Storage

    db = tmp_path / "studio.db"
    with Storage(str(db)) as st:
        rid = st.submit({"name": "pushme", "model": {"name": "tiny-random"}})
        run_dir = Path(st.get_run(rid).output_dir)
        shutil.copytree(adapter_dir, run_dir / "adapter")
        st.set_adapter(rid, run_dir / "adapter")
        with caplog.at_level(logging.DEBUG):
            refused = push_message(st, st.runs_dir, rid, "someone/tiny", TOKEN, True, endpoint=refusing_hub)
            unreachable = push_message(st, st.runs_dir, rid, "someone/tiny", TOKEN, False,
                                       endpoint=f"http://127.0.0.1:{_closed_port()}")
            empty = push_message(st, st.runs_dir, rid, "someone/tiny", "  ", False, endpoint=refusing_hub)
        assert refused.startswith("✗") and "401" in refused
        assert unreachable.startswith("✗") and "cannot reach" in unreachable
        assert "Type a Hugging Face token" in empty
        assert rid in [r.id for r in st.list_runs()]
    texts = [refused, unreachable, caplog.text]
    texts += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    assert not any(TOKEN in t for t in texts)  # not in messages, logs, the database or any file
