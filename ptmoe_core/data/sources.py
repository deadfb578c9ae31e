"""Data specs: one string names a source the same way in the CLI, config files and the UI.

Syntax::

    PREFIX:ARG[?KEY=VALUE&KEY=VALUE...][@CAP][*WEIGHT]

Prefixes (ARG is a file, or a directory holding ``train.*`` / ``dev.*`` / ``validation.*`` /
``test.*`` files, e.g. SQuAD's ``train-v2.0.json`` + ``dev-v2.0.json``):

==================  ==========================================================================
``squad:PATH``      official nested SQuAD JSON, v1.1 or v2.0. v2.0's unanswerable questions are
                    **dropped by default** (scores are then answerable-only: the official
                    script's HasAns); ``?unanswerable=keep`` keeps them with the gold answer
                    ``"unanswerable"`` (the training target), scored as the official v2.0
                    script does: only an empty answer (or "unanswerable") is right.
``mrqa:PATH``       MRQA shared-task JSONL (header line + one passage with its ``qas`` per line);
                    ``.jsonl.gz`` is read directly.
``gsm8k:PATH``      GSM8K JSONL. The gold answer is the number after ``#### ``; with
                    ``?rationale=true`` it is the worked solution instead (calculator notes
                    ``<<...>>`` removed, ending "The answer is N."), scored by its final number.
``jsonl:PATH``      JSON lines (``.gz`` allowed), ``csv:PATH`` (``.tsv`` is tab-separated),
``csv:PATH``        ``parquet:PATH``, with a column mapping ``?question=COL&context=COL&answer=COL``
``parquet:PATH``    (``&id=COL``). Unmapped columns are found by common names (question / query /
                    input / prompt / problem; context / passage / document; answers / answer /
                    output / target). An answer cell may be a string, a number, a list, or SQuAD's
                    ``{"text": [...]}``. ``?type=span|number|text`` fixes the answer type; by default
                    it is chosen per example (a number, a span of the context, else text).
                    ``?format=gsm8k`` reads GSM8K-style answers from any of these.
``hf:NAME[:CONFIG][:SPLIT]``  any Hub data set through ``datasets.load_dataset``, same column
                    mapping; without network it fails with a message naming the data set. NAME must
                    be a Hub id (``owner/name`` or ``name``): the ``datasets`` library's own readers
                    (``json``, ``csv``, ``text`` …) and names of local files or folders are refused,
                    so a Hub spec never reads the machine's files.
``builtin:NAME``    tasks generated from the seed (no downloads): ``qa``, ``arith``, ``units``,
                    ``dates``, ``all`` (the four), and each with ``-ood`` (``builtin:arith-ood``,
                    ``builtin:all-ood``): new templates and vocabulary, ``ood=True``.
                    ``?n=500`` training and ``?n_eval=100`` validation/test examples per task
                    (at most 50,000 each).
==================  ==========================================================================

Options for every prefix:

- ``split=train|validation|test|all`` which split a consumer uses (default: train for training,
  test for ``evaluate``; ``all`` = every row, e.g. a separate evaluation file used whole);
- ``val=0.1&test=0.1`` the held-out fractions when a source has a single file (or lacks a
  validation/test file): rows are assigned by a seeded shuffle, and rows sharing a passage stay
  in the same split, so a test passage is never trained on;
- ``domain=NAME`` the domain / data-set name written into each example (default: ``squad``,
  ``squad-v2``, ``gsm8k``, ``mrqa-<dataset>``, the file's stem, the Hub name, ``builtin-<task>``);
- ``@N`` or ``cap=N`` at most N examples per split (a seeded subset, file order kept);
- ``*W`` or ``weight=W`` relative weight when several specs are mixed (see ``mixture``);
- ``unanswerable=drop|keep`` for rows without a gold answer (default drop).

Files over 200 MB are refused (``max_bytes=`` keyword or ``PTMOE_DATA_MAX_BYTES``); every
problem raises ``DataError`` naming the file, line or column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import datasets

from ..errors import DataError
from ..metrics import NO_ANSWER, extract_final_number
from . import builtin, files
from .schema import SPLIT_ALIASES, SPLITS, canonical_split, make_example, seeded_rng, split_rows, to_dataset

PREFIXES = ("squad", "mrqa", "gsm8k", "jsonl", "csv", "parquet", "hf", "builtin")
COMMON_OPTIONS = {"split", "val", "test", "domain", "cap", "weight", "unanswerable"}
MAPPING_OPTIONS = {"question", "context", "answer", "id", "type", "format"}
OPTIONS = {
    "squad": COMMON_OPTIONS,
    "mrqa": COMMON_OPTIONS,
    "gsm8k": COMMON_OPTIONS | {"rationale"},
    "jsonl": COMMON_OPTIONS | MAPPING_OPTIONS | {"rationale"},
    "csv": COMMON_OPTIONS | MAPPING_OPTIONS | {"rationale"},
    "parquet": COMMON_OPTIONS | MAPPING_OPTIONS | {"rationale"},
    "hf": COMMON_OPTIONS | MAPPING_OPTIONS | {"rationale"},
    "builtin": COMMON_OPTIONS | {"n", "n_eval"},
}
EXTENSIONS = {
    "squad": (".json", ".json.gz"),
    "mrqa": (".jsonl", ".jsonl.gz"),
    "gsm8k": (".jsonl", ".jsonl.gz"),
    "jsonl": (".jsonl", ".jsonl.gz", ".json", ".ndjson"),
    "csv": (".csv", ".tsv", ".csv.gz", ".tsv.gz"),
    "parquet": (".parquet",),
}
QUESTION_COLUMNS = ("question", "query", "input", "prompt", "problem", "instruction")
CONTEXT_COLUMNS = ("context", "passage", "document", "paragraph", "story", "article")
ANSWER_COLUMNS = ("answers", "answer", "output", "target", "label", "response", "solution")
ID_COLUMNS = ("id", "qid", "uid", "example_id", "question_id")
UNANSWERABLE = NO_ANSWER
# datasets' packaged builders, also those (sql, generator, spark, cache) that the registry above may not list.
BUILTIN_READERS = frozenset({"json", "csv", "parquet", "text", "arrow", "pandas", "imagefolder", "audiofolder",
                             "videofolder", "webdataset", "sql", "generator", "spark", "cache", "xml", "hdf5"})
DEFAULT_VAL, DEFAULT_TEST = 0.1, 0.1
POS = "_pos"  # transient row position, dropped by to_dataset
_SUFFIX = re.compile(r"^(?P<body>.*?)(?:@(?P<cap>\d+))?(?:\*(?P<weight>\d+(?:\.\d*)?|\.\d+))?$", re.S)
_CALC = re.compile(r"<<[^<>]*>>")
_PURE_NUMBER = re.compile(r"^\s*[-−]?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s*%?\s*$|^\s*[-−]?\.\d+\s*$")

Parts = dict[str, list[dict[str, Any]]]  # split -> rows, or "_unsplit" -> rows still to split


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class Spec:
    """A parsed data spec."""

    text: str
    prefix: str
    arg: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def cap(self) -> int | None:
        v = self.options.get("cap")
        return None if v in (None, "") else _int_option(self, "cap", v, lo=1)

    @property
    def weight(self) -> float | None:
        v = self.options.get("weight")
        if v in (None, ""):
            return None
        try:
            w = float(v)
        except ValueError:
            w = -1.0
        if not w > 0:
            raise DataError(f"{self.text}: weight must be a number > 0, got {v!r}")
        return w

    @property
    def split(self) -> str | None:
        v = self.options.get("split")
        if not v:
            return None
        return "all" if v.lower() == "all" else canonical_split(v)

    def with_options(self, **options: Any) -> Spec:
        extra = {k: _option_text(v) for k, v in options.items() if v is not None}
        spec = Spec(self.text, self.prefix, self.arg, {**self.options, **extra})
        _check_options(spec)
        return spec


def parse_spec(text: str) -> Spec:
    """``PREFIX:ARG[?options][@CAP][*WEIGHT]`` -> ``Spec`` (see the module docstring)."""
    if not isinstance(text, str) or ":" not in text:
        raise DataError(f"data spec {text!r} is not of the form PREFIX:ARG; known prefixes: {', '.join(PREFIXES)}")
    raw = text.strip()
    m = _SUFFIX.match(raw)
    body, cap, weight = m.group("body"), m.group("cap"), m.group("weight")
    options: dict[str, str] = {}
    if "?" in body:
        body, query = body.rsplit("?", 1)
        for k, v in parse_qsl(query, keep_blank_values=True):
            options[k.strip().lower()] = v.strip()
    if cap:
        options["cap"] = cap
    if weight:
        options["weight"] = weight
    prefix, arg = body.split(":", 1)
    prefix = prefix.strip().lower()
    if prefix not in PREFIXES:
        raise DataError(f"unknown data source prefix {prefix!r} in {raw!r}; known: {', '.join(PREFIXES)}")
    if not arg.strip():
        raise DataError(f"{raw!r}: nothing after '{prefix}:' (expected a path or name)")
    spec = Spec(raw, prefix, arg.strip(), options)
    _check_options(spec)
    return spec


def _check_options(spec: Spec) -> None:
    unknown = sorted(set(spec.options) - OPTIONS[spec.prefix])
    if unknown:
        raise DataError(
            f"{spec.text}: unknown option(s) {', '.join(unknown)} for {spec.prefix}:; "
            f"known: {', '.join(sorted(OPTIONS[spec.prefix]))}"
        )
    _ = (spec.cap, spec.weight, spec.split)  # validate eagerly: fail at parse time, not mid-run
    if spec.options.get("unanswerable", "drop").lower() not in ("drop", "keep"):
        raise DataError(f"{spec.text}: unanswerable must be 'drop' or 'keep', got {spec.options['unanswerable']!r}")
    t = spec.options.get("type")
    if t and t not in ("span", "number", "text"):
        raise DataError(f"{spec.text}: type must be span, number or text, got {t!r}")
    f = spec.options.get("format")
    if f and f not in ("gsm8k", "generic"):
        raise DataError(f"{spec.text}: format must be gsm8k or generic, got {f!r}")
    if spec.prefix == "hf":
        check_hub_name(spec.arg.split(":", 1)[0])
    if spec.prefix == "builtin":
        builtin_sizes(spec)


def builtin_sizes(spec: Spec) -> dict[str, int]:
    """Examples per split of each built-in task (``n`` train, ``n_eval`` validation and test), bounded:
    generating costs memory and time in whichever process reads the spec."""
    hi = builtin.MAX_PER_SPLIT
    n = _int_option(spec, "n", spec.options.get("n", str(builtin.DEFAULT_TRAIN)), hi=hi)
    n_eval = _int_option(spec, "n_eval", spec.options.get("n_eval", str(builtin.DEFAULT_EVAL)), hi=hi)
    return {"train": n, "validation": n_eval, "test": n_eval}


def check_hub_name(name: str) -> None:
    """Refuse anything but a Hub data set id: ``load_dataset`` also takes the names of its built-in
    readers (``hf:text`` would read the files of the working folder) and local paths."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    local = f"hf:{name} names a local path, not a Hub data set; for a local file use jsonl:/csv:/parquet:"
    if not name or name.startswith((".", "/", "~", "\\")) or "\\" in name:
        raise DataError(local)
    if name.split("/", 1)[0].lower() in builtin_readers():
        raise DataError(f"hf:{name} is one of the datasets library's built-in readers, not a Hub data set; "
                        "for a local file use jsonl:/csv:/parquet:")
    try:
        validate_repo_id(name)
    except HFValidationError as e:
        raise DataError(f"hf:{name} is not a Hub data set id (owner/name or name): {str(e).split('.')[0]}") from None
    if Path(name).exists():
        raise DataError(local + " (load_dataset would read it instead of the Hub)")


