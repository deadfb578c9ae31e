"""How the studio is served: host, port, auth, folders, upload limit, demo mode and its limits.

Every setting comes from a command-line flag, else an environment variable, else a default.
Binding to anything but a loopback address needs credentials (``--auth`` or ``PTMOE_AUTH``), except
on a Hugging Face Space (``SPACE_ID`` set), which binds 0.0.0.0 behind the Hub's own front end. A
Space is public, so it is safe by default, GPU or not: demo mode, with ``DEMO_LIMITS`` on every knob
a visitor can turn. The owner lifts them by setting the Space secret ``PTMOE_AUTH`` (visitors then
log in); ``PTMOE_DEMO=0`` without credentials is refused on a Space.
On a Space the database, runs and data live under its persistent storage ``/data``
(``PTMOE_SPACE_STORAGE`` overrides the path) when it has it; without it they are temporary and the
page says so. ``PTMOE_GALLERY`` names the gallery folder (empty: none).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .limits import DEMO_LIMITS, Limits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MODEL = "smollm2-135m"
DEFAULT_UPLOAD_MB = 20
GALLERY_DIR = Path(__file__).resolve().parents[1] / "gallery"  # example runs an empty studio imports
SPACE_STORAGE = "/data"  # a Hugging Face Space's persistent storage, when the Space has it

DEMO_UPLOAD_TTL_H = 24.0  # demo mode: uploads older than this are deleted
UPLOADS_TOTAL_MB = 5000  # all uploads together, outside demo mode (demo: Limits.uploads_mb)




class SettingsError(ValueError):
    """A serving setting that is unsafe or malformed; the message says what to change."""


@dataclass(frozen=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    auth: tuple[tuple[str, str], ...] = ()  # (user, password) pairs; empty = no login
    db: str | None = None  # SQLAlchemy URL or SQLite path; None = storage's default (PTMOE_DB, ./runs/studio.db)
    data_dir: Path = field(default_factory=lambda: Path("data").resolve())
    runs_dir: Path | None = None  # None = storage's default (next to the SQLite file)
    model: str = DEFAULT_MODEL  # preselected base model
    device: str = "auto"
    max_upload_mb: int = DEFAULT_UPLOAD_MB
    demo: bool = False  # small defaults and limits (a public Space without a GPU)
    gpu: bool = False  # a CUDA GPU is present: larger training defaults
    space_id: str | None = None
    inspect_concurrency: int = 1  # inspection generations running at once
    inspect_batch_size: int = 8  # inputs per generation batch in Inspect
    model_cache_size: int = 2  # adapters (with their base models) kept in memory for Inspect
    poll_s: float = 2.0  # how often open pages refresh the live run
    gallery_dir: Path | None = GALLERY_DIR  # None: no gallery at first start
    persistent: bool = True  # False: a Space without persistent storage (runs vanish on restart)
    upload_ttl_h: float | None = None  # uploads older than this are deleted (demo mode: DEMO_UPLOAD_TTL_H)
    allowed_hosts: tuple[str, ...] = ()  # Host names accepted besides the bind address's (e.g. a reverse proxy's)
    ray: str | None = None  # a Ray cluster's address: runs go there as Ray jobs (needs a server database)
    gpus_per_run: float = 0.0  # Ray: each run's share of a GPU (0.25: four runs per GPU)
    runs_per_device: int = 1  # local: runs sharing each GPU

    @property
    def on_space(self) -> bool:
        return self.space_id is not None

    @property
    def limits(self) -> Limits | None:
        """The demo limits, or None: no ceilings beyond the engine's own validation."""
        return DEMO_LIMITS if self.demo else None

    @property
    def max_data_bytes(self) -> int:
        """What the web process reads of one data file (previews, unzipped too): the upload limit."""
        return self.max_upload_mb * 1024 * 1024

    @property
    def max_uploads_mb(self) -> int:
        """All uploads together (``data/uploads/``): a visitor cannot fill the disk 20 MB at a time."""
        return self.limits.uploads_mb if self.limits is not None else UPLOADS_TOTAL_MB

    def delete_refusal(self, experiment: str) -> str | None:
        """Who may delete runs: anyone who can reach a private studio (logged in, when it has a login);
        in demo mode nobody without a login (visitors share the runs), and gallery runs never."""
        if self.demo and not self.auth:
            return "runs cannot be deleted in this shared demo (it has no login; its owner can set PTMOE_AUTH)"
        if self.demo and experiment == "gallery":
            return "gallery runs cannot be deleted in demo mode (hide them with show gallery runs)"
        return None

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def max_file_size(self) -> str:
        return f"{self.max_upload_mb}mb"

    def gradio_auth(self) -> list[tuple[str, str]] | None:
        return list(self.auth) or None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def parse_auth(value: str | None) -> tuple[tuple[str, str], ...]:
    """``user:pass`` or several separated by commas."""
    if not value:
        return ()
    pairs = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep or not user.strip() or not password:
            raise SettingsError(f"auth must look like user:password (got {item.split(':')[0]!r}:…)")
        pairs.append((user.strip(), password))
    return tuple(pairs)


