"""Small helpers shared by the tabs: turning failures into messages the page shows."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from .escaping import esc

log = logging.getLogger("app")
F = TypeVar("F", bound=Callable[..., Any])


def message(e: BaseException) -> str:
    """One line for the user: our own errors carry their message; others get their type too."""
    from ptmoe_core.errors import PTMoEError

    try:
        from storage.errors import StorageError
    except ImportError:  # pragma: no cover - storage is part of the project
        StorageError = PTMoEError  # type: ignore[misc,assignment]
    text = str(e).strip() or type(e).__name__
    if isinstance(e, (PTMoEError, StorageError, ValueError, FileNotFoundError, TimeoutError)):
        return text.splitlines()[0] if len(text) > 600 else text
    return f"{type(e).__name__}: {text.splitlines()[0]}"


def friendly(fn: F) -> F:
    """Any exception becomes a ``gr.Error`` toast with a readable, escaped message (the traceback goes
    to the server log only)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:
            log.warning("%s failed", fn.__name__, exc_info=True)
            raise gr.Error(esc(message(e)), duration=12) from e

    return wrapper  # type: ignore[return-value]


def require_run_id(value: Any, missing: str = "Select a run first.") -> int:
    """The run id a widget holds, or a ``gr.Error`` telling the user to pick one."""
    from .queries import parse_run_id

    rid = parse_run_id(value)
    if rid is None:
        raise gr.Error(missing)
    return rid
