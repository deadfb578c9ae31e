"""Actions on one selected run: continue it (Runs and Train tabs), copy it to a new run, push its
adapter to the Hub (Runs tab).

Continuing re-queues the same run with more steps (``Studio.continue_run``: ``ptmoe_core.resume`` says
what may change, ``storage.continuation`` records it); a change the engine does not allow on resuming
is refused in one line, and "Copy to a new run" (``Studio.copy_run``) queues a fresh run with any
change instead.

The token is typed into a password box, handed to ``Studio.push`` (``ptmoe_core.hub.push``) for this
one upload and cleared from the box afterwards; it is never stored, logged or echoed (the messages say
``***``).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from .escaping import esc
from .state import AppContext
from .studio import MAX_CHANGES_CHARS, Studio
from .ui import require_run_id


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
        return ctx.studio.push(rid, repo_id, tok, priv), ""

    push_btn.click(on_push, [sel, repo, token, private], [out, token], api_visibility="private")


def continue_message(studio: Studio, run_id: int, more_steps: Any, changes: str | None) -> str:
    """Re-queue run ``run_id`` from its last checkpoint for ``more_steps`` more; one line saying what happened."""
    try:
        start, info = studio.continue_run(run_id, more_steps, changes)
    except Exception as e:  # one line, whatever refused it (engine rule, lifecycle, demo limit, bad input)
        return f"✗ Not continued: {_first_line(e)}"
    return (f"✓ Run #{run_id} queued to continue from step {start} to step {info.total_steps} "
            "(same run: its curves go on, new evaluations are added).")


def copy_message(studio: Studio, run_id: int, changes: str | None) -> str:
    """Queue a new run with run ``run_id``'s configuration and any ``changes``; one line saying what happened."""
    try:
        new_id, cfg = studio.copy_run(run_id, changes)
    except Exception as e:
        return f"✗ Not copied: {_first_line(e)}"
    return f"✓ Queued run #{new_id} {esc(cfg.name)}: a copy of run #{run_id}, trained from scratch."


def _first_line(e: Exception) -> str:
    return esc(str(e).splitlines()[0] if str(e) else type(e).__name__)


def build_continue(ctx: AppContext, run: gr.components.Component, prefix: str) -> None:
    """Continue / copy controls for the run ``run`` holds, with their own message line."""
    with gr.Accordion("Continue this run, or copy it to a new run", open=False):
        with gr.Row():
            more = gr.Number(20, label="More steps", precision=0, minimum=0, scale=1,
                             info="0: finish the steps a stopped run had left", elem_id=f"{prefix}-more-steps")
            changes = gr.Textbox(label="Changes (optional)", scale=3, max_length=MAX_CHANGES_CHARS,
                                 placeholder="e.g. train.eval_every=10, train.report_to=tensorboard",
                                 info="Continuing allows train.eval_every, save_every, report_to and name; "
                                      "any other change needs a new run.", elem_id=f"{prefix}-changes")
        with gr.Row():
            cont_btn = gr.Button("Continue (same run)", size="sm", elem_id=f"{prefix}-continue")
            copy_btn = gr.Button("Copy to a new run", size="sm", elem_id=f"{prefix}-copy-new")
        out = gr.Markdown("", elem_id=f"{prefix}-continue-msg")

    def on_continue(r: Any, m: Any, c: str):
        return continue_message(ctx.studio, require_run_id(r), m, c)

    def on_copy(r: Any, c: str):
        return copy_message(ctx.studio, require_run_id(r), c)

    cont_btn.click(on_continue, [run, more, changes], [out], api_visibility="private")
    copy_btn.click(on_copy, [run, changes], [out], api_visibility="private")
