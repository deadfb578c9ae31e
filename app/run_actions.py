"""Actions on one selected run: continue it (Runs and Train tabs), copy it to a new run, push its
adapter to the Hub (Runs tab).

Continuing re-queues the same run with more steps (``ptmoe_core.resume`` says what may change,
``storage.continuation`` records it); a change the engine does not allow on resuming is refused in
one line, and "Copy to a new run" queues a fresh run with any change instead.

The token is typed into a password box, handed to ``ptmoe_core.hub.push`` for this one upload and
cleared from the box afterwards; it is never stored, logged or echoed (the messages say ``***``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from ptmoe_core.errors import PTMoEError
from ptmoe_core.resume import continue_config
from storage import continuation

from . import forms
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


MAX_CHANGES_CHARS = 2000


def parse_changes(text: str | None) -> list[str]:
    """``train.eval_every=10, train.save_every=5`` (commas or new lines) as ``KEY=VALUE`` items."""
    text = (text or "").strip()
    if len(text) > MAX_CHANGES_CHARS:
        raise ValueError(f"changes are limited to {MAX_CHANGES_CHARS} characters")
    items = [x.strip() for line in text.splitlines() for x in line.split(",") if x.strip()]
    bad = [x for x in items if "=" not in x]
    if bad:
        raise ValueError(f"expected KEY=VALUE (e.g. train.eval_every=10), got {bad[0]!r}")
    return items


def _limits_error(ctx: AppContext, cfg: Any) -> str | None:
    from .queries import queue_full

    lim = ctx.settings.limits
    errors = forms.limit_errors(cfg, lim) if lim is not None else {}
    return next(iter(errors.values()), None) or queue_full(ctx.storage, lim)


def continue_message(ctx: AppContext, run_id: int, more_steps: Any, changes: str | None) -> str:
    """Re-queue run ``run_id`` from its last checkpoint for ``more_steps`` more; one line saying what happened."""
    from ptmoe_core.config import RunConfig

    st = ctx.storage
    try:
        more = int(more_steps or 0)
        start = continuation.continue_point(st, run_id)
        cfg = continue_config(RunConfig.from_dict(st.get_run(run_id).config), start, more, parse_changes(changes))
        limit = _limits_error(ctx, cfg)
        if limit:
            return f"✗ Not continued: {esc(limit)}"
        info = continuation.continue_run(st, run_id, cfg, start)
    except Exception as e:  # one line, whatever refused it (engine rule, lifecycle, bad input)
        return f"✗ Not continued: {esc(str(e).splitlines()[0] if str(e) else type(e).__name__)}"
    return (f"✓ Run #{run_id} queued to continue from step {start} to step {info.total_steps} "
            "(same run: its curves go on, new evaluations are added).")


def copy_message(ctx: AppContext, run_id: int, changes: str | None) -> str:
    """Queue a new run with run ``run_id``'s configuration and any ``changes``."""
    from ptmoe_core.cli import _apply_overrides
    from ptmoe_core.config import RunConfig

    st = ctx.storage
    try:
        r = st.get_run(run_id)
        cfg = RunConfig.from_dict(_apply_overrides(r.config, parse_changes(changes))).validate()
        cfg.name = f"{r.name} (copy)" if cfg.name == r.name else cfg.name
        limit = _limits_error(ctx, cfg)
        if limit:
            return f"✗ Not copied: {esc(limit)}"
        new_id = ctx.queue.submit(cfg, experiment=r.experiment) if ctx.queue is not None else \
            st.submit(cfg, experiment=r.experiment)
    except Exception as e:
        return f"✗ Not copied: {esc(str(e).splitlines()[0] if str(e) else type(e).__name__)}"
    return f"✓ Queued run #{new_id} {esc(cfg.name)}: a copy of run #{run_id}, trained from scratch."


def continued_note(params: dict[str, str]) -> str:
    """What a run's record says about its continuations ('' if none)."""
    n = continuation.continuation_count(params)
    if not n:
        return ""
    steps = ", ".join(f"from step {params.get(f'continued.{i}.from_step', '?')} to {params.get(f'continued.{i}.steps', '?')}"
                      for i in range(1, n + 1))
    return f"continued {n} time{'s' if n > 1 else ''}: {steps}"


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
        return continue_message(ctx, require_run_id(r), m, c)

    def on_copy(r: Any, c: str):
        return copy_message(ctx, require_run_id(r), c)

    cont_btn.click(on_continue, [run, more, changes], [out], api_visibility="private")
    copy_btn.click(on_copy, [run, changes], [out], api_visibility="private")
