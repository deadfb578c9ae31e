"""The studio: three tabs (Train, Inspect, Runs) wired to the engine and to storage.

``build_app(ctx)`` returns the ``gr.Blocks``; ``create_context(settings)`` opens storage and starts
the job supervisor; ``launch(ctx)`` serves the app with the settings' host, port, auth and limits,
behind the host and origin checks of ``serving``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import gradio as gr

from ptmoe_core.data.files import MAX_BYTES_ENV

from . import inspect_tab, runs_tab, serving, train_tab, views
from .escaping import code
from .settings import Settings
from .state import AppContext
from .studio import Studio

log = logging.getLogger("app")

INTRO = (
    "Train **PT-MoE** adapters — prompt tuning with a mixture of decomposed experts — on a frozen language "
    "model, then see what the router does for every input. The baselines (PT, DPT, SMoP, LoRA) train the same "
    "way, so runs compare side by side."
)


def theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="pink", neutral_hue="slate")


def create_context(settings: Settings, *, job_settings: Any = None, start_jobs: bool = True) -> AppContext:
    """Open the database (creating/upgrading it) and start the job supervisor."""
    from storage import JobManager, JobSettings, Storage

    from .data_sources import prune_uploads

    storage = Storage(settings.db, runs_dir=settings.runs_dir)
    storage.runs_dir.mkdir(parents=True, exist_ok=True)
    if settings.gallery_dir is not None:
        from storage.bundles import seed_gallery

        seeded = seed_gallery(storage, settings.gallery_dir)
        if seeded:
            log.info("first start: imported %d gallery run(s) from %s", len(seeded), settings.gallery_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.upload_ttl_h is not None:
        prune_uploads(settings.upload_dir, settings.upload_ttl_h)
    job_settings = job_settings or JobSettings()
    if settings.limits is not None:  # a job reads no more of a data file (unzipped too) than could be uploaded
        job_settings = dataclasses.replace(job_settings, extra_env={**job_settings.extra_env,
                                                                    MAX_BYTES_ENV: str(settings.max_data_bytes)})
    job_settings = dataclasses.replace(job_settings, runs_per_device=settings.runs_per_device)
    from storage.jobs import make_executor

    # Ray only when asked for (--ray / PTMOE_RAY_ADDRESS): make run and a Space never import it.
    executor = make_executor(settings.ray, slots=job_settings.slots, runs_per_device=settings.runs_per_device,
                             gpus_per_run=settings.gpus_per_run, env={})
    if settings.ray:
        executor.check_submit(storage)  # a SQLite file or a runs folder Ray cannot see: refuse at start
    manager = JobManager(storage, job_settings, executor=executor)
    if start_jobs:
        manager.start()
    return AppContext(settings, Studio(settings, storage, manager))


def close_context(ctx: AppContext) -> None:
    """Stop supervising (running jobs keep running; the next start reconnects to them), close storage."""
    ctx.studio.close()


def build_app(ctx: AppContext) -> gr.Blocks:
    s = ctx.settings
    with gr.Blocks(title="PT-MoE Studio", delete_cache=(3600, 3600)) as demo:
        banner = ""
        if s.limits is not None:
            lim = s.limits
            banner = (f"\n\n> **Demo mode** — small defaults and limits (at most {lim.steps} steps, batches of "
                      f"{lim.batch_size}, {lim.max_train_examples:,} training examples, embedded models only, no Hub "
                      "data). Runs are shared with everyone using this demo"
                      + (f"; uploads are deleted after {s.upload_ttl_h:g} hours." if s.upload_ttl_h else "."))
        if not s.persistent:
            banner += ("\n\n> **Runs here are temporary:** this Space has no persistent storage (`/data`), so runs "
                       "trained here vanish when it restarts. Export a run (Runs tab) to keep it.")
        gr.Markdown(f"# PT-MoE Studio\n{INTRO}{banner}", elem_id="pt-header")
        with gr.Tabs(selected="train") as tabs:
            with gr.Tab("Train", id="train") as t_train:
                train = train_tab.build(ctx)
            with gr.Tab("Inspect", id="inspect") as t_inspect:
                insp = inspect_tab.build(ctx)
            with gr.Tab("Runs", id="runs") as t_runs:
                runs = runs_tab.build(ctx)
        gr.Markdown(
            f"<div class='pt-muted'>Database: {code(ctx.storage.label)} · runs folder: "
            f"{code(ctx.studio.runs_dir)} · data folder: {code(ctx.studio.data_dir)}</div>",
            elem_id="pt-footer",
        )

        # ---- across tabs ---------------------------------------------------------------------
        def goto_inspect(run: Any):
            from .queries import parse_run_id

            rid = parse_run_id(run)
            run_upd, base_upd = insp.refresh_runs(rid, None)
            return gr.Tabs(selected="inspect"), run_upd, base_upd

        train.inspect_btn.click(goto_inspect, [train.watch], [tabs, insp.run, insp.baseline],
                                api_visibility="private")
        runs.inspect_btn.click(goto_inspect, [runs.sel], [tabs, insp.run, insp.baseline], api_visibility="private")

        def copy_to_train(run: Any):
            return [gr.Tabs(selected="train"), *train.copy_from_run(run)]

        runs.copy_btn.click(copy_to_train, [runs.sel], [tabs, *train.fields, train.check_md],
                            api_visibility="private")
        t_runs.select(runs.list_runs, runs.filters, runs.list_outputs, api_visibility="private")
        t_runs.select(runs.sweeps.list_sweeps, [runs.sweeps.pick], [runs.sweeps.pick], api_visibility="private")
        t_inspect.select(insp.refresh_runs, [insp.run, insp.baseline], [insp.run, insp.baseline],
                         api_visibility="private")
        t_train.select(train.refresh_choices, [train.watch], [train.watch, train.copy_run], api_visibility="private")

        # ---- a fresh page (or a refresh) picks up the state from storage -----------------------
        demo.load(train.on_load, None, [train.watch, train.copy_run], api_name="current_run")
        demo.load(train.check_config, train.fields, train.check_outputs, api_visibility="private",
                  show_progress="hidden")
        def load_inspect(cur_run: Any, cur_base: Any):
            """A first visit opens on a gallery run's Inspect table; any other keeps the page as it is."""
            try:
                first = insp.first_screen()
            except Exception:  # the first screen is a nicety; a failure must not break the page
                log.warning("first screen failed", exc_info=True)
                first = None
            if first is not None:
                return [gr.Tabs(selected="inspect"), *first]
            return [gr.skip(), *insp.refresh_runs(cur_run, cur_base), *[gr.skip()] * (len(insp.first_outputs) - 2)]

        demo.load(load_inspect, [insp.run, insp.baseline], [tabs, *insp.first_outputs], api_visibility="private")
        demo.load(runs.list_runs, runs.filters, runs.list_outputs, api_visibility="private")
    return demo


