"""The Hugging Face Hub: the card's metadata (``huggingface_hub``'s own card classes) and ``push``.

The metadata is a ``ModelCardData`` whose evaluation scores are ``EvalResult``s, so the Hub reads them
as the model-index. ``push`` creates the repository and uploads the adapter folder in one commit
(``upload_folder``): either the commit exists and the push is reported done, or it does not and the
error says so. A token passed in is used for this one call and never stored or logged.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import PTMoEError
from .model_card import SCORE_GROUPS  # averages over sets, not data sets

METRICS = (("em", "exact_match", "EM"), ("f1", "f1", "F1"), ("accuracy", "accuracy", "accuracy"))
TASK = "text-generation"


class HubError(PTMoEError):
    """A push that did not happen; the message is one line."""


def eval_results(training: Any) -> list:
    """One ``EvalResult`` per evaluation set and score (fractions in [0, 1], as the studio stores them)."""
    from huggingface_hub import EvalResult

    scores: Mapping[str, Mapping[str, Any]] = getattr(training, "scores", None) or {}
    out = []
    for name, s in scores.items():
        if name in SCORE_GROUPS:
            continue
        for key, mtype, mname in METRICS:
            v = s.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                safe = html.escape(str(name))  # the Hub renders these as HTML
                out.append(EvalResult(task_type=TASK, dataset_type=safe, dataset_name=safe,
                                      metric_type=mtype, metric_name=mname, metric_value=float(v)))
    return out


def card_data(front: Mapping[str, Any], training: Any = None):
    """The card's metadata: ``front`` (``model_card.front_matter``) plus the scores as the model-index."""
    from huggingface_hub import ModelCardData

    results = eval_results(training)
    name = html.escape(getattr(training, "run_name", None) or "adapter") if results else None
    return ModelCardData(**front, model_name=name, eval_results=results or None)


def _why(e: Exception, token: str | None) -> str:
    names = {c.__name__ for c in type(e).__mro__}
    status = getattr(getattr(e, "response", None), "status_code", None)
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:240]
    if "OfflineModeIsEnabled" in names:
        why = "offline mode is on (HF_HUB_OFFLINE)"
    elif "LocalTokenNotFoundError" in names:
        why = "no token: type one, run `hf auth login` or set HF_TOKEN"
    elif status in (401, 403):
        why = f"the Hub refused the token (HTTP {status})"
    elif names & {"TransportError", "ConnectionError", "TimeoutException"}:
        why = f"cannot reach the Hub ({first})"
    else:
        why = f"{type(e).__name__}: {first}"
    return why.replace(token, "***") if token else why


def push(adapter_dir: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
         endpoint: str | None = None) -> str:
    """Upload the adapter folder to the model repository ``repo_id`` (created if needed); returns the
    commit's URL. ``token`` None: huggingface_hub's own (``HF_TOKEN`` or the saved login)."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from .adapter import ADAPTER_FILES, CARD_NAME, read_adapter_config

    d = Path(adapter_dir)
    read_adapter_config(d)  # an AdapterError names what is wrong with the folder
    if repo_id.count("/") != 1:
        raise HubError(f"repository {repo_id!r} must be USER/NAME")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise HubError(f"repository {repo_id!r} is not a valid name: {str(e).splitlines()[0]}") from None
    files = [n for n in (*ADAPTER_FILES, CARD_NAME) if (d / n).is_file()]
    api = HfApi(endpoint=endpoint, token=token or None)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    except Exception as e:
        raise HubError(f"push to {repo_id} not done: {_why(e, token)}") from None
    try:
        info = api.upload_folder(folder_path=d, repo_id=repo_id, repo_type="model", allow_patterns=files,
                                 commit_message="Upload PT-MoE Studio adapter")
    except Exception as e:
        raise HubError(f"push to {repo_id} not done: {_why(e, token)} (the repository exists; no commit was made, "
                       "so it holds no part of this adapter)") from None
    return str(getattr(info, "commit_url", None) or info)
