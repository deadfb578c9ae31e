"""Run bundles: one zip file that carries a trained run from one studio (or machine) to another.

A bundle holds exactly these members and nothing else:

    manifest.json              format and version, the base model's name and sizes, the run config,
                               the metric history, every evaluation with its per-example routing
                               records, the checkpoint steps, how the run was made (provenance) and,
                               optionally, the frozen base model's own evaluation (the floor)
    adapter.CONFIG_NAME        the adapter's own config, as ``save_adapter`` writes it
    adapter.WEIGHTS_NAME       the adapter's tensors (safetensors)
    ADAPTER_EXTRAS             optional further adapter files (JSON), verbatim

Reading never extracts anything to disk: members are looked up by name from that allow-list (a
member named ``../x`` or anything else is refused), their unpacked sizes are checked from the zip
directory before a byte is inflated and every read is bounded, tensors are parsed as safetensors
only (a pickle is refused), and the base model must be one this machine can load with the sizes
the adapter was trained for. Every refusal is one ``BundleError`` line naming the problem.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .adapter import CONFIG_NAME, PEFT_CONFIG_NAME, WEIGHTS_NAME
from .bundle_values import check_manifest, check_tensors
from .callbacks import EvalReport, StepMetrics, TrainerCallback, eval_points, step_points
from .config import RunConfig
from .errors import BundleError, ConfigError
from .eval_record import EvalRecord
from .models import DIM_KEYS, model_dims

FORMAT = "ptmoe-run-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MEMBERS = (MANIFEST, CONFIG_NAME, WEIGHTS_NAME)  # every bundle has these
# Further adapter files a bundle carries verbatim where the adapter folder has them (JSON only, e.g. a
# PEFT-format adapter_config.json beside the studio's own record); allowed, never required.
ADAPTER_EXTRAS: tuple[str, ...] = (PEFT_CONFIG_NAME,)
SUFFIX = ".ptmoe.zip"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".npz", ".joblib")
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)  # fixed member dates: the same run always gives the same bytes
MB = 1024 * 1024


@dataclass(frozen=True)
class BundleLimits:
    """Unpacked-size caps, checked from the zip directory before reading and again while reading."""

    manifest_bytes: int = 64 * MB  # ~1 KB per evaluated example: room for tens of thousands
    config_bytes: int = 1 * MB
    weights_bytes: int = 512 * MB  # LoRA on a 1B model at a large rank still fits
    total_bytes: int = 576 * MB
    max_records: int = 200_000

    def member_cap(self, name: str) -> int:
        return self.manifest_bytes if name == MANIFEST else self.weights_bytes if name == WEIGHTS_NAME \
            else self.config_bytes


@dataclass
class Evaluation:
    """One evaluation: scores per data set (and "macro"), per-example records, teacher-forced loss."""

    step: int
    scores: dict[str, dict[str, float]]
    records: list[EvalRecord] = field(default_factory=list)
    loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "loss": self.loss, "scores": self.scores,
                "records": [r.to_dict() for r in self.records]}

    @classmethod
    def from_dict(cls, d: Any, label: str = "evaluation", limits: BundleLimits | None = None) -> Evaluation:
        """Validated: raises ``BundleError`` naming ``label`` when ``d`` is malformed."""
        return _evaluation(d, label, limits or BundleLimits())

    @classmethod
    def from_report(cls, r: EvalReport) -> Evaluation:
        return cls(step=int(r.step), scores={k: dict(v) for k, v in r.scores.items()},
                   records=[EvalRecord.of(x) for x in r.records], loss=r.loss)


@dataclass
class Floor:
    """The frozen base model's evaluation on a run's evaluation sets (see ``floor.py``)."""

    key: str  # floor.floor_key of the run config: same model, sets, formatting, answer length
    evaluation: Evaluation

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, **self.evaluation.to_dict()}


@dataclass
class RunBundle:
    """A bundle in memory. ``weights`` are the safetensors bytes exactly as stored."""

    name: str
    config: dict[str, Any]  # RunConfig.to_dict()
    base_model: dict[str, Any]  # name + hidden_size, vocab_size, num_hidden_layers
    adapter_config: dict[str, Any]
    weights: bytes
    metrics: dict[str, dict[str, list]] = field(default_factory=dict)  # key -> {"steps": [...], "values": [...]}
    evaluations: list[Evaluation] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)  # steps; the checkpoint files stay behind
    trainable_params: int | None = None
    info: dict[str, Any] = field(default_factory=dict)  # device, dtype, example counts, times
    provenance: dict[str, Any] = field(default_factory=dict)  # command, device, date, source
    floor: Floor | None = None
    created_at: float = field(default_factory=time.time)
    extras: dict[str, bytes] = field(default_factory=dict)  # ADAPTER_EXTRAS present, as stored

    @property
    def method(self) -> str:
        return str(self.config.get("method", {}).get("method", ""))

    @property
    def bundle_id(self) -> str:
        """The trained artifact's identity: the same adapter gives the same id, whoever exported it."""
        h = hashlib.sha256(_canonical(self.adapter_config))
        h.update(self.weights)
        return h.hexdigest()[:24]

    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(self.config)

    def manifest(self) -> dict[str, Any]:
        cfg_bytes = _canonical(self.adapter_config, indent=2)
        return json_safe({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "bundle_id": self.bundle_id,
            "created_at": self.created_at,
            "base_model": self.base_model,
            "run": {"name": self.name, "method": self.method, "config": self.config,
                    "trainable_params": self.trainable_params, "info": self.info},
            "metrics": self.metrics,
            "evaluations": [e.to_dict() for e in self.evaluations],
            "checkpoints": list(self.checkpoints),
            "provenance": self.provenance,
            "floor": self.floor.to_dict() if self.floor else None,
            "files": {CONFIG_NAME: _file_entry(cfg_bytes), WEIGHTS_NAME: _file_entry(self.weights),
                      **{k: _file_entry(v) for k, v in self.extras.items()}},
        })

    def write_adapter(self, directory: str | Path) -> Path:
        """The adapter files, ready for ``load_adapter`` (config last: its presence marks done)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / WEIGHTS_NAME).write_bytes(self.weights)
        for name, data in self.extras.items():
            (d / name).write_bytes(data)
        (d / CONFIG_NAME).write_bytes(_canonical(self.adapter_config, indent=2))
        return d


# ---------------------------------------------------------------------------------------------
# Writing


def write_bundle(bundle: RunBundle, path: str | Path) -> Path:
    """Write ``bundle`` to ``path`` (atomically: a temporary file renamed into place)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    members = {
        MANIFEST: json.dumps(bundle.manifest(), indent=1, sort_keys=True, allow_nan=False).encode(),
        CONFIG_NAME: _canonical(bundle.adapter_config, indent=2),
        WEIGHTS_NAME: bundle.weights,
        **bundle.extras,
    }
    tmp = p.with_name(p.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for name, data in members.items():
                info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def bundle_from_adapter_dir(adapter_dir: str | Path, *, name: str, config: RunConfig | Mapping[str, Any],
                            limits: BundleLimits | None = None, **fields: Any) -> RunBundle:
    """A bundle of the adapter in ``adapter_dir`` plus the run's records given as ``fields``."""
    limits = limits or BundleLimits()
    d = Path(adapter_dir)
    cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
    for p, cap in ((cfg_path, limits.config_bytes), (w_path, limits.weights_bytes)):
        if not p.is_file():
            raise BundleError(f"{d} is not an adapter folder: {p.name} is missing")
        if p.stat().st_size > cap:
            raise BundleError(f"{p} is {_size(p.stat().st_size)}, more than a bundle may hold ({_size(cap)})")
    adapter_config = _parse_json(cfg_path.read_bytes(), str(cfg_path))
    extras = {}
    for extra in ADAPTER_EXTRAS:
        p = d / extra
        if p.is_file() and p.stat().st_size <= limits.config_bytes:
            extras[extra] = p.read_bytes()
            _parse_json(extras[extra], str(p))
    cfg = config.to_dict() if isinstance(config, RunConfig) else dict(config)
    base = {k: adapter_config.get("base_model", {}).get(k) for k in ("name", *DIM_KEYS)}
    return RunBundle(name=name, config=cfg, base_model=base, adapter_config=adapter_config,
                     weights=w_path.read_bytes(), trainable_params=adapter_config.get("trainable_params"),
                     extras=extras, **fields)


class BundleRecorder(TrainerCallback):
    """Collects what the trainer reports (metric history, evaluations, checkpoint steps, run info)
    for a bundle, under the same metric names the studio's database uses."""

    def __init__(self) -> None:
        self.metrics: dict[str, dict[str, list]] = {}
        self.evaluations: list[Evaluation] = []
        self.checkpoints: list[int] = []
        self.info: dict[str, Any] = {}

    def _add(self, step: int, points: list[tuple[str, float]]) -> None:
        for key, value in points:
            series = self.metrics.setdefault(key, {"steps": [], "values": []})
            series["steps"].append(int(step))
            series["values"].append(value)

    def on_train_begin(self, total_steps: int, start_step: int, info: dict[str, Any]) -> None:
        self.info.update({k: v for k, v in info.items() if isinstance(v, (str, int, float, bool)) or v is None})
        self.info.update(total_steps=total_steps, started_at=time.time())

    def on_step(self, m: StepMetrics) -> None:
        self._add(m.step, step_points(m))

    def on_evaluate(self, report: EvalReport) -> None:
        self._add(report.step, eval_points(report))
        self.evaluations.append(Evaluation.from_report(report))

    def on_checkpoint(self, step: int, path: Path) -> None:
        if step not in self.checkpoints:
            self.checkpoints.append(int(step))

    def on_train_end(self, status: str, step: int, adapter_dir: Path | None) -> None:
        self.info.update(status=status, step=step, ended_at=time.time())


def bundle_from_training(cfg: RunConfig, result: Any, recorder: BundleRecorder, *,
                         provenance: Mapping[str, Any] | None = None, floor: Floor | None = None) -> RunBundle:
    """A bundle of a finished ``trainer.train`` run that reported to ``recorder``."""
    if getattr(result, "status", None) != "finished" or result.adapter_dir is None:
        raise BundleError(f"run {cfg.name!r} did not finish (status {getattr(result, 'status', None)!r}); "
                          "only a finished run has an adapter to bundle")
    return bundle_from_adapter_dir(
        result.adapter_dir, name=cfg.name, config=cfg, metrics=recorder.metrics, evaluations=recorder.evaluations,
        checkpoints=sorted(recorder.checkpoints), info=dict(recorder.info), provenance=dict(provenance or {}),
        floor=floor)


# ---------------------------------------------------------------------------------------------
# Reading


def read_bundle(path: str | Path, *, expect_model: str | None = None, check_base: bool = True,
                limits: BundleLimits | None = None) -> RunBundle:
    """Read and validate a bundle; raise ``BundleError`` (one line) on anything it does not accept.

    ``expect_model``: refuse a bundle for any other base model. ``check_base``: refuse a base model
    this machine cannot load with the adapter's sizes (see ``models.model_dims``)."""
    limits = limits or BundleLimits()
    p = Path(path)
    label = p.name
    if not p.is_file():
        raise BundleError(f"{label}: no such file")
    if p.stat().st_size > limits.total_bytes:
        raise BundleError(f"{label} is {_size(p.stat().st_size)}; a bundle may be at most {_size(limits.total_bytes)}")
    try:
        with zipfile.ZipFile(p) as zf:
            data = _read_members(zf, label, limits)
    except BundleError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise BundleError(f"{label} is not a readable bundle (truncated or corrupt zip: {_first_line(e)})") from e
    return _parse(data, label, expect_model=expect_model, check_base=check_base, limits=limits)


def _read_members(zf: zipfile.ZipFile, label: str, limits: BundleLimits) -> dict[str, bytes]:
    infos = zf.infolist()
    allowed = (*MEMBERS, *ADAPTER_EXTRAS)
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if name not in allowed:
            if name.lower().endswith(PICKLE_SUFFIXES):
                raise BundleError(f"{label} holds {name!r}, a pickle-format file; bundles carry safetensors only")
            raise BundleError(f"{label} holds an unexpected member {name!r}; a bundle holds only {', '.join(allowed)}")
        if name in seen:
            raise BundleError(f"{label} holds {name!r} twice")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise BundleError(f"{label}: member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BundleError(f"{label}: member {name!r} uses an unsupported compression method")
        cap = limits.member_cap(name)
        if info.file_size > cap:
            raise BundleError(f"{label}: member {name!r} would unpack to {_size(info.file_size)}; "
                              f"the limit is {_size(cap)}")
    missing = [m for m in MEMBERS if m not in seen]
    if missing:
        raise BundleError(f"{label} is not a complete bundle: {', '.join(missing)} missing")
    total = sum(i.file_size for i in infos)
    if total > limits.total_bytes:
        raise BundleError(f"{label} would unpack to {_size(total)}; the limit is {_size(limits.total_bytes)}")
    out = {}
    for info in infos:
        cap = limits.member_cap(info.filename)
        with zf.open(info) as f:
            data = f.read(cap + 1)  # bounded even if the directory lied about the size
        if len(data) > cap:
            raise BundleError(f"{label}: member {info.filename!r} unpacks to more than {_size(cap)}")
        out[info.filename] = data
    return out


def _parse(data: dict[str, bytes], label: str, *, expect_model: str | None, check_base: bool,
           limits: BundleLimits) -> RunBundle:
    m = _parse_json(data[MANIFEST], f"{label}: {MANIFEST}")
    if m.get("format") != FORMAT:
        raise BundleError(f"{label} is not a PT-MoE run bundle (format {m.get('format')!r}, expected {FORMAT!r})")
    version = m.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{label} has bundle format version {version!r}; this build reads version {FORMAT_VERSION}")
    extras = {k: v for k, v in data.items() if k in ADAPTER_EXTRAS}
    for name in (CONFIG_NAME, WEIGHTS_NAME, *extras):
        want = (_dict(m, "files", label).get(name) or {}).get("sha256")
        if want != hashlib.sha256(data[name]).hexdigest():
            raise BundleError(f"{label}: {name} does not match the checksum in its manifest (altered or corrupt)")
    adapter_config = _parse_json(data[CONFIG_NAME], f"{label}: {CONFIG_NAME}")
    for name, raw in extras.items():
        _parse_json(raw, f"{label}: {name}")
    weights = data[WEIGHTS_NAME]
    n_params = _check_weights(weights, label)

    run = _dict(m, "run", label)
    try:
        cfg = RunConfig.from_dict(_dict(run, "config", label)).validate()
        # Parsed as a run config parses its method (unknown keys refused, defaults as this build has them).
        method = RunConfig.from_dict({"method": _dict(adapter_config, "method", label)}).method
        method.validate()
    except (ConfigError, TypeError) as e:
        raise BundleError(f"{label}: invalid run settings ({_first_line(e)})") from e
    if method.method != cfg.method.method:
        raise BundleError(f"{label}: the adapter is {method.method} but the run config says {cfg.method.method}")
    declared = adapter_config.get("trainable_params")
    if not _is_int(declared) or not 0 < declared <= n_params:  # the file may also hold buffers (router statistics)
        raise BundleError(f"{label}: the adapter config declares {declared!r} trainable parameters; its tensors "
                          f"hold {n_params:,} values")

    base = _dict(m, "base_model", label)
    a_base = _dict(adapter_config, "base_model", label)
    if any(base.get(k) != a_base.get(k) for k in ("name", *DIM_KEYS) if k in a_base):
        raise BundleError(f"{label}: the manifest's base model {base.get('name')!r} does not match the adapter's "
                          f"{a_base.get('name')!r}")
    if cfg.model.name != base.get("name"):
        raise BundleError(f"{label}: the run config names base model {cfg.model.name!r}, the adapter "
                          f"{base.get('name')!r}")
    if expect_model is not None and base.get("name") != expect_model:
        raise BundleError(f"{label} is for base model {base.get('name')!r}, not {expect_model!r}")
    if check_base:
        check_base_model(base, label)
    check_manifest(m, cfg, label)
    hidden = base.get("hidden_size") or (model_dims(str(base.get("name"))) or {}).get("hidden_size")
    if isinstance(hidden, int) and 0 < hidden <= 65536:
        layers = base.get("num_hidden_layers")
        check_tensors(_tensor_shapes(weights), cfg, hidden, layers if isinstance(layers, int) else None, label)

    evaluations = [_evaluation(e, label, limits) for e in _list(m, "evaluations", label)]
    floor_d = m.get("floor")
    floor = None
    if floor_d is not None:
        if not isinstance(floor_d, dict) or not isinstance(floor_d.get("key"), str):
            raise BundleError(f"{label}: the floor evaluation is malformed")
        floor = Floor(key=floor_d["key"], evaluation=_evaluation(floor_d, label, limits))
    if sum(len(e.records) for e in evaluations) + (len(floor.evaluation.records) if floor else 0) > limits.max_records:
        raise BundleError(f"{label} holds more than {limits.max_records:,} evaluation records")
    return RunBundle(
        name=_text(run.get("name"), "run name", label),
        config=cfg.to_dict(),
        base_model={k: base.get(k) for k in ("name", *DIM_KEYS)},
        adapter_config=adapter_config,
        weights=weights,
        metrics=_metrics(m.get("metrics") or {}, label),
        evaluations=evaluations,
        checkpoints=sorted(int(s) for s in _list(m, "checkpoints", label) if _is_int(s)),
        trainable_params=declared,
        info=dict(run.get("info") or {}) if isinstance(run.get("info") or {}, dict) else {},
        provenance=dict(m.get("provenance") or {}) if isinstance(m.get("provenance") or {}, dict) else {},
        floor=floor,
        created_at=float(m["created_at"]) if isinstance(m.get("created_at"), (int, float)) else time.time(),
        extras=extras,
    )


def check_base_model(base: Mapping[str, Any], label: str = "bundle") -> None:
    """Refuse a base model this machine would not load with the sizes the adapter was trained for."""
    name = base.get("name")
    if not isinstance(name, str) or not name:
        raise BundleError(f"{label} does not name its base model")
    have = model_dims(name)
    if have is None:
        raise BundleError(f"{label} was trained on {name!r}, which this installation cannot load "
                          "(not an embedded model, a local model folder, or a model in the Hugging Face cache)")
    diff = [f"{k} {base.get(k)} (here {have[k]})" for k in DIM_KEYS if base.get(k) is not None and base[k] != have[k]]
    if diff:
        raise BundleError(f"{label} was trained on another {name!r}: {', '.join(diff)}")


def _check_weights(weights: bytes, label: str) -> int:
    """Parse safetensors (never unpickle); returns how many values its tensors hold."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(weights)
    except (SafetensorError, ValueError, RuntimeError, OSError) as e:
        if _looks_pickled(weights):
            raise BundleError(f"{label}: {WEIGHTS_NAME} holds pickled data (a torch.save file?), not safetensors; "
                              "refused") from e
        raise BundleError(f"{label}: {WEIGHTS_NAME} is not a valid safetensors file ({_first_line(e)})") from e
    if not tensors:
        raise BundleError(f"{label}: {WEIGHTS_NAME} holds no tensors")
    for k, t in tensors.items():
        if t.is_floating_point() and not bool(t.float().isfinite().all()):
            raise BundleError(f"{label}: tensor {k} contains NaN or infinite values")
    return int(sum(t.numel() for t in tensors.values()))


def _tensor_shapes(weights: bytes) -> dict[str, tuple[int, ...]]:
    """Names and shapes from a safetensors header (already parsed once by ``_check_weights``)."""
    n = int.from_bytes(weights[:8], "little")
    header = json.loads(weights[8:8 + n])
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def _looks_pickled(data: bytes) -> bool:
    """A pickle (protocol 2+ starts with PROTO) or torch.save's zip container."""
    return (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or data[:4] == b"PK\x03\x04"


def _evaluation(d: Any, label: str, limits: BundleLimits) -> Evaluation:
    if not isinstance(d, dict) or not _is_int(d.get("step")) or not isinstance(d.get("scores"), dict):
        raise BundleError(f"{label}: an evaluation entry is malformed (needs step and scores)")
    scores = {}
    for name, sc in d["scores"].items():
        if not isinstance(sc, dict):
            raise BundleError(f"{label}: the scores of {name!r} at step {d['step']} are malformed")
        scores[str(name)] = {str(k): v for k, v in sc.items() if _is_num(v)}
    records = d.get("records") or []
    if not isinstance(records, list) or len(records) > limits.max_records:
        raise BundleError(f"{label}: the records of the evaluation at step {d['step']} are malformed or too many")
    for r in records:
        if not isinstance(r, dict) or not isinstance(r.get("id"), (str, int)) or not isinstance(r.get("prediction"), str):
            raise BundleError(f"{label}: an evaluation record at step {d['step']} is malformed (needs id and prediction)")
        probs = r.get("probs")
        if probs is not None and (not isinstance(probs, list) or not all(_is_num(x) for x in probs)):
            raise BundleError(f"{label}: an evaluation record at step {d['step']} has malformed router probabilities")
    try:
        typed = [EvalRecord.from_dict(r) for r in records]
    except (TypeError, ValueError) as e:
        raise BundleError(f"{label}: an evaluation record at step {d['step']} is malformed ({e})") from e
    loss = d.get("loss")
    return Evaluation(step=int(d["step"]), scores=scores, records=typed, loss=float(loss) if _is_num(loss) else None)


def _metrics(d: Any, label: str) -> dict[str, dict[str, list]]:
    if not isinstance(d, dict):
        raise BundleError(f"{label}: the metric history is malformed")
    out = {}
    for key, s in d.items():
        steps, values = (s.get("steps"), s.get("values")) if isinstance(s, dict) else (None, None)
        if (not isinstance(steps, list) or not isinstance(values, list) or len(steps) != len(values)
                or not all(_is_int(x) for x in steps) or not all(v is None or _is_num(v) for v in values)):
            raise BundleError(f"{label}: metric {str(key)[:80]!r} is malformed")
        out[str(key)] = {"steps": [int(x) for x in steps], "values": [math.nan if v is None else float(v) for v in values]}
    return out


# ---------------------------------------------------------------------------------------------
# Helpers


def _parse_json(data: bytes, where: str) -> dict[str, Any]:
    try:
        d = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BundleError(f"{where} is not valid JSON ({_first_line(e)})") from e
    if not isinstance(d, dict):
        raise BundleError(f"{where} is not a JSON object")
    return d


def _dict(d: Mapping[str, Any], key: str, label: str) -> dict[str, Any]:
    v = d.get(key)
    if not isinstance(v, dict):
        raise BundleError(f"{label}: {key!r} is missing or not an object")
    return v


def _list(d: Mapping[str, Any], key: str, label: str) -> list:
    v = d.get(key, [])
    if not isinstance(v, list):
        raise BundleError(f"{label}: {key!r} is not a list")
    return v


def _text(v: Any, what: str, label: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise BundleError(f"{label}: the {what} is missing")
    return v.strip()[:200]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _canonical(d: Any, indent: int | None = None) -> bytes:
    return json.dumps(json_safe(d), indent=indent, sort_keys=True, allow_nan=False).encode()


def json_safe(v: Any) -> Any:
    """JSON without NaN / infinity (they become null) and with numpy/torch scalars as numbers."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return json_safe(v.item())
    if isinstance(v, Path):
        return str(v)
    return v


def _file_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _size(n: int) -> str:
    for unit, div in (("GB", 1024**3), ("MB", MB), ("KB", 1024)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} bytes"


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


__all__ = [
    "FORMAT",
    "ADAPTER_EXTRAS",
    "FORMAT_VERSION",
    "MEMBERS",
    "SUFFIX",
    "BundleError",
    "BundleLimits",
    "BundleRecorder",
    "Evaluation",
    "Floor",
    "RunBundle",
    "bundle_from_adapter_dir",
    "bundle_from_training",
    "check_base_model",
    "read_bundle",
    "write_bundle",
]
