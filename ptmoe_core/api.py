"""The public Python API: load an adapter, answer with routing information (optionally through one
forced expert), evaluate on data specs, save a portable folder. ``ptmoe_core`` re-exports these;
the CLI's ``generate`` / ``evaluate`` and the studio's Inspect tab call the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from .adapter import Adapter, load_adapter, read_adapter_config, save_adapter
from .config import ModelConfig, RunConfig
from .errors import AdapterError, PTMoEError
from .generate import Generation, generate
from .models import HUB_ID, BaseModel

HUB_FILES = ["*.json", "*.safetensors", "README.md"]  # an adapter repo's files; never pickles
MAX_INPUT_CHARS = 200_000  # question + context of one input, checked before tokenizing


def load(
    source: str | Path, *, base: BaseModel | None = None, device: str = "auto", revision: str | None = None,
    local_files_only: bool = False,
) -> Adapter:
    """An adapter from a folder (studio format 1 or 2, or a PEFT PT / LoRA folder) or a Hugging Face
    Hub repo id (``user/name``; downloaded when online, else taken from the local Hub cache).

    The base model named by the adapter is loaded on ``device`` unless ``base`` is given. The input
    format it was trained with (instruction, lengths) comes with it and is ``answer``'s default."""
    folder = resolve_folder(source, revision=revision, local_files_only=local_files_only)
    model_cfg = None
    if base is None:
        name = read_adapter_config(folder)["base_model"].get("name")
        model_cfg = ModelConfig(name=name, device=device) if name else None
    adapter = load_adapter(folder, base=base, model_cfg=model_cfg)
    if not adapter.meta.get("format"):
        fmt = _run_format(folder)  # a format-1 adapter inside its run folder
        if fmt is not None:
            adapter.meta["format"] = asdict(fmt)
    return adapter


def resolve_folder(source: str | Path, *, revision: str | None = None, local_files_only: bool = False) -> Path:
    """A local adapter folder for ``source``: the folder itself, or a Hub repo's snapshot."""
    p = Path(source)
    if p.exists() or not HUB_ID.match(str(source)):
        if not p.is_dir():
            raise AdapterError(f"adapter directory not found: {p}")
        return p
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return Path(snapshot_download(repo_id=str(source), revision=revision, allow_patterns=HUB_FILES,
                                      local_files_only=local_files_only))
    except LocalEntryNotFoundError as e:
        raise AdapterError(
            f"adapter {source!r} is not a local folder and the Hugging Face Hub cannot be reached (offline) nor "
            f"holds it in the local cache: connect, or download the repo elsewhere and pass its folder") from e
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise AdapterError(f"adapter {source!r}: no such Hub repo or revision (or it is private: "
                           "log in with `hf auth login`)") from e
    except Exception as e:  # network and HTTP errors of every kind: one line, never a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AdapterError(f"adapter {source!r}: download from the Hugging Face Hub failed: {first}") from e


def format_of(adapter: Adapter, **overrides: Any):
    """The ``FormatConfig`` the adapter was trained with (defaults when it did not record one), with
    the ``overrides`` that are not None (e.g. ``instruction=...``, ``max_source_tokens=...``)."""
    from .data.formatting import FormatConfig

    recorded = adapter.meta.get("format")
    known = {f.name for f in fields(FormatConfig)}
    values = {k: v for k, v in recorded.items() if k in known} if isinstance(recorded, Mapping) else {}
    return FormatConfig(**{**values, **{k: v for k, v in overrides.items() if v is not None}})


def _run_format(folder: Path):
    """The format of ``run_config.json`` beside the adapter (``OUTPUT_DIR/adapter``) or above a
    checkpoint (``OUTPUT_DIR/checkpoints/step-N``); None when there is none or it is unreadable."""
    from .data.formatting import FormatConfig

    for candidate in (folder / "run_config.json", folder.parent / "run_config.json",
                      folder.parent.parent / "run_config.json"):
        if candidate.is_file():
            try:
                return FormatConfig.from_data_config(RunConfig.from_file(candidate).data)
            except PTMoEError:
                return None  # an unreadable run config: the defaults rather than a refusal
    return None


