"""The studio as a service, without Gradio: what the tabs (and tests, and scripts) call.

``Studio(settings, storage, jobs)`` owns what the studio holds besides its database: the job manager
(``jobs``), the caches of base models, adapters and model shapes, the bounded inspection queue and a
private scratch folder for downloads. Its methods take plain values and return plain values (or raise
``ValueError`` / the engine's and storage's errors, one line naming the problem); the tabs only turn
form widgets into arguments and results into widget updates. One path per operation: a run is
launched through the job manager's ``submit`` and stopped through its ``cancel``, whoever asks; a sweep
through ``sweep_launch``, which holds each of its runs to what a launched run must pass.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptmoe_core.config import RunConfig
from ptmoe_core.errors import PTMoEError
from storage import continuation, sweeps
from storage.sweep_spec import SweepSpec, expand, parse_seeds, point_label

from . import data_sources as ds
from . import floors, forms, queries, views
from .escaping import code, esc
from .inspection import InspectResult, rows_from_records, run_inspection, typed_examples
from .limits import limit_errors
from .settings import Settings
from .state import InspectQueue, LRUCache, gpu_wrap

log = logging.getLogger("app")

FINAL = "final"  # the final adapter, as opposed to a checkpoint's step
TYPED, DRAWN, STORED = "typed", "drawn", "stored"  # where Inspect's inputs come from
MAX_CHANGES_CHARS = 2000  # the changes typed when continuing or copying a run


@dataclass
class Checked:
    """A Train form checked: the config (None when a field is wrong), per-field messages, the base
    model's shape for the parameter counts (with a note when it could not be read), and the config the
    counts are of (the config, or, when only a field outside the method is wrong, the form's as typed)."""

    cfg: RunConfig | None
    errors: dict[str, str] = field(default_factory=dict)
    shape: Any = None
    note: str = ""
    counted: RunConfig | None = None


@dataclass
class Launched:
    run_id: int | None  # None: not launched, ``checked.errors`` says why
    checked: Checked


@dataclass
class LiveView:
    """A run as the Train tab shows it while it trains. ``curves`` and ``routing`` are None when nothing
    changed since the caller's ``signature`` (the plots need no redrawing)."""

    run: Any  # RunInfo
    note: str  # what the run is doing, when the status alone does not say
    eta_s: float | None
    log: str  # the log's tail
    signature: list[Any]  # run, step, status, evaluations: what the plots depend on
    curves: queries.Curves | None = None
    routing: queries.RoutingView | None = None
    n_experts: int | None = None  # routed methods only


@dataclass
class Comparison:
    """Runs side by side: the scores table (with the frozen model's rows when asked for) and their
    training loss and macro-F1 curves, {label: (steps, values)}."""

    header: list[str]
    body: list[list[Any]]
    losses: dict[str, tuple[list[int], list[float]]]
    evals: dict[str, tuple[list[int], list[float]]]


@dataclass
class InspectRequest:
    """What Inspect runs: a run's adapter (final or a checkpoint's step) on typed inputs, on examples drawn
    from its evaluation sets, or its stored evaluation (no generation); optionally each expert forced, a
    baseline run's answers and the frozen model's (the floor)."""

    run_id: int
    checkpoint: str | None = FINAL
    mode: str = TYPED
    text: str = ""  # typed: one input per line, ``question => gold``
    context: str = ""
    answer_type: str = "text"
    eval_set: str | None = None  # drawn: one set's name, or None for every set
    n: int = 4  # drawn: examples per set
    seed: int = 0
    stored_step: int | None = None  # stored: the evaluation's step (None: the latest)
    forced: bool = False
    baseline_id: int | None = None
    max_new_tokens: int = 24
    floor: bool = False


@dataclass
class InspectTarget:
    """What Inspect offers for one run: a Markdown line about it, the adapters to load (``(label, FINAL or
    a checkpoint's step)``, the final adapter first, then checkpoints newest first), its evaluation sets'
    names, the steps of its stored evaluations and the answer length it was trained with."""

    run: Any  # RunInfo
    description: str
    checkpoints: list[tuple[str, str]]
    eval_sets: list[str]
    stored_steps: list[int]
    max_new_tokens: int | None


class Studio:
    def __init__(self, settings: Settings, storage: Any, jobs: Any):
        if jobs is None:
            raise ValueError("the studio needs a job manager (create_context makes one)")
        self.settings = settings
        self.storage = storage  # storage.Storage
        self.jobs = jobs  # storage.JobManager: runs are queued, stopped and supervised here
        self.base_models = LRUCache(settings.model_cache_size)
        self.adapters = LRUCache(settings.model_cache_size + 1)
        self.shapes = LRUCache(16)  # model name -> (ModelShape or None, note, when read)
        self.inspect_queue = InspectQueue(settings.inspect_concurrency)
        # Files built for the browser to download (adapter zips, bundles, saved configs): a private folder
        # (mode 0700, unpredictable name) of this studio only, so no planted link redirects a write and no
        # other studio's files are cleaned up; removed by ``close``.
        self.scratch = Path(tempfile.mkdtemp(prefix="ptmoe-studio-"))

    @property
    def runs_dir(self) -> Path:
        return Path(self.storage.runs_dir)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def close(self) -> None:
        """Stop supervising (running jobs keep running; the next start reconnects to them), close the
        database and remove the scratch folder."""
        self.jobs.stop()
        self.storage.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    # ---- caches ------------------------------------------------------------------------------

    def base_model(self, name: str) -> Any:
        """The frozen base model ``name`` on the inspection device, loaded once (LRU cache)."""
        device = self.settings.device

        def load() -> Any:
            from ptmoe_core.config import ModelConfig
            from ptmoe_core.models import load_base_model

            return load_base_model(ModelConfig(name=name, device=device))

        return self.base_models.get_or_load((name, device), load)

    def model_shape(self, name: str) -> tuple[Any, str]:
        """(ModelShape or None, a note when None) of base model ``name``, cached per name; a failure is
        retried after ``data_sources.SHAPE_RETRY_S``."""
        name = (name or "").strip()
        if not name:
            return None, "name a base model"
        hit = self.shapes.get(name)
        if hit is not None and (hit[0] is not None or time.time() - hit[2] < ds.SHAPE_RETRY_S):
            return hit[0], hit[1]
        shape, note = ds.load_shape(name, self.data_dir)
        self.shapes.put(name, (shape, note, time.time()))
        return shape, note

    def scratch_dir(self, max_age_s: float = 3600.0) -> Path:
        """A new empty folder in ``scratch`` for one download (two at once never share a file); folders
        older than ``max_age_s`` go first (downloads are one-off: Gradio has copied them to its cache)."""
        self.scratch.mkdir(mode=0o700, exist_ok=True)
        now = time.time()
        for old in self.scratch.iterdir():
            if now - old.lstat().st_mtime <= max_age_s:
                continue
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        return Path(tempfile.mkdtemp(dir=self.scratch))

    # ---- launch and stop ---------------------------------------------------------------------

    def check(self, values: dict[str, Any]) -> Checked:
        """Validate Train-form ``values`` (``forms.KEYS``): the config, the data specs against the data
        folder and the base model (its shape, for the parameter counts)."""
        cfg, errors = forms.check(values, limits=self.settings.limits,
                                  spec_check=lambda spec: ds.spec_problem(spec, self.data_dir,
                                                                                 self.settings.limits))
        shape, note = None, ""
        if cfg is not None or "model" not in errors:
            shape, note = self.model_shape(str(values.get("model") or ""))
            if shape is None and note:
                errors.setdefault("model", note)
                cfg = None if errors else cfg
        counted = cfg
        if counted is None and not any(k in errors for k in ("method", *forms.METHOD_KEYS)):
            try:  # counts still make sense when only e.g. the data is wrong
                counted = forms.config_from_values(values)
                counted.method.validate()
            except Exception:
                counted = None
        return Checked(cfg, errors, shape, note, counted)

    def launch(self, values: dict[str, Any]) -> Launched:
        """Check ``values`` and queue the run (data specs and model resolved against the data folder);
        a full demo queue is reported on the name field."""
        checked = self.check(values)
        full = queries.queue_full(self.storage, self.settings.limits) if not checked.errors else None
        if full:
            checked.errors["name"] = full
        cfg = checked.cfg
        if checked.errors or cfg is None:
            return Launched(None, checked)
        return Launched(self.jobs.submit(self.resolve(cfg)), checked)

    def resolve(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` with its data specs and model name as the job will read them (files inside the data
        folder): what launch queues, and a sweep's base."""
        cfg.data.train = [ds.resolve_spec(s, self.data_dir) for s in cfg.data.train]
        cfg.data.eval = [ds.resolve_spec(s, self.data_dir) for s in cfg.data.eval]
        cfg.model.name = ds.resolve_model(cfg.model.name, self.data_dir)
        return cfg

    def stop(self, run_id: int) -> Any:
        """Ask run ``run_id`` to stop (it saves a checkpoint at the end of its step); its ``RunInfo``."""
        return self.jobs.cancel(run_id)

    # ---- a run's live view ------------------------------------------------------------------

    def live(self, run_id: int, last_signature: Any = None, log_lines: int = 60) -> LiveView | None:
        """Progress, notes, log tail and (when changed since ``last_signature``) the curves of run
        ``run_id``; None when the run is gone."""
        st = self.storage
        try:
            r = st.get_run(run_id)
        except Exception:  # deleted meanwhile
            return None
        now = time.time()
        note = ""
        if r.status == "FAILED":
            note = f"Failed: {r.error_message or 'see the log'}"
        elif r.status == "KILLED":
            note = r.error_message or "stopped"
        elif r.status == "QUEUED":
            note = "Waiting for the running job to finish." if st.list_runs(status="RUNNING") else "Starting the job…"
        elif r.cancel_requested:
            note = "Stop requested: finishing the current step and saving a checkpoint…"
        elif r.status == "RUNNING" and r.step == 0:
            note = "Loading the model and data…"
        times: list[float] = []
        if r.status == "RUNNING":
            loss = st.metric_history(run_id, keys=["loss"]).get("loss")
            times = loss.timestamps[-50:] if loss else []
        view = LiveView(run=r, note=note, eta_s=queries.eta_seconds(r, now, times), log=st.log_tail(run_id, log_lines),
                        signature=[run_id, r.step, str(r.status), len(st.evaluations(run_id))])
        if view.signature != last_signature:
            view.curves = queries.curves(st, run_id)
            view.routing = queries.routing_view(view.curves.routing)
            view.n_experts = (r.config.get("method") or {}).get("n_experts") if r.method in forms.ROUTED else None
        return view

    # ---- inspect -----------------------------------------------------------------------------

    def eval_set_names(self, run: Any) -> list[str]:
        """The names of ``run``'s evaluation sets as its data specs tell them (no data is loaded)."""
        from ptmoe_core.data.mixture import run_eval_set_names

        return run_eval_set_names(RunConfig.from_dict(run.config).data)

    def eval_examples(self, run: Any, which: str | None, n: int, seed: int) -> list[dict[str, Any]]:
        """``n`` seeded examples of each of ``run``'s evaluation sets (``which``: one set's name, None: all)."""
        from ptmoe_core.data.mixture import run_eval_sets, take

        cfg = RunConfig.from_dict(run.config)
        # Stored specs (an imported bundle's, any run's) pass the typed-spec rule before any data is read.
        ds.check_stored_specs(cfg, self.data_dir, self.settings.limits, "the run's config")
        sets = run_eval_sets(cfg.data, capped=False)
        if not sets:
            raise ValueError("this run has no evaluation sets")
        out: list[dict[str, Any]] = []
        for name in list(sets) if which is None else [which]:
            if name not in sets:
                raise ValueError(f"no evaluation set {name!r}; the run has {', '.join(sets)}")
            out.extend(take(sets[name], n, seed, name).to_list())
        return out

    def inspect_target(self, run_id: int) -> InspectTarget:
        """What Inspect offers for run ``run_id`` (its name and data escaped in the description)."""
        from ptmoe_core.methods import names as method_names

        st = self.storage
        r = st.get_run(run_id)
        cks = [(f"checkpoint at step {c.step}", str(c.step)) for c in reversed(st.checkpoints(run_id))
               if c.exists and c.step is not None]  # newest first
        m = r.config.get("method", {})
        routed = r.method in method_names(routed=True)
        desc = f"**#{r.id} {views.esc(r.name)}** · {r.method}"
        if routed:
            desc += f" with N={m.get('n_experts')} experts, T={m.get('prompt_len')}"
        desc += f" · base {code(r.base_model)} · data {code(', '.join(r.data_specs))}"
        if r.trainable_params:
            desc += f" · {r.trainable_params:,} trainable parameters"
        if not routed:
            desc += "\n\n_This method has no router: the table shows answers only._"
        try:
            names = self.eval_set_names(r)
        except Exception:  # a config the engine no longer reads: Inspect still shows its stored evaluations
            names = []
        return InspectTarget(run=r, description=desc,
                             checkpoints=([("final adapter", FINAL)] if r.adapter_path else []) + cks,
                             eval_sets=names, stored_steps=st.routing_steps(run_id),
                             max_new_tokens=(r.config.get("train") or {}).get("max_new_tokens"))

    def first_request(self) -> InspectRequest | None:
        """What a first visit shows while the studio holds only gallery runs: a gallery PT-MoE run's stored
        evaluation (the studio preset's), the other PT-MoE gallery run (the routed preset's; a gallery made
        before it holds the paper-settings run) as the baseline, and the frozen model's answers; None once
        the user has runs of their own, or without a gallery."""
        from storage.bundles import GALLERY, gallery_roles

        st = self.storage
        if any(r.experiment != GALLERY for r in st.list_runs()):
            return None
        roles = gallery_roles(st)
        other = roles.get("ptmoe-routed") or roles.get("ptmoe-paper")
        main_id = roles.get("ptmoe-studio") or other
        if main_id is None:
            return None
        base_id = other if main_id != other else None
        return InspectRequest(run_id=main_id, mode=STORED, baseline_id=base_id, floor=True)

    def adapter_path(self, run: Any, which: str | None) -> str:
        """The folder of ``run``'s final adapter (``which`` FINAL / None) or of its checkpoint at step ``which``."""
        if which in (None, "", FINAL):
            if not run.adapter_path:
                raise ValueError(f"run #{run.id} has no final adapter (status {run.status}); pick a checkpoint")
            return run.adapter_path
        for c in self.storage.checkpoints(run.id):
            if str(c.step) == str(which):
                if not c.exists:
                    raise ValueError(f"checkpoint of step {c.step} was deleted from disk")
                return c.path
        raise ValueError(f"run #{run.id} has no checkpoint at step {which}")

    def best_available(self, run: Any) -> str:
        """The final adapter, else the latest checkpoint (a stopped run)."""
        if run.adapter_path:
            return FINAL
        present = [c for c in self.storage.checkpoints(run.id) if c.exists and c.step is not None]
        if not present:
            raise ValueError(f"run #{run.id} has neither an adapter nor a checkpoint to load")
        return str(present[-1].step)

    def adapter(self, path: str, model_name: str) -> Any:
        """The adapter in ``path`` (inside the runs folder) on the cached base model, loaded once per
        version of its weights (LRU cache)."""
        from ptmoe_core.adapter import WEIGHTS_NAME
        from ptmoe_core.api import load

        p = Path(path)
        if not ds.inside(p, self.runs_dir):
            raise ValueError(f"{p} is outside the runs folder {self.runs_dir}; the studio does not read it")
        stamp = (p / WEIGHTS_NAME).stat().st_mtime if (p / WEIGHTS_NAME).exists() else 0
        return self.adapters.get_or_load((str(p.resolve()), stamp),
                                             lambda: load(p, base=self.base_model(model_name)))

    def stored(self, req: InspectRequest) -> InspectResult:
        """The routing the job recorded at an evaluation (no generation), with the baseline run's and
        the frozen model's answers to the same questions when asked for."""
        st = self.storage
        r = st.get_run(req.run_id)
        steps = st.routing_steps(r.id)
        step = req.stored_step if req.stored_step is not None else (steps[-1] if steps else None)
        recs = st.routing_records(r.id, step=step) if step is not None else []
        if not recs:
            raise ValueError(f"run #{r.id} has no stored evaluation records")
        n_exp = max((len(x.probs) for x in recs if x.probs), default=0)
        rows = rows_from_records(recs)
        base_label = None
        if req.baseline_id is not None:
            b = st.get_run(req.baseline_id)
            base_label = f"#{b.id} {b.name} ({b.method})"
            if not floors.attach(rows, st.routing_records(b.id), "baseline", base_label):
                raise ValueError(f"run #{b.id} has no stored answers to these questions (another evaluation set?)")
        if req.floor:
            floors.attach(rows, floors.floor_of(self, r)[1].records, "floor", floors.FROZEN_LABEL)
        return InspectResult(rows=rows, n_experts=n_exp, method=r.method, baseline_label=base_label,
                             label=f"{self._label(r, req)} · stored evaluation at step {step}")

    def inspect(self, req: InspectRequest, progress: Callable[[float, str], None] | None = None) -> InspectResult:
        """Inspect as asked: the stored evaluation directly, generation through the bounded inspection
        queue (``progress(fraction, what)`` follows it)."""
        if req.mode == STORED:
            return self.stored(req)
        return self.inspect_queue.run(lambda: gpu_wrap(self.generate)(req, progress))

    def generate(self, req: InspectRequest, progress: Callable[[float, str], None] | None = None) -> InspectResult:
        """Generate for the request's inputs now (callers go through ``inspect``, which queues)."""
        from ptmoe_core.data.formatting import FormatConfig
        from ptmoe_core.floor import frozen_adapter

        st = self.storage
        r = st.get_run(req.run_id)
        cfg = RunConfig.from_dict(r.config)
        if req.mode == DRAWN:
            examples = self.eval_examples(r, req.eval_set, req.n, req.seed)
        else:
            examples = typed_examples(req.text, req.context, req.answer_type or "text")
            if not examples:
                raise ValueError("type at least one input (one per line)")
        adapter = self.adapter(self.adapter_path(r, req.checkpoint), r.base_model)
        base_adapter, base_fmt, base_label = None, None, None
        if req.baseline_id is not None:
            b = st.get_run(req.baseline_id)
            base_adapter = self.adapter(self.adapter_path(b, self.best_available(b)), b.base_model)
            base_fmt = FormatConfig.from_data_config(RunConfig.from_dict(b.config).data)
            base_label = f"#{b.id} {b.name} ({b.method})"
        frozen = frozen_adapter(self.base_model(r.base_model)) if req.floor else None
        return run_inspection(adapter, examples, FormatConfig.from_data_config(cfg.data),
                              max_new_tokens=req.max_new_tokens, batch_size=self.settings.inspect_batch_size,
                              forced=req.forced, baseline=base_adapter, baseline_fmt=base_fmt,
                              baseline_label=base_label, floor=frozen, label=self._label(r, req), progress=progress)

    @staticmethod
    def _label(r: Any, req: InspectRequest) -> str:
        return f"run #{r.id} {r.name}" + (f" @ step {req.checkpoint}" if req.checkpoint not in (None, "", FINAL) else "")

    # ---- compare -----------------------------------------------------------------------------

    def compare(self, run_ids: list[int], floor: bool = False) -> Comparison:
        st = self.storage
        runs = [st.get_run(i) for i in run_ids]
        extra = floors.floor_rows(self, runs) if floor else []
        header, body = queries.scores_table(st, run_ids, extra)
        losses, evals = {}, {}
        for r in runs:
            hist = st.metric_history(r.id, keys=["loss", "eval/macro/f1"])
            label = f"#{r.id} {r.name} ({r.method})"
            if "loss" in hist:
                losses[label] = (hist["loss"].steps, hist["loss"].values)
            if "eval/macro/f1" in hist:
                evals[label] = (hist["eval/macro/f1"].steps, hist["eval/macro/f1"].values)
        return Comparison(header, body, losses, evals)

    # ---- one run: details, rename, delete ----------------------------------------------------

    def details(self, run_id: int | None) -> str:
        """Run ``run_id`` in a few Markdown lines (status, method, model, data, progress, adapter,
        continuations, where it came from, its error); what it quotes of users is escaped."""
        if run_id is None:
            return "_No run selected._"
        st = self.storage
        r = st.get_run(run_id)
        lines = [f"{views.status_badge(str(r.status))} **#{r.id} {views.esc(r.name)}** · {r.method} on "
                 f"{code(r.base_model)} · data {code(', '.join(r.data_specs))}",
                 f"step {r.step}/{r.total_steps or '?'} · duration {views.fmt_duration(r.duration_s(time.time()))}"
                 + (f" · {r.trainable_params:,} trainable parameters" if r.trainable_params else "")]
        if r.adapter_path:
            lines.append(f"adapter: {code(r.adapter_path)}")
        note = continued_note(st.params(run_id))
        if note:
            lines.append(note)
        if r.reason == "imported":
            lines.append(f"imported from a run bundle (experiment “{views.esc(r.experiment)}”)")
        if r.error_message:
            lines.append(f"**{'Stopped' if r.status == 'KILLED' else 'Error'}:** {views.esc(r.error_message)}")
        return "\n\n".join(lines)

    def rename(self, run_id: int, name: str) -> Any:
        """Give run ``run_id`` a new name (storage refuses an empty one or one over 200 characters); its
        ``RunInfo``."""
        return self.storage.rename_run(run_id, name)

    def deletable(self, run_id: int) -> Any:
        """Run ``run_id``'s ``RunInfo`` when it may be deleted here, else ``ValueError`` saying why: in demo
        mode nobody without a login deletes (visitors share the runs) and gallery runs are never deleted
        (``Settings.delete_refusal``); a running run is stopped first."""
        r = self.storage.get_run(run_id)
        why = self.settings.delete_refusal(r.experiment)
        if why:
            raise ValueError(f"Run #{r.id}: {why}.")
        if r.status == "RUNNING":
            raise ValueError(f"Run #{r.id} is running: stop it first (Train tab), then delete it.")
        return r

    def delete(self, run_id: int) -> list[str]:
        """Delete run ``run_id`` with its folder (checkpoints, adapter, log) when ``deletable``; the paths
        removed from disk."""
        self.deletable(run_id)
        return self.storage.delete_run(run_id, delete_files=True)

    # ---- continue a run, or copy it to a new one ----------------------------------------------

    def over_limits(self, cfg: RunConfig) -> str | None:
        """Why a shared studio (demo mode) does not queue ``cfg`` (a value over its limits, a full
        queue), or None."""
        lim = self.settings.limits
        errors = limit_errors(cfg, lim) if lim is not None else {}
        return next(iter(errors.values()), None) or queries.queue_full(self.storage, lim)

    def continue_run(self, run_id: int, more_steps: Any, changes: str | None) -> tuple[int, Any]:
        """Re-queue run ``run_id`` (the same run) from its last checkpoint for ``more_steps`` more, with the
        ``changes`` resuming allows (``KEY=VALUE``, see ``parse_changes``): (the step it goes on from, its
        ``RunInfo``). Raises, one line, on what the engine, the lifecycle or the limits refuse."""
        from ptmoe_core.resume import continue_config

        st = self.storage
        more = int(more_steps or 0)
        start = continuation.continue_point(st, run_id)
        cfg = continue_config(RunConfig.from_dict(st.get_run(run_id).config), start, more, parse_changes(changes))
        limit = self.over_limits(cfg)
        if limit:
            raise ValueError(limit)
        return start, continuation.continue_run(st, run_id, cfg, start)

    def copy_run(self, run_id: int, changes: str | None) -> tuple[int, RunConfig]:
        """Queue a new run (trained from scratch, same experiment) with run ``run_id``'s configuration and
        any ``changes``: (its id, its config)."""
        r = self.storage.get_run(run_id)
        cfg = RunConfig.from_overrides(r.config, parse_changes(changes))
        cfg.name = f"{r.name} (copy)" if cfg.name == r.name else cfg.name
        limit = self.over_limits(cfg)
        if limit:
            raise ValueError(limit)
        return self.jobs.submit(cfg, experiment=r.experiment), cfg

    def push(self, run_id: int, repo: str, token: str, private: bool, endpoint: str | None = None) -> str:
        """Push run ``run_id``'s adapter to the Hub repository ``repo`` with ``token`` (used for this upload
        only: never stored, logged or echoed); one Markdown line saying what happened (``push_message``)."""
        return push_message(self.storage, self.runs_dir, run_id, repo, token, private, endpoint)

    # ---- the Train form's configuration: save, load, copy from a run --------------------------

    def save_config(self, values: Mapping[str, Any]) -> Path:
        """The Train form's ``values`` as a YAML configuration file in a fresh scratch folder (not
        validated: a half-filled form can be saved too; a malformed value raises naming its field)."""
        cfg = forms.config_from_values(values)
        out = self.scratch_dir() / f"{safe_name(cfg.name, 60)}.yaml"
        out.write_text(forms.config_yaml(cfg), encoding="utf-8")
        return out

    def load_config(self, path: str | Path) -> dict[str, Any]:
        """Train-form values (``forms.KEYS``) from a YAML / JSON configuration file; a malformed, empty,
        oversized or invalid file raises ``ConfigError`` naming the problem."""
        return forms.values_from_config(RunConfig.from_file(path))

    def run_values(self, run_id: int) -> tuple[Any, dict[str, Any]]:
        """(``RunInfo``, Train-form values) of run ``run_id``'s configuration, named ``NAME-copy``."""
        r = self.storage.get_run(run_id)
        values = forms.values_from_config(r.config)
        values["name"] = f"{r.name}-copy"
        return r, values

    # ---- data sources: uploads, the data folder, previews --------------------------------------

    def data_files(self) -> list[str]:
        """Data files in the data folder, relative to it."""
        return ds.list_data_files(self.data_dir)

    def upload(self, path: str | Path, fmt: str) -> tuple[str, Path]:
        """Keep an uploaded file in the data folder's uploads/ (size, emptiness and total checked; old ones
        pruned in demo mode): (its data spec in format ``fmt``, its path relative to the data folder)."""
        s = self.settings
        saved = ds.save_upload(path, s.upload_dir, s.max_upload_mb, s.upload_ttl_h, s.max_uploads_mb)
        rel = saved.relative_to(self.data_dir)
        return ds.file_spec(fmt, rel), rel

    def folder_spec(self, rel: str, fmt: str) -> str:
        """The data spec of file ``rel`` of the data folder (``ValueError`` for anything outside it)."""
        return ds.file_spec(fmt, ds.data_file(self.data_dir, rel))

    def preview(self, specs: str, n: int) -> tuple[list[list[Any]], str]:
        """The first ``n`` rows of each comma-separated data spec (``data_sources.PREVIEW_COLUMNS``) and a
        note; every spec passes the studio's spec rule first, and no more of a file is read than could be
        uploaded."""
        items = [x.strip() for x in (specs or "").split(",") if x.strip()]
        if not items:
            raise ValueError("Choose the data first.")
        for spec in items:
            why = ds.spec_problem(spec, self.data_dir, self.settings.limits)
            if why:
                raise ValueError(f"{spec}: {why}")
        return ds.preview_rows(items, n, self.data_dir, max_bytes=self.settings.max_data_bytes)

    # ---- export and import -------------------------------------------------------------------

    def adapter_zip(self, run_id: int) -> Path:
        """The final adapter of run ``run_id`` as a zip in a fresh scratch folder."""
        import shutil

        r = self.storage.get_run(run_id)
        if not r.adapter_path or not Path(r.adapter_path).is_dir():
            raise ValueError(f"Run #{run_id} has no adapter yet (status {r.status}).")
        if not ds.inside(r.adapter_path, self.runs_dir):
            raise ValueError(f"The adapter of run #{run_id} lies outside the runs folder; not serving it.")
        stem = self.scratch_dir() / f"run{run_id}-{safe_name(r.name)}-adapter"
        return Path(shutil.make_archive(str(stem), "zip", root_dir=r.adapter_path))

    def export(self, run_id: int) -> Path:
        """Run ``run_id`` as a bundle file (``storage.bundles.export_run``) in a fresh scratch folder."""
        from ptmoe_core.bundle import SUFFIX
        from storage.bundles import export_run

        r = self.storage.get_run(run_id)
        return export_run(self.storage, run_id, self.scratch_dir() / f"run{run_id}-{safe_name(r.name)}{SUFFIX}")

    def import_bundle(self, path: str | Path) -> Any:
        """Add the run of the bundle file ``path`` (``storage.bundles.Imported``: a bundle already here
        is found, not imported twice)."""
        from storage.bundles import import_bundle

        return import_bundle(self.storage, Path(path))

    # ---- sweeps: a grid of configurations over seeds -----------------------------------------

    def sweep_launch(self, cfg: RunConfig, grid: Mapping[str, list[Any]], seeds: str | list[int],
                     experiment: str = "sweeps") -> Any:
        """Queue a sweep over ``grid`` ({config key: values}) and ``seeds`` (``"0, 1, 2"`` or a list) with
        ``cfg`` (the Train form's config, checked and resolved: ``check``, ``resolve``) as its base; its
        ``storage.sweeps.SweepLaunch``. Every run passes what a launched run passes (data inside the data
        folder; in demo mode the limits, counting the sweep's runs against the queue) and the whole sweep
        is refused in one line (``SweepError`` / ``ValueError``) before anything is queued."""
        grid = {k: [self._resolve_value(k, v) for v in values] for k, values in grid.items()}
        spec = SweepSpec(sweep_base(cfg, grid), grid, parse_seeds(seeds), (experiment or "sweeps").strip() or "sweeps",
                         cfg.name)
        runs = expand(spec)  # one line naming the key and value at fault, nothing queued
        lim = self.settings.limits
        for run in runs:
            what = f"grid point {point_label(run.grid_point)}"
            ds.check_stored_specs(run.config, self.data_dir, lim, what)
            over = limit_errors(run.config, lim) if lim is not None else {}
            if over:
                raise ValueError(f"{what}: {next(iter(over.values()))}")
        if lim is not None:
            waiting = len(self.storage.list_runs(status="QUEUED"))
            if waiting + len(runs) > lim.queued_runs:
                raise ValueError(f"the sweep has {len(runs)} runs and {waiting} are already waiting; demo mode "
                                 f"queues at most {lim.queued_runs}")
        return sweeps.launch_sweep(self.storage, spec, self.jobs, runs)

    def _resolve_value(self, key: str, value: Any) -> Any:
        """A grid value as ``resolve`` would make it (data files and local models inside the data folder)."""
        if key in ("data.train", "data.eval") and isinstance(value, str):
            return ds.resolve_spec(value, self.data_dir)
        if key == "model.name" and isinstance(value, str):
            return ds.resolve_model(value, self.data_dir)
        return value

    def sweep_list(self) -> list[Any]:
        """Every sweep (``SweepInfo``), newest first."""
        return self.storage.list_sweeps()

    def sweep(self, sweep_id: int) -> Any:
        """Sweep ``sweep_id``'s ``SweepInfo`` (``StorageError`` when it does not exist)."""
        return self.storage.get_sweep(sweep_id)

    def sweep_summary(self, sweep_id: int) -> sweeps.SweepSummary:
        """Sweep ``sweep_id``'s grid points with their seeds aggregated (``storage.sweeps.summarize``)."""
        return sweeps.summarize(self.storage, sweep_id)

    def sweep_compare(self, sweep_id: int, a: str, b: str) -> sweeps.PairedComparison | None:
        """Grid point ``b`` against ``a`` of sweep ``sweep_id``, paired by seed and question; None when
        nothing pairs (yet)."""
        return sweeps.compare_points(self.storage, self.sweep_summary(sweep_id), a, b)

    def sweep_cancel(self, sweep_id: int) -> list[Any]:
        """Stop every queued or running run of sweep ``sweep_id``; the runs as they are after the request."""
        return sweeps.cancel_sweep(self.storage, sweep_id, self.jobs)

    def sweep_resume(self, sweep_id: int) -> list[int]:
        """Queue again the grid points × seeds of sweep ``sweep_id`` that failed or were stopped; the new
        run ids (none: nothing was missing). A shared studio checks its queue as for a launch."""
        full = queries.queue_full(self.storage, self.settings.limits)
        if full:
            raise ValueError(full)
        return sweeps.resume_sweep(self.storage, sweep_id, self.jobs)

    def sweep_delete(self, sweep_id: int) -> list[str]:
        """Delete sweep ``sweep_id`` (its runs have all ended) with its runs and their folders; the paths
        removed. Demo mode deletes nothing for visitors, as for a run."""
        why = self.settings.delete_refusal(self.sweep(sweep_id).experiment)
        if why:
            raise ValueError(f"Sweep #{sweep_id}: {why}.")
        return sweeps.delete_sweep(self.storage, sweep_id)


def push_message(storage: Any, runs_dir: Path, run_id: int, repo: str, token: str, private: bool,
                 endpoint: str | None = None) -> str:
    """Push run ``run_id``'s adapter to ``repo``; one line (Markdown, escaped) saying what happened."""
    from ptmoe_core.hub import push

    repo, token = (repo or "").strip(), (token or "").strip()
    r = storage.get_run(run_id)
    if not r.adapter_path or not Path(r.adapter_path).is_dir():
        return f"✗ Run #{run_id} has no adapter yet (status {r.status}); nothing pushed."
    if not ds.inside(r.adapter_path, runs_dir):
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


def sweep_base(cfg: RunConfig, grid: Mapping[str, Any]) -> dict[str, Any]:
    """The form's configuration as a sweep's base; with ``method.preset`` swept, only the keys the
    grid or the method name give stay, so each preset fills the rest (as a config file would)."""
    base = copy.deepcopy(cfg.to_dict())
    if "method.preset" in grid:
        keep = {"method"} | {k.split(".", 1)[1] for k in grid if k.startswith("method.")}
        base["method"] = {k: v for k, v in base["method"].items() if k in keep}
    return base


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


def continued_note(params: Mapping[str, str]) -> str:
    """What a run's record says about its continuations ('' if none)."""
    n = continuation.continuation_count(params)
    if not n:
        return ""
    steps = ", ".join(f"from step {params.get(f'continued.{i}.from_step', '?')} to {params.get(f'continued.{i}.steps', '?')}"
                      for i in range(1, n + 1))
    return f"continued {n} time{'s' if n > 1 else ''}: {steps}"


def safe_name(name: str, limit: int = 40) -> str:
    """``name`` as a short file-name part."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:limit] or "run"