def gradio_kwargs(settings: Settings) -> dict[str, Any]:
    """What ``gr.mount_gradio_app`` gets: login, upload limit, no extra file access, look."""
    return {
        "server_name": settings.host,
        "server_port": settings.port,
        "auth": settings.gradio_auth(),
        "auth_message": "PT-MoE Studio — log in with the credentials given to launch.py (--auth / PTMOE_AUTH).",
        "max_file_size": settings.max_file_size,
        "allowed_paths": [],  # nothing beyond Gradio's own cache: downloads are built as temp files
        "show_error": True,
        "theme": theme(),
        "css": views.CSS,
        "footer_links": ["api", "gradio", "settings"],
        "ssr_mode": False,
    }


def serve(ctx: AppContext, demo: gr.Blocks | None = None, port: int | None = None) -> serving.Server:
    """The studio's HTTP server (not started): ``port`` None = the settings' port, 0 = a free one."""
    demo = demo or build_app(ctx)
    demo.queue(default_concurrency_limit=8)
    serving.calm_queue(demo)
    app = serving.asgi_app(ctx.settings, demo, gradio_kwargs(ctx.settings))
    return serving.Server(app, ctx.settings.host, ctx.settings.port if port is None else port)


def launch(ctx: AppContext) -> None:
    """Serve until interrupted (Ctrl-C). uvicorn runs in a thread, as under ``Blocks.launch``: the main
    thread takes the interrupt and shuts the server down cleanly."""
    server = serve(ctx).start()
    try:
        server.wait()
    finally:
        server.stop()
