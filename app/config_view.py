"""A run's configuration as HTML: its method preset and every resolved value, with the method fields
that differ from the preset marked (and the preset's value beside them). Pure; everything escaped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ptmoe_core.config import RunConfig

from .forms import flatten, preset_differences
from .views import esc

SECTIONS = ("method", "model", "data", "train")


def config_html(config: Mapping[str, Any] | None) -> str:
    """The stored config (a ``RunConfig`` dict) resolved through ``RunConfig.from_dict``, so a config
    written before presets shows the values it trains with."""
    if not config:
        return '<div class="pt-empty">Pick a run to see its configuration.</div>'
    try:
        cfg = RunConfig.from_dict(dict(config))
    except Exception as e:  # a stored config this version cannot read: say so, show nothing wrong
        return f'<div class="pt-empty">This run\'s configuration cannot be read: {esc(e)}</div>'
    diff = preset_differences(cfg)
    flat = flatten(cfg.to_dict())
    m = cfg.method
    head = (f'<div class="pt-config-head">Method preset <b>{esc(m.preset)}</b> · '
            + (f"{len(diff)} method field{'s' if len(diff) != 1 else ''} differ{'s' if len(diff) == 1 else ''} "
               "from it (marked ●)" if diff else "every method field as the preset sets it") + "</div>")
    out = [head, '<div class="pt-table-wrap"><table class="pt-table pt-config" id="pt-run-config"><thead><tr>'
                 "<th>field</th><th>value</th><th>preset's value</th></tr></thead><tbody>"]
    for section in SECTIONS:
        for key, value in flat.items():
            if key.split(".", 1)[0] != section or key == "method.preset":
                continue
            name = key.split(".", 1)[1]
            changed = section == "method" and name in diff
            mark = ' class="pt-differs"' if changed else ""
            preset_cell = esc(_fmt(diff[name][1])) if changed else ""
            out.append(f"<tr{mark}><td>{'● ' if changed else ''}{esc(key)}</td><td>{esc(_fmt(value))}</td>"
                       f"<td>{preset_cell}</td></tr>")
    for key in ("name", "output_dir"):
        out.append(f"<tr><td>{key}</td><td>{esc(_fmt(flat.get(key)))}</td><td></td></tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "–"
    return str(v)