def has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken torch install: treat as CPU
        return False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python launch.py",
        description="PT-MoE Studio: train PT-MoE adapters and inspect their routers in the browser.",
    )
    p.add_argument("--host", help=f"address to bind (default {DEFAULT_HOST}; env PTMOE_HOST). "
                                  "A non-loopback address needs --auth.")
    p.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT}; env PTMOE_PORT or GRADIO_SERVER_PORT)")
    p.add_argument("--auth", help="login as user:password (several: comma-separated; env PTMOE_AUTH)")
    p.add_argument("--db", help="database: SQLite file path or SQLAlchemy URL (env PTMOE_DB; default runs/studio.db)")
    p.add_argument("--data-dir", help="folder of data files the app may read; uploads go to its uploads/ "
                                      "(env PTMOE_DATA_DIR; default ./data)")
    p.add_argument("--runs-dir", help="folder for run outputs (env PTMOE_RUNS_DIR; default next to the database)")
    p.add_argument("--model", help=f"preselected base model (env PTMOE_MODEL; default {DEFAULT_MODEL})")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="device for inspection (default auto)")
    p.add_argument("--max-upload-mb", type=int, help=f"upload size limit in MB (env PTMOE_MAX_UPLOAD_MB; "
                                                     f"default {DEFAULT_UPLOAD_MB})")
    p.add_argument("--demo", action="store_true", default=None, help="demo mode: small defaults and limits "
                                                                     "(env PTMOE_DEMO=1; automatic on a Space "
                                                                     "unless the secret PTMOE_AUTH is set)")
    p.add_argument("--inspect-concurrency", type=int, help="inspection generations at once (default 1)")
    p.add_argument("--allowed-hosts", help="extra Host names to accept, comma-separated, e.g. the name a reverse "
                                           "proxy forwards (env PTMOE_ALLOWED_HOSTS). Requests for any other host "
                                           "are refused, except on 0.0.0.0 without this list")
    p.add_argument("--ray", help="run jobs on this Ray cluster (its dashboard address, e.g. http://HEAD:8265; env "
                                 "PTMOE_RAY_ADDRESS); needs a PostgreSQL --db and a runs folder every node sees")
    p.add_argument("--gpus-per-run", type=float, help="with --ray: GPUs per run, e.g. 0.25 (env PTMOE_GPUS_PER_RUN)")
    p.add_argument("--runs-per-device", type=int, help="without --ray: runs sharing each GPU (default 1; env "
                                                       "PTMOE_RUNS_PER_DEVICE)")
    return p


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