def _example(x: str | Mapping[str, Any], i: int, context: str, answer_type: str) -> dict[str, Any]:
    if isinstance(x, Mapping):
        ex = {"id": str(i), "domain": "input", "context": "", "answer_type": answer_type, "split": "test",
              "ood": False, **x}
        ex["answers"] = list(ex.get("answers") or [""])  # the encoder wants one; it is never shown to the model
    else:
        ex = {"id": str(i), "domain": "input", "question": str(x), "context": context or "", "answers": [""],
              "answer_type": answer_type, "split": "test", "ood": False}
    size = len(str(ex.get("question", ""))) + len(str(ex.get("context") or ""))
    if size > MAX_INPUT_CHARS:
        raise ValueError(f"input #{i + 1} has {size:,} characters of question and context (max {MAX_INPUT_CHARS:,})")
    return ex


def answer(
    adapter: Adapter,
    inputs: str | Sequence[str | Mapping[str, Any]],
    *,
    context: str = "",
    answer_type: str = "text",
    force_expert: int | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    format_cfg=None,
    return_router_input: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Greedy answers, one ``Generation`` per input in order: ``text``, the chosen ``expert``, the
    router's ``probs``, ``confidence`` and ``entropy`` (None for methods without a router).

    ``inputs``: question strings (sharing ``context`` and ``answer_type``: span, number or text) or
    example dicts (``question``, ``context``, ``answer_type``). ``force_expert`` routes every input
    to that expert as if the router had chosen it. ``format_cfg`` defaults to the format the adapter was trained with."""
    encoded = _encoded(adapter, inputs, context, answer_type, format_cfg)
    return generate(adapter, encoded, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    force_expert=force_expert, return_router_input=return_router_input, progress=progress)


def answer_all_experts(
    adapter: Adapter,
    inputs: str | Sequence[str | Mapping[str, Any]],
    *,
    context: str = "",
    answer_type: str = "text",
    max_new_tokens: int = 32,
    batch_size: int = 16,
    format_cfg=None,
    return_router_input: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Generation], list[list[Generation]]]:
    """The routed answer and every expert's forced answer per input, in ONE batched generation:
    (routed, forced) with ``forced[i][e]`` input i's answer through expert e. Same as ``answer``
    once routed and once per ``force_expert``, at about the cost of one call."""
    from .generate import generate_all_experts

    encoded = _encoded(adapter, inputs, context, answer_type, format_cfg)
    return generate_all_experts(adapter, encoded, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                return_router_input=return_router_input, progress=progress)


def _encoded(adapter: Adapter, inputs, context: str, answer_type: str, format_cfg) -> list[dict]:
    from .data.formatting import encode_example

    if isinstance(inputs, (str, Mapping)):
        inputs = [inputs]
    examples = [_example(x, i, context, answer_type) for i, x in enumerate(inputs)]
    fmt = format_cfg or format_of(adapter)
    return [encode_example(adapter.base.tokenizer, ex, fmt, with_answer=False) for ex in examples]


def evaluate_on(
    adapter: Adapter,
    specs: Any,
    *,
    split: str = "test",
    max_examples: int | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    format_cfg=None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
):
    """Generate and score every example of ``specs`` (data spec strings such as ``"builtin:arith"``,
    their ``split``, each capped at ``max_examples``; or datasets). Returns an ``EvalResult``:
    ``scores()`` per set and macro, ``expert_load`` per set, per-example ``records`` (``EvalRecord``), ``to_table()``."""
    from .evaluate import evaluate

    return evaluate(adapter, specs, max_examples=max_examples, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    format_cfg=format_cfg or format_of(adapter), progress=progress, split=split, seed=seed)


def save(adapter: Adapter, directory: str | Path, *, card: bool = True) -> Path:
    """Write the adapter to ``directory`` in the current format (a PEFT folder for PT and LoRA), with
    a model card unless ``card=False``. Also upgrades a format-1 folder: ``save(load(old), new)``."""
    d = save_adapter(adapter, directory)
    if card:
        from .model_card import write_model_card

        write_model_card(d)
    return d