def builtin_readers() -> frozenset[str]:
    """Names ``datasets.load_dataset`` resolves to its own packaged readers instead of the Hub."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return frozenset(_PACKAGED_DATASETS_MODULES) | BUILTIN_READERS


def _option_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _int_option(spec: Spec, key: str, value: str, lo: int = 0, hi: int | None = None) -> int:
    try:
        n = int(value)
    except ValueError:
        n = lo - 1
    if n < lo or (hi is not None and n > hi):
        bound = f"between {lo} and {hi:,}" if hi is not None else f">= {lo}"
        raise DataError(f"{spec.text}: {key} must be an integer {bound}, got {value!r}")
    return n


def _frac_option(spec: Spec, key: str, default: float) -> float:
    v = spec.options.get(key)
    if v in (None, ""):
        return default
    try:
        x = float(v)
    except ValueError:
        x = -1.0
    if not 0 <= x < 1:
        raise DataError(f"{spec.text}: {key} must be a fraction in [0, 1), got {v!r}")
    return x


def _flag(spec: Spec, key: str) -> bool:
    return spec.options.get(key, "").lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------------------------
# Public API


def load_spec(
    spec: str | Spec,
    split: str | None = None,
    *,
    seed: int = 0,
    limit: int | None = None,
    max_bytes: int | None = None,
    **options: Any,
) -> datasets.Dataset | datasets.DatasetDict:
    """Examples of a data spec: a ``DatasetDict`` (train / validation / test, possibly empty)
    or, when ``split`` (or the spec's ``split=`` option) names one, that ``Dataset``.

    ``seed`` drives the train/validation/test assignment of single files, the built-in
    generators and ``cap`` subsets; ``limit`` keeps the first N rows of each split (previews);
    ``options`` are the spec's ``?key=value`` options given as keywords (they win).
    """
    s = (spec if isinstance(spec, Spec) else parse_spec(spec)).with_options(**options)
    parts = _load_parts(s, seed, max_bytes)
    splits = _finish_splits(s, parts, seed)
    if s.cap is not None:
        splits = {k: cap_rows(v, s.cap, seed, k) for k, v in splits.items()}

    def head(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return rows if limit is None else rows[: max(int(limit), 0)]

    want = split if split is not None else s.split
    if want is None:
        return datasets.DatasetDict({k: to_dataset(head(splits[k])) for k in SPLITS})
    want = "all" if want == "all" else canonical_split(want)
    rows = _in_source_order(splits) if want == "all" else splits[want]
    if not rows:
        counts = ", ".join(f"{k}={len(splits[k])}" for k in SPLITS)
        raise DataError(f"{s.text}: the {want} split is empty ({counts})")
    return to_dataset(head(rows))


def preview(spec: str, n: int = 5, *, seed: int = 0, max_bytes: int | None = None) -> list[dict[str, Any]]:
    """The first ``n`` normalised examples (train first, then validation, test) for a quick look.

    A file source is read only as far as the rows shown (in file order; the rows of a single file
    show the split ``unsplit``: the seeded train/validation/test assignment needs every row, so it
    happens when the data is loaded for training)."""
    s = parse_spec(spec)
    n = max(0, int(n))
    if s.prefix in EXTENSIONS and s.split in (None, "all"):
        parts = _load_parts(s, seed, max_bytes, max_rows=n)
        order = ["_unsplit", *SPLITS]
        rows = [{**r, "split": k.strip("_")} for k in sorted(parts, key=order.index) for r in parts[k]]
        return rows[:n]
    if s.split:
        return load_spec(s, seed=seed, limit=n, max_bytes=max_bytes).to_list()
    dd = load_spec(s, seed=seed, limit=n, max_bytes=max_bytes)
    rows: list[dict[str, Any]] = []
    for k in SPLITS:
        rows.extend(dd[k].to_list())
    return rows[:n]


def spec_domains(spec: str | Spec) -> list[str]:
    """The domains a spec yields as far as its text tells: each task of a built-in spec
    (``builtin:all`` has four), the ``domain`` option when set, else ``spec_name``."""
    s = spec if isinstance(spec, Spec) else parse_spec(spec)
    if s.prefix == "builtin" and not s.options.get("domain"):
        return [builtin.domain_name(t, ood) for t, ood in builtin.parse_builtin(s.arg.lower())]
    return [spec_name(s)]


def spec_name(spec: str | Spec) -> str:
    """A short readable name for a spec (its default domain), e.g. ``gsm8k`` or ``builtin-arith``."""
    s = spec if isinstance(spec, Spec) else parse_spec(spec)
    if s.options.get("domain"):
        return s.options["domain"]
    if s.prefix == "builtin":
        return "builtin-" + s.arg
    if s.prefix == "hf":
        name, config = (s.arg.split(":") + [""])[:2]
        return name.rsplit("/", 1)[-1] + (f"-{config}" if config else "")
    if s.prefix in ("squad", "gsm8k", "mrqa"):
        return s.prefix
    p = Path(s.arg)
    return p.name.split(".")[0] if p.name else s.prefix


def _in_source_order(splits: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every row, in the order of the source (file order; split files train, validation, test)."""
    return sorted((r for k in SPLITS for r in splits[k]), key=lambda r: r[POS])


def cap_rows(rows: list[dict[str, Any]], n: int, seed: int, salt: str = "") -> list[dict[str, Any]]:
    """A seeded subset of ``n`` rows in their original order (all rows when there are fewer)."""
    if len(rows) <= n:
        return rows
    keep = sorted(seeded_rng("cap", seed, salt, len(rows)).sample(range(len(rows)), n))
    return [rows[i] for i in keep]


# ---------------------------------------------------------------------------------------------
# Splits


def _finish_splits(spec: Spec, parts: Parts, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Natural splits as they are; a single file (or a missing held-out split) by seeded shuffle."""
    val, test = _frac_option(spec, "val", DEFAULT_VAL), _frac_option(spec, "test", DEFAULT_TEST)
    if val + test >= 1:
        raise DataError(f"{spec.text}: val + test fractions must leave rows for training (got {val} + {test})")
    order = ["_unsplit", *SPLITS]
    for k in sorted(parts, key=order.index):  # remember where each row came from (for split=all)
        parts[k] = [{**r, POS: (order.index(k), i)} for i, r in enumerate(parts[k])]
    if "_unsplit" in parts:
        rows = parts["_unsplit"]
        if not rows:
            raise DataError(f"{spec.text}: no examples found")
        return split_rows(rows, seed=seed, val_frac=val, test_frac=test, group=_passage)
    out = {k: list(parts.get(k, [])) for k in SPLITS}
    if not any(out.values()):
        raise DataError(f"{spec.text}: no examples found")
    missing = [k for k in ("validation", "test") if k not in parts]
    if out["train"] and missing:
        carved = split_rows(out["train"], seed=seed, val_frac=val if "validation" in missing else 0.0,
                            test_frac=test if "test" in missing else 0.0, group=_passage)
        out["train"] = carved["train"]
        for k in missing:
            out[k] = carved[k]
    for k in SPLITS:
        out[k] = [{**r, "split": k} for r in out[k]]
    return out


def _passage(row: dict[str, Any]) -> str:
    return "ctx:" + row["context"] if row["context"] else "id:" + row["id"]


# ---------------------------------------------------------------------------------------------
# Loaders


def _load_parts(spec: Spec, seed: int, max_bytes: int | None, max_rows: int | None = None) -> Parts:
    """Rows of every part of the source; ``max_rows`` (a preview) stops each file's reader early."""
    if spec.prefix == "builtin":
        return _load_builtin(spec, seed)
    if spec.prefix == "hf":
        return _load_hf(spec)
    reader = {"squad": _read_squad, "mrqa": _read_mrqa, "gsm8k": _read_gsm8k, "jsonl": _read_jsonl,
              "csv": _read_table, "parquet": _read_table}[spec.prefix]
    path = Path(spec.arg).expanduser()
    if path.is_dir():
        found = _split_files(spec, path)
        return {k: reader(spec, p, max_bytes, max_rows) for k, p in found.items()}
    return {"_unsplit": reader(spec, path, max_bytes, max_rows)}


def _split_files(spec: Spec, directory: Path) -> dict[str, Path]:
    """train/dev/validation/test files of a directory, matched by the first word of the name."""
    exts = EXTENSIONS[spec.prefix]
    found: dict[str, Path] = {}
    candidates = sorted(p for p in directory.iterdir() if p.is_file() and p.name.lower().endswith(exts))
    for p in candidates:
        first = re.split(r"[-_.]", p.name.lower(), maxsplit=1)[0]
        split = SPLIT_ALIASES.get(first)
        if split is None:
            continue
        if split in found:
            raise DataError(f"{directory}: two files for the {split} split: {found[split].name} and {p.name}")
        found[split] = p
    if not found:
        names = ", ".join(p.name for p in sorted(directory.iterdir())[:20]) or "nothing"
        raise DataError(
            f"{directory}: no train/dev/validation/test file ending in {'/'.join(exts)} (found: {names})"
        )
    return {("_unsplit" if list(found) == ["train"] else k): v for k, v in found.items()}


def _domain(spec: Spec, default: str) -> str:
    return spec.options.get("domain") or default


def _keep_unanswerable(spec: Spec) -> bool:
    return spec.options.get("unanswerable", "drop").lower() == "keep"


def _read_squad(spec: Spec, path: Path, max_bytes: int | None, max_rows: int | None = None) -> list[dict[str, Any]]:
    doc = files.read_json(path, max_bytes)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        keys = list(doc)[:10] if isinstance(doc, dict) else type(doc).__name__
        raise DataError(f"{path}: not SQuAD JSON (expected a top-level 'data' list; found {keys})")
    version = str(doc.get("version", ""))
    domain = _domain(spec, "squad-v2" if version.startswith(("v2", "2")) else "squad")
    keep = _keep_unanswerable(spec)
    rows = []
    for ai, article in enumerate(doc["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(f"{path}: data[{ai}] has no 'paragraphs' list")
        for pi, para in enumerate(paragraphs):
            if not isinstance(para, dict) or "context" not in para or not isinstance(para.get("qas"), list):
                found = sorted(para) if isinstance(para, dict) else type(para).__name__
                raise DataError(f"{path}: data[{ai}].paragraphs[{pi}] needs 'context' and 'qas' (found {found})")
            for qi, qa in enumerate(para["qas"]):
                where = f"data[{ai}].paragraphs[{pi}].qas[{qi}]"
                if not isinstance(qa, dict) or "question" not in qa:
                    raise DataError(f"{path}: {where} has no 'question'")
                golds = answer_list([a.get("text") for a in qa.get("answers") or [] if isinstance(a, dict)])
                if qa.get("is_impossible") or not golds:
                    if not keep:
                        continue
                    golds = [UNANSWERABLE]
                rows.append(make_example(id=str(qa.get("id") or f"{path.stem}-{ai}-{pi}-{qi}"), domain=domain,
                                         question=question_text(qa["question"], f"{path}: {where}"),
                                         context=para["context"], answers=golds, answer_type="span"))
                if max_rows is not None and len(rows) >= max_rows:
                    return rows
    if not rows:
        raise DataError(f"{path}: no answerable questions" + ("" if keep else " (try ?unanswerable=keep)"))
    return rows


def _read_mrqa(spec: Spec, path: Path, max_bytes: int | None, max_rows: int | None = None) -> list[dict[str, Any]]:
    rows, domain = [], spec.options.get("domain")
    keep = _keep_unanswerable(spec)
    lines = files.iter_jsonl(path, max_bytes, None if max_rows is None else max_rows + 1)  # + the header line
    for lineno, obj in lines:
        if "header" in obj:
            if domain is None and isinstance(obj["header"], dict) and obj["header"].get("dataset"):
                domain = "mrqa-" + re.sub(r"[^a-z0-9]+", "-", str(obj["header"]["dataset"]).lower()).strip("-")
            continue
        if "context" not in obj or not isinstance(obj.get("qas"), list):
            raise DataError(f"{path}, line {lineno}: an MRQA line needs 'context' and a 'qas' list "
                            f"(columns found: {', '.join(obj) or 'none'})")
        for qi, qa in enumerate(obj["qas"]):
            if not isinstance(qa, dict) or "question" not in qa:
                raise DataError(f"{path}, line {lineno}: qas[{qi}] has no 'question'")
            golds = [str(a).strip() for a in qa.get("answers") or [] if str(a).strip()]
            if not golds:
                if not keep:
                    continue
                golds = [UNANSWERABLE]
            rows.append({"id": str(qa.get("qid") or f"{path.stem}-{lineno}-{qi}"),
                         "question": question_text(qa["question"], f"{path}, line {lineno}: qas[{qi}]"),
                         "context": obj["context"], "answers": list(dict.fromkeys(golds))})
    domain = domain or "mrqa"
    return [make_example(domain=domain, answer_type="span", **r) for r in rows]


def _gsm8k_answer(spec: Spec, text: Any, where: str) -> str:
    text = str(text or "")
    if "####" not in text:
        raise DataError(f"{where}: GSM8K answer has no '#### ' final answer")
    work, final = text.rsplit("####", 1)
    number = extract_final_number(final)
    if number is None:
        raise DataError(f"{where}: no number after '####' (got {final.strip()[:40]!r})")
    if _flag(spec, "rationale"):
        steps = _CALC.sub("", work).strip()
        return f"{steps}\nThe answer is {number}."
    return number


def _read_gsm8k(spec: Spec, path: Path, max_bytes: int | None, max_rows: int | None = None) -> list[dict[str, Any]]:
    domain = _domain(spec, "gsm8k")
    rows = []
    for lineno, obj in files.iter_jsonl(path, max_bytes, max_rows):
        for col in ("question", "answer"):
            if col not in obj:
                raise DataError(f"{path}, line {lineno}: missing column {col!r} (columns found: {', '.join(obj)})")
        rows.append(make_example(id=f"{path.stem}-{lineno}", domain=domain,
                                 question=question_text(obj["question"], f"{path}, line {lineno}"),
                                 answers=[_gsm8k_answer(spec, obj["answer"], f"{path}, line {lineno}")],
                                 answer_type="number"))
    return rows


# --- generic tables: jsonl / csv / parquet / hf ----------------------------------------------


@dataclass
class Columns:
    question: str
    answer: str
    context: str | None
    id: str | None


def resolve_columns(spec: Spec, found: Iterable[str], where: str) -> Columns:
    """Map schema fields to the source's columns (explicit options first, then common names)."""
    found = list(found)
    lower = {c.lower(): c for c in found}

    def pick(key: str, candidates: tuple[str, ...], required: bool) -> str | None:
        explicit = spec.options.get(key)
        if explicit:
            if explicit not in found:
                raise DataError(f"{where}: column {explicit!r} ({key}=) not found; columns found: {', '.join(found)}")
            return explicit
        for c in candidates:
            if c in lower:
                return lower[c]
        if required:
            raise DataError(f"{where}: no {key} column (looked for {', '.join(candidates)}; map one with "
                            f"?{key}=COLUMN); columns found: {', '.join(found) or 'none'}")
        return None

    q = pick("question", QUESTION_COLUMNS, True)
    a = pick("answer", ANSWER_COLUMNS, True)
    c = pick("context", CONTEXT_COLUMNS, False)
    i = pick("id", ID_COLUMNS, False)
    return Columns(question=q, answer=a, context=c, id=i)  # type: ignore[arg-type]


def question_text(value: Any, where: str) -> str:
    """A question cell as text: a number is fine, a null, empty, list or mapping is refused (never the
    text "None")."""
    if value is None or isinstance(value, (dict, list, tuple)) or not str(value).strip():
        got = "null" if value is None else type(value).__name__ if isinstance(value, (dict, list, tuple)) else "empty"
        raise DataError(f"{where}: the question is {got}; every row needs a question text")
    return str(value)


def answer_list(value: Any) -> list[str]:
    """Gold answers from a cell: string, number, list, SQuAD ``{"text": [...]}`` or list of dicts."""
    if value is None:
        return []
    if isinstance(value, dict):
        return answer_list(value.get("text", value.get("answer", value.get("answers"))))
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for v in value:
            out.extend(answer_list(v))
        return list(dict.fromkeys(out))
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, float) and value.is_integer():
        return [str(int(value))]
    s = str(value).strip()
    return [s] if s else []


def infer_answer_type(golds: list[str], context: str) -> str:
    if golds and all(_PURE_NUMBER.match(g) for g in golds):
        return "number"
    if context and any(g in context for g in golds):
        return "span"
    return "text"


def convert_rows(
    spec: Spec, rows: Iterable[tuple[int, dict[str, Any]]], cols: Columns, where: str, domain: str, line_word: str
) -> list[dict[str, Any]]:
    fixed_type = spec.options.get("type")
    gsm = spec.options.get("format") == "gsm8k"
    keep = _keep_unanswerable(spec)
    out = []
    for n, row in rows:
        at = f"{where}, {line_word} {n}"
        for key in (cols.question, cols.answer):  # context and id may be absent on a line
            if key not in row:
                raise DataError(f"{at}: missing column {key!r} (columns found: {', '.join(row) or 'none'})")
        question = question_text(row[cols.question], f"{at}: column {cols.question!r}")
        context = "" if cols.context is None or row.get(cols.context) is None else str(row[cols.context])
        if gsm:
            golds = [_gsm8k_answer(spec, row[cols.answer], at)]
        else:
            golds = answer_list(row[cols.answer])
        if not golds:
            if not keep:
                continue
            golds = [UNANSWERABLE]
        answer_type = fixed_type or ("number" if gsm else infer_answer_type(golds, context))
        rid = row.get(cols.id) if cols.id is not None else None
        rid = rid if rid not in (None, "") else f"{domain}-{n}"
        out.append(make_example(id=str(rid), domain=domain, question=str(question), context=context,
                                answers=golds, answer_type=answer_type))
    if not out:
        raise DataError(f"{where}: no examples with a gold answer in column {cols.answer!r}")
    return out


def _read_jsonl(spec: Spec, path: Path, max_bytes: int | None, max_rows: int | None = None) -> list[dict[str, Any]]:
    rows = list(files.iter_jsonl(path, max_bytes, max_rows))
    if not rows:
        raise DataError(f"{path}: file is empty")
    found = list(dict.fromkeys(k for _, obj in rows for k in obj))  # every key, in order of appearance
    cols = resolve_columns(spec, found, str(path))
    return convert_rows(spec, rows, cols, str(path), _domain(spec, path.name.split(".")[0]), "line")


def _read_table(spec: Spec, path: Path, max_bytes: int | None, max_rows: int | None = None) -> list[dict[str, Any]]:
    reader = files.read_csv if spec.prefix == "csv" else files.read_parquet
    columns, rows = reader(path, max_bytes, max_rows)
    if not rows:
        raise DataError(f"{path}: no rows (columns: {', '.join(columns) or 'none'})")
    cols = resolve_columns(spec, columns, str(path))
    word = "line" if spec.prefix == "csv" else "row"
    return convert_rows(spec, rows, cols, str(path), _domain(spec, path.name.split(".")[0]), word)


def _load_hf(spec: Spec) -> Parts:
    name, config, split = (spec.arg.split(":") + ["", ""])[:3]
    check_hub_name(name)  # again right before loading: a folder of that name may have appeared since
    where = f"hf:{name}"
    try:
        loaded = datasets.load_dataset(name, config or None, split=split or None)
    except Exception as e:  # the Hub client raises many types; all mean "could not load"
        raise DataError(_explain_hub_failure(name, e)) from None
    domain = _domain(spec, spec_name(spec))
    parts_in: dict[str, datasets.Dataset]
    if isinstance(loaded, datasets.Dataset):
        parts_in = {"_unsplit": loaded}
    else:
        parts_in = {}
        for k, ds in loaded.items():
            canon = SPLIT_ALIASES.get(k.lower())
            if canon and canon not in parts_in:
                parts_in[canon] = ds
        if not parts_in:
            raise DataError(f"{where}: no train/validation/test split (splits: {', '.join(loaded)})")
        if list(parts_in) == ["train"]:
            parts_in = {"_unsplit": parts_in["train"]}
    out: Parts = {}
    for k, ds in parts_in.items():
        cols = resolve_columns(spec, ds.column_names, f"{where} ({k.strip('_')})")
        rows = ((i, row) for i, row in enumerate(ds, 1))
        out[k] = convert_rows(spec, rows, cols, f"{where} ({k.strip('_')})", domain, "row")
    return out


def _explain_hub_failure(name: str, e: Exception) -> str:
    text = f"{type(e).__name__}: {e}"
    low = text.lower()
    if any(s in low for s in ("offline", "couldn't reach", "connection", "network", "resolve", "timed out")):
        return (f"cannot load Hub data set {name!r}: the Hugging Face Hub is unreachable (offline) and the data set "
                f"is not in the local cache; download it once online, or use a local file (jsonl:/csv:/parquet:)")
    if "doesn't exist" in low or "not found" in low or "datasetnotfound" in low:
        return f"cannot load Hub data set {name!r}: no such data set on the Hub (check the name)"
    return f"cannot load Hub data set {name!r}: {text.splitlines()[0]}"


def _load_builtin(spec: Spec, seed: int) -> Parts:
    tasks = builtin.parse_builtin(spec.arg.lower())
    sizes = builtin_sizes(spec)
    out: Parts = {k: [] for k in SPLITS}
    for task, ood in tasks:
        for k, rows in builtin.generate_task(task, ood, sizes, seed).items():
            out[k].extend(rows)
    if "domain" in spec.options:
        out = {k: [{**r, "domain": spec.options["domain"]} for r in rows] for k, rows in out.items()}
    if len(tasks) > 1:  # interleave domains in a seeded order so a prefix shows every task
        for k in SPLITS:
            seeded_rng("builtin-mix", spec.arg, k, seed).shuffle(out[k])
    return out


def known_prefixes() -> tuple[str, ...]:
    return PREFIXES