def from_args(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
              gpu: bool | None = None) -> Settings:
    """Settings from flags, then environment variables, then defaults; raise SettingsError when unsafe."""
    env = os.environ if env is None else env
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    space_id = env.get("SPACE_ID") or None
    host = args.host or env.get("PTMOE_HOST") or ("0.0.0.0" if space_id else DEFAULT_HOST)
    port_raw = args.port if args.port is not None else env.get("PTMOE_PORT") or env.get("GRADIO_SERVER_PORT")
    try:
        port = int(port_raw) if port_raw not in (None, "") else DEFAULT_PORT
    except ValueError:
        raise SettingsError(f"port must be a number, got {port_raw!r}") from None
    if not 0 < port < 65536:
        raise SettingsError(f"port must be between 1 and 65535, got {port}")
    auth = parse_auth(args.auth if args.auth is not None else env.get("PTMOE_AUTH"))
    if not is_loopback(host) and not auth and not space_id:
        raise SettingsError(
            f"refusing to serve on {host}: anyone who can reach this machine could train and delete runs. "
            "Give credentials with --auth user:password (or the environment variable PTMOE_AUTH), "
            f"or bind to {DEFAULT_HOST}."
        )
    upload_raw = args.max_upload_mb if args.max_upload_mb is not None else env.get("PTMOE_MAX_UPLOAD_MB")
    try:
        max_upload = int(upload_raw) if upload_raw not in (None, "") else DEFAULT_UPLOAD_MB
    except ValueError:
        raise SettingsError(f"max upload size must be a whole number of MB, got {upload_raw!r}") from None
    if max_upload < 1:
        raise SettingsError(f"max upload size must be at least 1 MB, got {max_upload}")
    if gpu is None:
        gpu = has_gpu()
    demo = _demo_mode(args.demo, env.get("PTMOE_DEMO"), space_id, auth)
    conc = args.inspect_concurrency or int(env.get("PTMOE_INSPECT_CONCURRENCY") or 1)
    if conc < 1:
        raise SettingsError(f"inspect concurrency must be >= 1, got {conc}")
    db = args.db or None
    data_raw = args.data_dir or env.get("PTMOE_DATA_DIR")
    runs = args.runs_dir or env.get("PTMOE_RUNS_DIR")
    persistent = True
    if space_id and not (db or env.get("PTMOE_DB") or runs):
        # A Space keeps files only under its persistent storage (when it has it); elsewhere they vanish.
        root = Path(env.get("PTMOE_SPACE_STORAGE") or SPACE_STORAGE)
        persistent = root.is_dir() and os.access(root, os.W_OK | os.X_OK)
        if persistent:
            home = root / "ptmoe-studio"
            db, runs = str(home / "runs" / "studio.db"), str(home / "runs")
            data_raw = data_raw or str(home / "data")
    data_dir = Path(data_raw or "data").expanduser().resolve()
    gallery = env.get("PTMOE_GALLERY")
    return Settings(
        host=host,
        port=port,
        auth=auth,
        db=db,
        data_dir=data_dir,
        runs_dir=Path(runs).expanduser().resolve() if runs else None,
        model=args.model or env.get("PTMOE_MODEL") or DEFAULT_MODEL,
        device=args.device or env.get("PTMOE_DEVICE") or "auto",
        max_upload_mb=max_upload,
        demo=bool(demo),
        gpu=bool(gpu),
        space_id=space_id,
        inspect_concurrency=conc,
        gallery_dir=GALLERY_DIR if gallery is None else (Path(gallery).expanduser().resolve() if gallery else None),
        persistent=persistent,
        upload_ttl_h=DEMO_UPLOAD_TTL_H if demo else None,
        allowed_hosts=_host_list(args.allowed_hosts if args.allowed_hosts is not None
                                 else env.get("PTMOE_ALLOWED_HOSTS")),
        ray=None if space_id else (args.ray or env.get("PTMOE_RAY_ADDRESS") or None),  # a Space runs locally
        gpus_per_run=_number("gpus per run", args.gpus_per_run, env.get("PTMOE_GPUS_PER_RUN"), 0.0, float),
        runs_per_device=_number("runs per device", args.runs_per_device, env.get("PTMOE_RUNS_PER_DEVICE"), 1, int),
    )


def _number(what: str, flag: Any, env_value: str | None, default: Any, kind: type) -> Any:
    raw = flag if flag is not None else env_value
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{what} must be a number, got {raw!r}") from None
    if value < (1 if kind is int else 0):
        raise SettingsError(f"{what} must be {'>= 1' if kind is int else '>= 0'}, got {raw!r}")
    return value


def _host_list(value: str | None) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in (value or "").split(",") if h.strip())
    bad = [h for h in hosts if "*" in h[1:] or (h.startswith("*") and not h.startswith("*.")) or "/" in h]
    if bad:
        raise SettingsError(f"allowed hosts are names like studio.example.org or *.example.org, got {bad[0]!r}")
    return hosts


def _demo_mode(flag: bool | None, env_value: str | None, space_id: str | None, auth: tuple) -> bool:
    """``--demo`` or ``PTMOE_DEMO`` when given; on a Space demo mode unless credentials are set, and it
    cannot be switched off without them (a Space is public: anyone could train anything)."""
    if flag:
        return True
    explicit = None if env_value in (None, "") else _truthy(env_value)
    if space_id and not auth:
        if explicit is False:
            raise SettingsError("PTMOE_DEMO=0 on a public Space without login would let anyone use any model, "
                                "data and size; set the Space secret PTMOE_AUTH=user:password to lift the demo limits")
        return True
    return bool(explicit)
