"""Train tab: set up a run (model, data, method, hyperparameters) with live checks and parameter
counts, launch it as a job, and watch it: progress, curves, expert load, router entropy, routing by
domain (which expert each domain goes to, and I(domain; expert) as it changes), log, Stop.

What is shown on the right is read from storage on a timer, so a refreshed page or a second tab
shows the same run; nothing about a run lives in the browser session."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from ptmoe_core import trackers
from ptmoe_core.config import DEVICES, SCHEDULES, RunConfig
from ptmoe_core.methods import Option, routing
from ptmoe_core.methods.soft_prompt import PROMPT_INITS

from . import data_sources as ds
from . import forms, plots, queries, run_actions, sweep_view, views
from .config_view import config_html
from .escaping import code, esc
from .state import AppContext
from .ui import friendly, message, require_run_id
from .ui import log as logger

LOG_LINES = 60
# Form fields inside the folded sections "Data limits", "More training options" and "Advanced routing".
ACCORDION_KEYS = (("max_train_examples", "max_eval_examples", "max_source_tokens", "max_answer_tokens"),
                  ("warmup_steps", "schedule", "grad_accum", "seed"), forms.ROUTER_AIDS)
ROUTED = forms.ROUTED


def _option_widget(o: Option, value: Any, info: str) -> Any:
    """The form widget of a method setting declared in the registry (``Option``): a dropdown of its
    choices, a checkbox, or a number."""
    if o.choices:
        return gr.Dropdown(list(o.choices), value=value, label=o.label, info=info, elem_id=o.elem_id)
    if o.kind == "bool":
        return gr.Checkbox(value, label=o.label, info=info, elem_id=o.elem_id)
    return gr.Number(value, label=o.label, info=info, minimum=0, precision=0 if o.kind == "int" else None,
                     elem_id=o.elem_id)


def build(ctx: AppContext) -> SimpleNamespace:
    st, settings = ctx.storage, ctx.settings
    studio = ctx.studio
    d = forms.default_values(settings.model, settings.demo, settings.gpu)
    H = forms.HELP
    comp: dict[str, Any] = {}

    with gr.Row(equal_height=False):
        # ================================ the form ================================
        with gr.Column(scale=5, min_width=420):
            with gr.Group():
                gr.Markdown("### 1 · Base model", elem_classes=["pt-step"])
                with gr.Row():
                    comp["model"] = gr.Dropdown(ds.model_choices(settings.model), value=d["model"], label="Base model",
                                                info=H["model"], allow_custom_value=True, scale=3,
                                                elem_id="pt-model")
                    comp["device"] = gr.Dropdown(list(DEVICES), value=d["device"], label="Device", info=H["device"],
                                                 scale=1)
            with gr.Group():
                gr.Markdown("### 2 · Data", elem_classes=["pt-step"])
                source = gr.Radio(ds.SOURCES, value=ds.SOURCES[0], label="Source", elem_id="pt-data-source")
                with gr.Group(visible=True) as g_builtin:
                    builtin_tasks = gr.CheckboxGroup(ds.builtin_tasks(), value=ds.builtin_tasks(),
                                                     label="Built-in tasks",
                                                     info="Generated offline from a seed: extractive QA, arithmetic, "
                                                          "unit conversion, dates — domains a router can tell apart.")
                    builtin_ood = gr.Checkbox(value=False, label="Also evaluate on the out-of-domain variants")
                with gr.Group(visible=False) as g_upload:
                    upload = gr.File(label=f"Upload a data file (≤ {settings.max_upload_mb} MB)",
                                     file_types=ds.FILE_TYPES, file_count="single", type="filepath",
                                     elem_id="pt-upload")
                    upload_fmt = gr.Dropdown(ds.FILE_FORMATS, value=ds.FILE_FORMATS[0][1], label="Format",
                                             info=ds.FORMAT_HELP)
                with gr.Group(visible=False) as g_folder:
                    with gr.Row():
                        folder_file = gr.Dropdown(studio.data_files(), value=None, allow_custom_value=True,
                                                  label=f"File in the data folder ({studio.data_dir})", scale=4,
                                                  elem_id="pt-folder-file")
                        folder_refresh = gr.Button("↻", scale=0, min_width=50)
                    folder_fmt = gr.Dropdown(ds.FILE_FORMATS, value=ds.FILE_FORMATS[0][1], label="Format",
                                             info=ds.FORMAT_HELP)
                with gr.Group(visible=False) as g_hub:
                    hub_name = gr.Textbox(label="Hugging Face data set", placeholder="e.g. rajpurkar/squad",
                                          info=ds.HUB_HELP)
                comp["train_specs"] = gr.Textbox(d["train_specs"], label="Training data specs", info=H["train_specs"],
                                                 elem_id="pt-train-specs")
                comp["eval_specs"] = gr.Textbox(d["eval_specs"], label="Evaluation data specs", info=H["eval_specs"])
                with gr.Accordion("Preview the data", open=False):
                    with gr.Row():
                        preview_n = gr.Slider(1, 50, value=8, step=1, label="Rows", scale=3)
                        preview_btn = gr.Button("Show first rows", scale=1)
                    preview_md = gr.Markdown("")
                    preview_df = gr.Dataframe(headers=ds.PREVIEW_COLUMNS, value=[], interactive=False, wrap=True,
                                              max_height=320, elem_id="pt-preview")
                with gr.Accordion("Data limits", open=False) as acc_limits:
                    with gr.Row():
                        comp["max_train_examples"] = gr.Number(d["max_train_examples"], label="Max train examples",
                                                               info=H["max_train_examples"], precision=0,
                                                               elem_id="pt-max-train")
                        comp["max_eval_examples"] = gr.Number(d["max_eval_examples"], label="Eval examples per set",
                                                              info=H["max_eval_examples"], precision=0,
                                                              elem_id="pt-max-eval")
                    with gr.Row():
                        comp["max_source_tokens"] = gr.Number(d["max_source_tokens"], label="Max input tokens",
                                                              info=H["max_source_tokens"], precision=0)
                        comp["max_answer_tokens"] = gr.Number(d["max_answer_tokens"], label="Max answer tokens",
                                                              info=H["max_answer_tokens"], precision=0)
            with gr.Group():
                gr.Markdown("### 3 · Method", elem_classes=["pt-step"])
                comp["method"] = gr.Radio(forms.method_choices(), value=d["method"], label="Method", info=H["method"],
                                          elem_id="pt-method")
                comp["preset"] = gr.Radio(forms.preset_choices(), value=d["preset"], label="Preset", info=H["preset"],
                                          elem_id="pt-preset")
                with gr.Row():
                    comp["prompt_len"] = gr.Number(d["prompt_len"], label="Prompt length T", info=H["prompt_len"],
                                                   precision=0, minimum=1, elem_id="pt-T")
                    comp["n_experts"] = gr.Number(d["n_experts"], label="Experts N", info=H["n_experts"],
                                                  precision=0, minimum=1, elem_id="pt-N")
                    comp["rank"] = gr.Number(d["rank"], label="Rank R", info=H["rank"], precision=0, minimum=1,
                                             elem_id="pt-R")
                with gr.Row():
                    comp["top_k"] = gr.Number(d["top_k"], label="Top-k", info=H["top_k"], precision=0, minimum=0)
                    comp["noise_std"] = gr.Number(d["noise_std"], label="Router noise σ", info=H["noise_std"],
                                                  minimum=0)
                    comp["init"] = gr.Dropdown(list(PROMPT_INITS), value=d["init"], label="Prompt init",
                                               info=H["init"])
                with gr.Row():
                    comp["balance_loss"] = gr.Number(d["balance_loss"], label="Load-balancing loss",
                                                     info=H["balance_loss"], minimum=0, scale=2)
                    comp["probationary"] = gr.Checkbox(d["probationary"], label="Probationary routing",
                                                       info=H["probationary"], scale=1)
                with gr.Accordion("Advanced routing (not in the paper; the preset sets these)", open=False,
                                  visible=d["method"] in ROUTED, elem_id="pt-advanced-routing") as acc_routing:
                    # Laid out from the registry (methods/routing.py ADVANCED): a new router aid needs no line here.
                    for row in sorted({o.row for o in routing.ADVANCED}):
                        with gr.Row():
                            for o in (o for o in routing.ADVANCED if o.row == row):
                                comp[o.name] = _option_widget(o, d[o.name], H[o.name])
                with gr.Row():
                    comp["lora_r"] = gr.Number(d["lora_r"], label="LoRA rank r", info=H["lora_r"], precision=0,
                                               minimum=1, visible=False)
                    comp["lora_alpha"] = gr.Number(d["lora_alpha"], label="LoRA α", info=H["lora_alpha"],
                                                   visible=False)
                comp["lora_targets"] = gr.CheckboxGroup(forms.LORA_TARGETS, value=d["lora_targets"],
                                                        label="LoRA target layers", info=H["lora_targets"],
                                                        visible=False)
                params = gr.HTML("", elem_id="pt-params")
            with gr.Group():
                gr.Markdown("### 4 · Training", elem_classes=["pt-step"])
                with gr.Row():
                    comp["steps"] = gr.Number(d["steps"], label="Steps", info=H["steps"], precision=0, minimum=1,
                                              elem_id="pt-steps")
                    comp["batch_size"] = gr.Number(d["batch_size"], label="Batch size", info=H["batch_size"],
                                                   precision=0, minimum=1, elem_id="pt-batch")
                    comp["lr"] = gr.Number(d["lr"], label="Learning rate", info=H["lr"], elem_id="pt-lr")
                with gr.Row():
                    comp["eval_every"] = gr.Number(d["eval_every"], label="Evaluate every", info=H["eval_every"],
                                                   precision=0, minimum=0)
                    comp["save_every"] = gr.Number(d["save_every"], label="Checkpoint every", info=H["save_every"],
                                                   precision=0, minimum=0)
                    comp["max_new_tokens"] = gr.Number(d["max_new_tokens"], label="Max new tokens",
                                                       info=H["max_new_tokens"], precision=0, minimum=1,
                                                       elem_id="pt-max-new")
                with gr.Accordion("More training options", open=False) as acc_more:
                    with gr.Row():
                        comp["warmup_steps"] = gr.Number(d["warmup_steps"], label="Warm-up steps",
                                                         info=H["warmup_steps"], precision=0, minimum=0,
                                                         elem_id="pt-warmup")
                        comp["schedule"] = gr.Dropdown(list(SCHEDULES), value=d["schedule"], label="LR schedule",
                                                       info=H["schedule"])
                    with gr.Row():
                        comp["grad_accum"] = gr.Number(d["grad_accum"], label="Gradient accumulation",
                                                       info=H["grad_accum"], precision=0, minimum=1)
                        comp["seed"] = gr.Number(d["seed"], label="Seed", info=H["seed"], precision=0)
                    avail = trackers.installed()
                    comp["report_to"] = gr.CheckboxGroup([k for k, ok in avail.items() if ok], value=d["report_to"],
                                                         label="Report to trackers", info=H["report_to"],
                                                         elem_id="pt-report-to")
                    gr.Markdown(esc(trackers.missing_note(avail)), elem_id="pt-trackers-missing")
            with gr.Group():
                with gr.Row(equal_height=True):
                    comp["name"] = gr.Textbox(d["name"], label="Run name", info=H["name"], scale=3,
                                              elem_id="pt-run-name")
                    launch_btn = gr.Button("Launch", variant="primary", scale=1, elem_id="pt-launch")
                check_md = gr.Markdown("", elem_id="pt-check")
            sweep = sweep_view.build_launcher(ctx)
            with gr.Accordion("Configuration: save · load · copy from a run · CLI", open=False):
                with gr.Row():
                    save_btn = gr.Button("Save configuration (.yaml)", size="sm")
                    load_file = gr.File(label="Load a configuration (.yaml / .json)", file_types=[".yaml", ".yml",
                                                                                                  ".json"],
                                        type="filepath", height=80, elem_id="pt-load-config")
                saved_file = gr.File(label="Configuration file", visible=False, interactive=False)
                with gr.Row():
                    copy_run = gr.Dropdown([], value=None, allow_custom_value=True, label="Copy settings from run", scale=3)
                    copy_btn = gr.Button("Copy", scale=1)
                cli = gr.Code("", language="shell", label="Equivalent command line", interactive=False,
                              elem_classes=["pt-cli"])

        # ================================ the monitor ================================
        with gr.Column(scale=6, min_width=460):
            watch = gr.Dropdown([], value=None, allow_custom_value=True, label="Run shown", elem_id="pt-watch",
                                info="The newest active run is shown when the page opens; pick any run to see it.")
            progress = gr.HTML(views.no_run(), elem_id="pt-progress")
            with gr.Row():
                stop_btn = gr.Button("■ Stop", variant="stop", size="sm", scale=0, min_width=110, visible=False,
                                     elem_id="pt-stop")
                inspect_btn = gr.Button("Inspect this run →", size="sm", scale=0, min_width=180, visible=False,
                                        elem_id="pt-inspect-run")
            with gr.Row():
                loss_plot = gr.Plot(plots.loss_curve([], []), show_label=False)
                eval_plot = gr.Plot(plots.eval_curves({}), show_label=False)
            with gr.Row():
                load_plot = gr.Plot(plots.expert_load_area([], []), show_label=False)
                entropy_plot = gr.Plot(plots.router_entropy([], []), show_label=False)
            with gr.Row(elem_id="pt-domain-routing"):
                domain_plot = gr.Plot(_domain_heatmap(queries.RoutingView()), show_label=False)
                mi_plot = gr.Plot(_mi_curve(queries.RoutingView()), show_label=False)
            log = gr.Textbox("", label="Log (tail)", lines=10, max_lines=14, interactive=False, autoscroll=True,
                             elem_id="pt-log")
            run_actions.build_continue(ctx, watch, "pt-train")
            with gr.Accordion("Configuration of this run: preset and every resolved value", open=False):
                run_config = gr.HTML(config_html(None), elem_id="pt-run-config-view")
            timer = gr.Timer(settings.poll_s)
            sig = gr.State(None)

    fields = [comp[k] for k in forms.KEYS]
    method_comps = {k: comp[k] for k in forms.METHOD_KEYS}
    preset_keys = list(forms.preset_fill(d["preset"], d["method"]))

    # ================================ handlers ================================

    def _field_updates(errors: dict[str, str]) -> list[Any]:
        return [gr.update(info=f"⚠ {errors[k]}" if k in errors else H[k],
                          elem_classes=["invalid"] if k in errors else []) for k in forms.KEYS]

    @friendly
    def check_config(*args: Any):
        """Validate the form; returns per-field messages, the parameter counts and the CLI command."""
        values = forms.as_values(args)
        c = studio.check(values)
        cfg, errors, shape, note = c.cfg, c.errors, c.shape, c.note
        if errors:
            summary = "**Fix before launching:** " + _reasons(errors)
        else:
            summary = "✓ Ready to launch. " + forms.preset_summary(cfg)
        try:
            shown = cfg or forms.config_from_values(values)
            cmd = forms.cli_command(shown)
        except Exception as e:  # a malformed value: the field message says which
            cmd = f"# {message(e)}"
        return [*_field_updates(errors), forms.params_html(c.counted, shape, note), cmd, summary, *_open_for(errors)]

    def _open_for(errors: dict[str, str]) -> list[Any]:
        """Open a folded section when one of its fields is at fault, so the reason is seen."""
        return [gr.update(open=True) if any(k in errors for k in keys) else gr.skip() for keys in ACCORDION_KEYS]

    def method_visibility(method: str, lr: float | None = None):
        """Show the method's own fields; a learning rate still at a method default follows the method."""
        keys = forms.METHOD_FIELDS.get(method, set())
        lr_upd = gr.update(value=forms.default_lr(method)) if forms.is_default_lr(lr) else gr.update()
        return [*(gr.update(visible=k in keys) for k in method_comps), lr_upd, gr.update(visible=method in ROUTED)]

    @friendly
    def apply_preset(preset: str, method: str):
        """Fill the method fields with the chosen preset's values for the chosen method."""
        fill = forms.preset_fill(str(preset), str(method))
        return [fill.get(k, gr.skip()) for k in preset_keys]

    @friendly
    def launch(*args: Any):
        launched = studio.launch(forms.as_values(args))
        errors, run_id, cfg = launched.checked.errors, launched.run_id, launched.checked.cfg
        if run_id is None or cfg is None:
            msg = "**Not launched:** " + _reasons(errors)
            return [*_field_updates(errors), msg, gr.update(), gr.update(), *_open_for(errors)]
        choices = queries.run_choices(st)
        msg = f"✓ Queued run **#{run_id} {views.esc(cfg.name)}** — progress on the right."
        return [*_field_updates({}), msg, gr.update(choices=choices, value=run_id), gr.update(choices=choices),
                *[gr.skip()] * len(ACCORDION_KEYS)]

    def form_config(*args: Any) -> RunConfig:
        """The form's configuration, validated and with its data and model resolved (the sweep's base)."""
        c = studio.check(forms.as_values(args))
        if c.errors or c.cfg is None:
            raise gr.Error("Fix the settings above first: " + _reasons(c.errors))
        return studio.resolve(c.cfg)

    sweep.wire(fields, form_config)

    @friendly
    def stop(run: Any):
        rid = require_run_id(run, "No run selected.")
        info = studio.stop(rid)
        if info.is_final:
            return f"Run #{rid} is {info.status}."
        return f"Stopping run #{rid}: it saves a checkpoint at the end of this step."

    def poll(run: Any, last_sig: Any):
        """Progress, curves and log of the shown run (skips redrawing plots when nothing changed).
        A failed read (e.g. the database busy) keeps the page as it is until the next tick."""
        try:
            return _poll(run, last_sig)
        except Exception:
            logger.warning("polling run %s failed", run, exc_info=True)
            return [gr.skip()] * 12

    def _poll(run: Any, last_sig: Any):
        rid = queries.parse_run_id(run)
        hidden = gr.update(visible=False)
        v = studio.live(rid, last_sig, LOG_LINES) if rid is not None else None
        if v is None:
            return [views.no_run(), *[gr.skip()] * 6, "", config_html(None), hidden, hidden, None]
        r = v.run
        prog = views.progress(str(r.status), r.step, r.total_steps, r.duration_s(time.time()), v.eta_s, r.name, r.id,
                              v.note)
        show_inspect = gr.update(visible=r.status == "FINISHED" and bool(r.adapter_path))
        show_stop = gr.update(visible=not r.is_final)
        c, routing = v.curves, v.routing
        if c is None or routing is None:
            return [prog, *[gr.skip()] * 6, v.log, gr.skip(), show_inspect, show_stop, last_sig]
        return [
            prog,
            plots.loss_curve(c.steps, c.loss, c.eval_steps, c.eval_loss),
            plots.eval_curves(c.eval_scores, "F1"),
            plots.expert_load_area(c.load_steps, c.loads),
            plots.router_entropy(c.entropy_steps, c.entropy, v.n_experts),
            _domain_heatmap(routing),
            _mi_curve(routing),
            v.log,
            config_html(r.config),
            show_inspect,
            show_stop,
            v.signature,
        ]

    @friendly
    def on_load():
        """A fresh page shows the newest active run (state lives in storage, not in the browser)."""
        choices = queries.run_choices(st)
        return gr.update(choices=choices, value=queries.watched_run(st)), gr.update(choices=choices)

    @friendly
    def refresh_choices(current: Any):
        """New runs in the pickers, keeping the run the user chose to watch."""
        choices = queries.run_choices(st)
        cur = queries.parse_run_id(current)
        keep = cur if cur in {c[1] for c in choices} else queries.watched_run(st)
        return gr.update(choices=choices, value=keep), gr.update(choices=choices)

    @friendly
    def save_config(*args: Any):
        return gr.update(value=str(studio.save_config(forms.as_values(args))), visible=True)

    @friendly
    def load_config(path: str | None):
        if not path:
            return [gr.skip()] * len(forms.KEYS) + ["Choose a .yaml or .json file."]
        return [*forms.values_list(studio.load_config(path)), f"Loaded **{views.esc(Path(path).name)}**."]

    @friendly
    def copy_from_run(run: Any):
        rid = require_run_id(run, "Pick a run to copy from.")
        r, values = studio.run_values(rid)
        return [*forms.values_list(values), f"Copied the settings of run **#{rid} {views.esc(r.name)}**."]

    def source_visibility(src: str):
        return [gr.update(visible=src == s) for s in ds.SOURCES]

    @friendly
    def specs_from_builtin(tasks: list[str], ood: bool):
        train, ev = ds.builtin_specs(tasks or [], ood)
        return ", ".join(train), ", ".join(ev)

    @friendly
    def specs_from_upload(path: str | None, fmt: str):
        if not path:
            return gr.skip(), gr.skip(), ""
        spec, rel = studio.upload(path, fmt)
        return spec, "", f"Saved the upload as {code(rel)} in the data folder."

    @friendly
    def specs_from_folder(rel: str | None, fmt: str):
        if not rel:
            return gr.skip(), gr.skip()
        return studio.folder_spec(rel, fmt), ""

    @friendly
    def specs_from_hub(name: str):
        if not (name or "").strip():
            return gr.skip(), gr.skip()
        return ds.hub_spec(name.strip()), ""

    @friendly
    def preview(specs: str, n: float):
        return studio.preview(specs, int(n or 8))

    # ================================ wiring ================================
    trig = [c.change for c in fields]
    accordions = [acc_limits, acc_more, acc_routing]  # in the order of ACCORDION_KEYS
    check_outputs = [*fields, params, cli, check_md, *accordions]
    gr.on(trig, check_config, fields, check_outputs, api_name="check_config",
          trigger_mode="always_last", show_progress="hidden")
    comp["method"].change(method_visibility, [comp["method"], comp["lr"]],
                          [*method_comps.values(), comp["lr"], acc_routing], api_visibility="private",
                          show_progress="hidden")
    # .input, not .change: loading a config or copying a run sets the preset without refilling its fields.
    comp["preset"].input(apply_preset, [comp["preset"], comp["method"]], [comp[k] for k in preset_keys],
                         api_name="apply_preset", show_progress="hidden")
    launch_btn.click(launch, fields, [*fields, check_md, watch, copy_run, *accordions], api_name="launch",
                     show_progress_on=[check_md]).then(
        lambda: None, None, [sig], api_visibility="private")
    stop_btn.click(stop, [watch], [check_md], api_name="stop")
    monitor = [progress, loss_plot, eval_plot, load_plot, entropy_plot, domain_plot, mi_plot, log, run_config,
               inspect_btn, stop_btn, sig]
    timer.tick(poll, [watch, sig], monitor, api_visibility="private", show_progress="hidden")
    watch.change(poll, [watch, gr.State(None)], monitor, api_name="run_status", show_progress="hidden")
    save_btn.click(save_config, fields, [saved_file], api_name="save_config")
    load_file.upload(load_config, [load_file], [*fields, check_md], api_name="load_config")
    copy_btn.click(copy_from_run, [copy_run], [*fields, check_md], api_name="copy_from_run")
    def folder_choices():
        return gr.update(choices=studio.data_files())

    # The folder list is read when the folder source is opened and after each upload, so a file
    # copied in meanwhile (or just uploaded) is there without pressing ↻.
    source.change(source_visibility, [source], [g_builtin, g_upload, g_folder, g_hub], api_visibility="private").then(
        folder_choices, None, [folder_file], api_visibility="private", show_progress="hidden")
    gr.on([builtin_tasks.change, builtin_ood.change], specs_from_builtin, [builtin_tasks, builtin_ood],
          [comp["train_specs"], comp["eval_specs"]], api_name="builtin_specs")
    gr.on([upload.upload, upload_fmt.change], specs_from_upload, [upload, upload_fmt],
          [comp["train_specs"], comp["eval_specs"], preview_md], api_name="upload_data").then(
        folder_choices, None, [folder_file], api_visibility="private", show_progress="hidden")
    gr.on([folder_file.change, folder_fmt.change], specs_from_folder, [folder_file, folder_fmt],
          [comp["train_specs"], comp["eval_specs"]], api_name="folder_specs")
    folder_refresh.click(folder_choices, None, [folder_file], api_name="list_data_files")
    hub_name.submit(specs_from_hub, [hub_name], [comp["train_specs"], comp["eval_specs"]], api_name="hub_specs")
    hub_name.blur(specs_from_hub, [hub_name], [comp["train_specs"], comp["eval_specs"]], api_visibility="private")
    preview_btn.click(preview, [comp["train_specs"], preview_n], [preview_df, preview_md], api_name="preview_data")

    return SimpleNamespace(fields=fields, watch=watch, copy_run=copy_run, on_load=on_load, check_config=check_config,
                           refresh_choices=refresh_choices,
                           check_outputs=check_outputs, inspect_btn=inspect_btn, check_md=check_md,
                           method_visibility=method_visibility,
                           method_comps=[*method_comps.values(), comp["lr"], acc_routing],
                           method=comp["method"], copy_from_run=copy_from_run)


def _domain_heatmap(view: queries.RoutingView):
    return plots.usage_heatmap(view.last, view.n_experts, f"Routing by domain (last {queries.ROUTING_WINDOW} steps)",
                               "For routed methods (PT-MoE, SMoP): which expert each domain's training examples "
                               "go to.", view.subtitle())


def _mi_curve(view: queries.RoutingView):
    return plots.domain_mi_curve(view.steps, view.bits, view.max_bits, queries.ROUTING_WINDOW)


def _label(key: str) -> str:
    return {"train_specs": "training data", "eval_specs": "evaluation data", "n_experts": "experts N",
            "prompt_len": "prompt length T", "rank": "rank R", "lr": "learning rate"}.get(key, key.replace("_", " "))


def _reasons(errors: dict[str, str]) -> str:
    """The field problems as Markdown (the reasons quote user values: escaped)."""
    return "; ".join(f"{_label(k)} — {esc(v)}" for k, v in errors.items())


