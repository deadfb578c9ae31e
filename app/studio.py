"""The studio as a service, without Gradio: what the tabs (and tests, and scripts) call.

``Studio(ctx)`` works on the ``AppContext`` it is given (settings, storage, the job manager, the
model caches and the inspection queue) and returns plain values; the tabs only turn form widgets into
arguments and results into widget updates. One path per operation: a run is launched through the job
manager's ``submit`` and stopped through its ``cancel``, whoever asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ptmoe_core.config import RunConfig

from . import data_sources as ds
from . import forms, queries
from .state import AppContext


@dataclass
class Checked:
    """A Train form checked: the config (None when a field is wrong), per-field messages, and the base
    model's shape for the parameter counts (with a note when it could not be read)."""

    cfg: RunConfig | None
    errors: dict[str, str] = field(default_factory=dict)
    shape: Any = None
    note: str = ""


@dataclass
class Launched:
    run_id: int | None  # None: not launched, ``checked.errors`` says why
    checked: Checked


class Studio:
    def __init__(self, ctx: AppContext):
        if ctx.queue is None:
            raise ValueError("the studio needs a job manager (create_context makes one)")
        self.ctx = ctx

    @property
    def storage(self) -> Any:
        return self.ctx.storage

    # ---- launch and stop ---------------------------------------------------------------------

    def check(self, values: dict[str, Any]) -> Checked:
        """Validate Train-form ``values`` (``forms.KEYS``): the config, the data specs against the data
        folder and the base model (its shape, for the parameter counts)."""
        cfg, errors = forms.check(values, limits=self.ctx.settings.limits,
                                  spec_check=lambda spec: ds.check_spec(spec, self.ctx.data_dir))
        shape, note = None, ""
        if cfg is not None or "model" not in errors:
            shape, note = ds.model_shape(self.ctx, str(values.get("model") or ""))
            if shape is None and note:
                errors.setdefault("model", note)
                cfg = None if errors else cfg
        return Checked(cfg, errors, shape, note)

    def launch(self, values: dict[str, Any]) -> Launched:
        """Check ``values`` and queue the run (data specs and model resolved against the data folder);
        a full demo queue is reported on the name field."""
        checked = self.check(values)
        full = queries.queue_full(self.storage, self.ctx.settings.limits) if not checked.errors else None
        if full:
            checked.errors["name"] = full
        cfg = checked.cfg
        if checked.errors or cfg is None:
            return Launched(None, checked)
        cfg.data.train = [ds.resolve_spec(s, self.ctx.data_dir) for s in cfg.data.train]
        cfg.data.eval = [ds.resolve_spec(s, self.ctx.data_dir) for s in cfg.data.eval]
        cfg.model.name = ds.resolve_model(cfg.model.name, self.ctx.data_dir)
        return Launched(self.ctx.queue.submit(cfg), checked)

    def stop(self, run_id: int) -> Any:
        """Ask run ``run_id`` to stop (it saves a checkpoint at the end of its step); its ``RunInfo``."""
        return self.ctx.queue.cancel(run_id)
