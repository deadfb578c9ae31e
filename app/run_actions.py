"""Runs-tab actions on one selected run that reach outside the studio: push its adapter to the Hub.

The token is typed into a password box, handed to ``ptmoe_core.hub.push`` for this one upload and
cleared from the box afterwards; it is never stored, logged or echoed (the messages say ``***``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from ptmoe_core.errors import PTMoEError

from .data_sources import inside
from .escaping import code, esc
from .state import AppContext
from .ui import require_run_id

log = logging.getLogger("app")


def push_message(storage: Any, runs_dir: Path, run_id: int, repo: str, token: str, private: bool,
                 endpoint: str | None = None) -> str:
    """Push run ``run_id``'s adapter to ``repo``; one line (Markdown, escaped) saying what happened."""
    from ptmoe_core.hub import push

    repo, token = (repo or "").strip(), (token or "").strip()
    r = storage.get_run(run_id)
    if not r.adapter_path or not Path(r.adapter_path).is_dir():
        return f"✗ Run #{run_id} has no adapter yet (status {r.status}); nothing pushed."
    if not inside(r.adapter_path, runs_dir):
        return f"✗ The adapter of run #{run_id} lies outside the runs folder; not pushing it."
    if not repo:
        return "✗ Name the repository as USER/NAME; nothing pushed."
    if not token:  # never fall back to a token the server may hold: that would push to its owner's account
        return "✗ Type a Hugging Face token with write access; nothing pushed."
    try:
        url = push(r.adapter_path, repo, token=token, private=bool(private), endpoint=endpoint)
    except PTMoEError as e:
        msg = str(e).replace(token, "***")
        log.warning("run %s: %s", run_id, msg)
        return f"✗ {esc(msg)}"
    return f"✓ Pushed the adapter of run #{run_id} to {code(repo)}: {esc(url)}"


def build_push(ctx: AppContext, sel: gr.components.Component, out: gr.components.Component) -> None:
    """The push form under the selected run; writes its message to ``out``."""
    with gr.Accordion("Push the adapter to the Hugging Face Hub", open=False):
        with gr.Row():
            repo = gr.Textbox(label="Repository", placeholder="USER/NAME", scale=2, max_length=200,
                              elem_id="pt-push-repo")
            private = gr.Checkbox(False, label="private", scale=1)
        token = gr.Textbox(label="Hugging Face token (write access)", type="password", max_length=400,
                           info="Used for this upload only: never stored or logged.", elem_id="pt-push-token")
        push_btn = gr.Button("Push", size="sm", elem_id="pt-push")

    def on_push(run: Any, repo_id: str, tok: str, priv: bool):
        rid = require_run_id(run)
        return push_message(ctx.storage, ctx.runs_dir, rid, repo_id, tok, priv), ""

    push_btn.click(on_push, [sel, repo, token, private], [out, token], api_visibility="private")
