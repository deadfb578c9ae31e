"""Runs tab: every run in a filterable table; overlay curves and compare scores of several (with the
frozen model's as the floor); rename, delete (with confirmation, files too), download the adapter of
one, export a run as a bundle and import one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from ptmoe_core.methods import NAMES
from storage.bundles import GALLERY

from . import plots, queries, run_actions, sweep_view, views
from .escaping import code
from .state import AppContext
from .ui import friendly, require_run_id

STATUSES = ["QUEUED", "RUNNING", "FINISHED", "FAILED", "KILLED"]
ANY = "any"


def build(ctx: AppContext) -> SimpleNamespace:
    st = ctx.storage
    studio = ctx.studio

    gr.Markdown("Every run in this studio's database. Click a row to select it; pick several runs below to "
                "overlay their curves and compare their final scores.")
    with gr.Row():
        f_status = gr.Dropdown([ANY, *STATUSES], value=ANY, label="Status", scale=1)
        f_method = gr.Dropdown([ANY, *NAMES], value=ANY, label="Method", scale=1)
        f_model = gr.Textbox(label="Model contains", placeholder="e.g. smollm2", scale=2)
        f_search = gr.Textbox(label="Name contains", placeholder="search run names", scale=2)
        f_gallery = gr.Checkbox(True, label="show gallery runs", scale=1, elem_id="pt-show-gallery",
                                info="The example runs shipped with the studio.")
        refresh = gr.Button("↻ Refresh", scale=0, min_width=110)
    table = gr.Dataframe(headers=queries.RUN_COLUMNS, value=[], interactive=False, wrap=True, max_height=360,
                         label="Runs", elem_id="pt-runs-table", show_search="none")

    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            gr.Markdown("#### Selected run")
            sel = gr.Dropdown([], value=None, allow_custom_value=True, label="Run", info="Click a table row or pick here.",
                              elem_id="pt-runs-selected")
            details = gr.Markdown("", elem_id="pt-run-details")
            with gr.Row():
                new_name = gr.Textbox(label="New name", scale=3)
                rename_btn = gr.Button("Rename", scale=1, min_width=90)
            with gr.Row():
                inspect_btn = gr.Button("Inspect this run", variant="primary", size="sm")
                copy_btn = gr.Button("Copy settings to Train", size="sm")
            with gr.Row():
                download_btn = gr.Button("Download adapter (.zip)", size="sm")
                export_btn = gr.Button("Export run (.ptmoe.zip)", size="sm", elem_id="pt-export")
                delete_btn = gr.Button("Delete…", variant="stop", size="sm")
            download_file = gr.File(label="Download", visible=False, interactive=False)
            import_btn = gr.UploadButton("Import a run bundle (.ptmoe.zip)…", file_types=[".zip"], file_count="single",
                                         size="sm", elem_id="pt-import")
            with gr.Column(visible=False, variant="panel") as confirm_box:
                confirm_md = gr.Markdown("")
                with gr.Row():
                    confirm_btn = gr.Button("Yes, delete run and files", variant="stop", size="sm",
                                            elem_id="pt-confirm-delete")
                    cancel_btn = gr.Button("Cancel", size="sm")
            action_md = gr.Markdown("", elem_id="pt-runs-action")
            run_actions.build_continue(ctx, sel, "pt-runs")
            run_actions.build_push(ctx, sel, action_md)
        with gr.Column(scale=2):
            gr.Markdown("#### Compare")
            compare = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True, label="Runs to compare",
                                  info="Their loss and evaluation curves are overlaid; the table shows final "
                                       "scores per data set with parameter counts.", elem_id="pt-compare")
            with_floor = gr.Checkbox(False, label="Include the frozen model (no adapter)", elem_id="pt-compare-floor",
                                     info="The base model's own scores on the same evaluation sets: the floor "
                                          "(computed once per model and evaluation sets, then cached).")
            scores_html = gr.HTML(queries.scores_table_html([], []), elem_id="pt-scores")
            with gr.Row():
                loss_plot = gr.Plot(plots.empty("Training loss", "Select runs to compare."), show_label=False)
                eval_plot = gr.Plot(plots.empty("Evaluation (macro F1)", "Select runs to compare."), show_label=False)

    sweeps = sweep_view.build_view(ctx)

    # ---- handlers ----------------------------------------------------------------------------

    def _hidden(show_gallery: bool) -> tuple[str, ...]:
        return () if show_gallery else (GALLERY,)

    @friendly
    def list_runs(status: str, method: str, model: str, search: str, current: list[Any] | None = None,
                  show_gallery: bool = True):
        hide = _hidden(show_gallery)
        rows = queries.run_rows(st, status=None if status in (None, ANY) else status,
                                method=None if method in (None, ANY) else method, search=search, model=model,
                                hide_experiments=hide)
        ch = queries.run_choices(st, hide_experiments=hide)
        ids = {c[1] for c in ch}
        cur = [queries.parse_run_id(x) for x in (current or [])]
        keep = [i for i in cur if i in ids]
        # Set the comparison only when a run in it is gone (setting it re-runs the comparison).
        return rows, gr.update(choices=ch), gr.update(choices=ch, value=keep) if keep != cur else gr.update(choices=ch)

    @friendly
    def select_run(run: Any):
        rid = queries.parse_run_id(run)
        name = st.get_run(rid).name if rid is not None else ""
        return studio.details(rid), gr.update(value=name), gr.update(visible=False), gr.update(visible=False), ""

    @friendly
    def pick_row(rows: Any, current: list[Any] | None, evt: gr.SelectData):
        """A click on the table selects that row's run (and adds it to the comparison)."""
        idx = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        data = rows.values.tolist() if hasattr(rows, "values") else rows
        rid = int(data[idx][0])
        cur = [i for i in (queries.parse_run_id(x) for x in (current or [])) if i is not None]
        if rid not in cur:
            cur.append(rid)
        return gr.update(value=rid), gr.update(value=cur)

    @friendly
    def compare_runs(selected: list[Any] | None, floor: bool = False):
        ids = [i for i in (queries.parse_run_id(x) for x in (selected or [])) if i is not None]
        c = studio.compare(ids, floor)
        return (queries.scores_table_html(c.header, c.body),
                plots.overlay_curves(c.losses, "Training loss (smoothed)", "loss"),
                plots.overlay_curves(c.evals, "Evaluation (macro F1)", "F1", smooth=False))

    @friendly
    def rename_run(run: Any, name: str):
        rid = require_run_id(run)
        r = studio.rename(rid, name)
        return f"Renamed run #{rid} to **{views.esc(r.name)}**.", studio.details(rid)

    @friendly
    def ask_delete(run: Any):
        r = studio.deletable(require_run_id(run))
        where = f" and its folder {code(r.output_dir)}" if r.output_dir else ""
        return (gr.update(visible=True),
                f"⚠ Delete run **#{r.id} {views.esc(r.name)}**{where} (checkpoints, adapter, log)? This cannot be undone.")

    @friendly
    def delete_run(run: Any, status: str, method: str, model: str, search: str, current: list[Any] | None,
                   show_gallery: bool = True):
        rid = require_run_id(run)
        removed = studio.delete(rid)
        msg = f"Deleted run #{rid}" + (f" and {len(removed)} path(s) on disk." if removed else ".")
        rows, ch_upd, cmp_upd = list_runs(status, method, model, search, [c for c in current or [] if c != rid],
                                          show_gallery)
        return (msg, gr.update(visible=False), rows, gr.update(choices=ch_upd["choices"], value=None), cmp_upd,
                studio.details(None))

    @friendly
    def download_adapter(run: Any):
        rid = require_run_id(run)
        path = studio.adapter_zip(rid)
        return gr.update(value=str(path), visible=True), f"Adapter of run #{rid} ready to download."

    @friendly
    def export_bundle(run: Any):
        rid = require_run_id(run)
        path = studio.export(rid)
        return (gr.update(value=str(path), visible=True),
                f"Run #{rid} exported ({path.stat().st_size / 1024:.0f} KB): config, adapter, curves, evaluations "
                "with routing. Another studio imports it with “Import a run bundle”.")

    @friendly
    def import_upload(file: Any, status: str, method: str, model: str, search: str, current: list[Any] | None,
                      show_gallery: bool = True):
        if file is None:
            raise gr.Error("Choose a .ptmoe.zip file to import.")
        path = Path(file if isinstance(file, str) else getattr(file, "name", file))
        res = studio.import_bundle(path)
        msg = (f"Imported **{views.esc(res.name)}** as run #{res.run_id} (experiment “imported”)." if res.created
               else f"This bundle is already here as run #{res.run_id} ({views.esc(res.name)}); nothing imported.")
        rows, ch_upd, cmp_upd = list_runs(status, method, model, search, current, show_gallery)
        return msg, rows, gr.update(choices=ch_upd["choices"], value=res.run_id), cmp_upd

    filters = [f_status, f_method, f_model, f_search, compare, f_gallery]
    list_outputs = [table, sel, compare]
    refresh.click(list_runs, filters, list_outputs, api_name="list_runs")
    for f in (f_status, f_method, f_gallery):
        f.change(list_runs, filters, list_outputs, api_visibility="private")
    for f in (f_model, f_search):
        f.submit(list_runs, filters, list_outputs, api_visibility="private")
    table.select(pick_row, [table, compare], [sel, compare], api_visibility="private")
    sel.change(select_run, [sel], [details, new_name, confirm_box, download_file, action_md], api_name="run_details")
    compare.change(compare_runs, [compare, with_floor], [scores_html, loss_plot, eval_plot], api_name="compare_runs")
    with_floor.change(compare_runs, [compare, with_floor], [scores_html, loss_plot, eval_plot],
                      api_visibility="private")
    rename_btn.click(rename_run, [sel, new_name], [action_md, details], api_name="rename_run").then(
        list_runs, filters, list_outputs, api_visibility="private")
    delete_btn.click(ask_delete, [sel], [confirm_box, confirm_md], api_visibility="private")
    cancel_btn.click(lambda: gr.update(visible=False), None, [confirm_box], api_visibility="private")
    confirm_btn.click(delete_run, [sel, *filters], [action_md, confirm_box, table, sel, compare, details],
                      api_name="delete_run")
    download_btn.click(download_adapter, [sel], [download_file, action_md], api_name="download_adapter")
    export_btn.click(export_bundle, [sel], [download_file, action_md], api_name="export_run")
    import_btn.upload(import_upload, [import_btn, *filters], [action_md, table, sel, compare],
                      api_name="import_bundle")

    return SimpleNamespace(table=table, sel=sel, compare=compare, filters=filters, list_outputs=list_outputs,
                           list_runs=list_runs, inspect_btn=inspect_btn, copy_btn=copy_btn, sweeps=sweeps)

