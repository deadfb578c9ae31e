"""The studio's gallery: ONE command trains the example runs and writes their bundles into gallery/.

    python -m bench.gallery                                      # SmolLM2 (embedded) -> gallery/
    python -m bench.gallery --model tiny-random --steps 2 --out /tmp/gallery   # a quick smoke test

The runs, each on the built-in tasks (builtin:all) with the studio's CPU training budget:
PT-MoE with the studio's default settings, PT-MoE in the routed preset, PT and LoRA. Each is
evaluated as it trains (records with routing), and the frozen base model is evaluated once on the
same sets (the floor). Every bundle's manifest says how it was made: the command, the run's config,
the device and the date. ``gallery/README.md`` lists the runs and their scores.

Needs only ptmoe_core (no database, no Gradio), so it runs on a GPU machine as well. An empty studio
imports these bundles at first start (storage.bundles.seed_gallery). About 20 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.balance_loss import routing_stats
from ptmoe_core.bundle import SUFFIX, BundleRecorder, Evaluation, Floor, bundle_from_training, read_bundle, write_bundle
from ptmoe_core.config import RunConfig
from ptmoe_core.floor import evaluate_floor, floor_key
from ptmoe_core.models import load_base_model
from ptmoe_core.trainer import train

ROOT = Path(__file__).resolve().parents[1]

MAX_GALLERY_BYTES = 2 * 1024 * 1024  # kept in git


@dataclass(frozen=True)
class GalleryRun:
    key: str  # the bundle's file name and the role the studio's first screen looks it up by
    title: str
    overrides: dict[str, Any]  # merged over BUDGET; the PT-MoE runs differ only by their preset


RUNS: tuple[GalleryRun, ...] = (
    GalleryRun("ptmoe-studio", "PT-MoE · studio defaults", {"method": {"method": "ptmoe", "preset": "studio"}}),
    GalleryRun("ptmoe-routed", "PT-MoE · routed preset", {"method": {"method": "ptmoe", "preset": "routed"}}),
    GalleryRun("pt", "PT (prompt tuning)", {"method": {"method": "pt"}}),
    GalleryRun("lora", "LoRA", {"method": {"method": "lora"}}),
)

# The studio's training budget on a CPU (the Train tab's defaults without a GPU), with more
# evaluation questions per set so the Inspect table has something to show.
BUDGET: dict[str, Any] = {
    "data": {"train": ["builtin:all"], "max_train_examples": 1000, "max_eval_examples": 16,
             "max_source_tokens": 160, "max_answer_tokens": 24},
    "train": {"steps": 40, "batch_size": 4, "warmup_steps": 4, "eval_every": 20, "save_every": 20,
              "max_new_tokens": 16, "eval_batch_size": 8},
}
def run_config(run: GalleryRun, model: str, device: str, out: Path, steps: int | None = None,
               eval_examples: int | None = None) -> RunConfig:
    """The run's full config: BUDGET, then its overrides, the model and the optional smoke-test sizes."""
    d = _merge(copy.deepcopy(BUDGET), copy.deepcopy(run.overrides))
    d.update(name=f"gallery · {run.title}", output_dir=str(out / run.key), model={"name": model, "device": device})
    if steps is not None:
        t = d["train"]
        t["steps"] = steps
        t["eval_every"] = t["save_every"] = max(1, steps // 2)
        t["warmup_steps"] = min(t["warmup_steps"], steps)
    if eval_examples is not None:
        d["data"]["max_eval_examples"] = eval_examples
    return RunConfig.from_dict(d).validate()


def _merge(a: dict, b: dict) -> dict:
    for k, v in b.items():
        a[k] = _merge(a.get(k, {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return a


def machine(base: Any) -> dict[str, Any]:
    import torch
    import transformers

    dev = str(base.device)
    name = torch.cuda.get_device_name(base.device) if base.device.type == "cuda" else (platform.processor() or
                                                                                      platform.machine())
    return {"device": dev, "device_name": name, "dtype": str(base.dtype).replace("torch.", ""),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def summary_line(bundle: Any) -> str:
    """One README table row: method, parameters, macro F1, how the router split the domains."""
    cfg = bundle.run_config()
    key, title = bundle.provenance.get("gallery_key", "?"), bundle.provenance.get("title", bundle.name)
    final = bundle.evaluations[-1] if bundle.evaluations else None
    macro = (final.scores.get("macro") or {}).get("f1") if final else None
    floor = (bundle.floor.evaluation.scores.get("macro") or {}).get("f1") if bundle.floor else None
    routing = "–"
    if final and cfg.method.is_routed:
        st = routing_stats(final.records)
        routing = (f"I(domain; expert) {st['mi_bits']:.2f} bits, confidence {st['confidence']:.2f}, "
                   f"experts used {st['experts_used']}")
    def f(x):
        return ("–" if x is None else f"{100 * x:.1f}")
    return f"| `{key}{SUFFIX}` | {title} | {bundle.trainable_params:,} | {f(macro)} | {f(floor)} | {routing} |"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.gallery", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m", help="base model (default: the embedded SmolLM2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--out", default=str(ROOT / "gallery"), help="folder for the bundles (default: gallery/)")
    p.add_argument("--steps", type=int, default=None, help="override the training steps (smoke tests)")
    p.add_argument("--eval-examples", type=int, default=None, help="override the evaluation questions per set")
    p.add_argument("--only", default="", help=f"comma-separated run keys (default: all of {[r.key for r in RUNS]})")
    args = p.parse_args(argv)
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = sorted(set(keys) - {r.key for r in RUNS})
    if unknown:
        p.error(f"unknown run key(s) {unknown}; known: {[r.key for r in RUNS]}")
    runs = [r for r in RUNS if not keys or r.key in keys]
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    from ptmoe_core.config import ModelConfig
    from ptmoe_core.errors import PTMoEError

    command = shlex.join(["python", "-m", "bench.gallery", *argv])
    try:
        base = load_base_model(ModelConfig(name=args.model, device=args.device))
        host = machine(base)
        floors: dict[str, Floor] = {}
        with tempfile.TemporaryDirectory(prefix="ptmoe-gallery-") as tmp:
            for run in runs:
                cfg = run_config(run, args.model, args.device, Path(tmp), args.steps, args.eval_examples)
                t0 = time.time()
                rec = BundleRecorder()
                result = train(cfg, [rec], base=base)
                key = floor_key(cfg)
                if key not in floors:
                    floors[key] = Floor(key, Evaluation.from_report(evaluate_floor(cfg, base=base)))
                provenance = {
                    "gallery_key": run.key, "title": run.title, "command": command, "run_overrides": run.overrides,
                    "preset": cfg.method.preset,
                    "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "train_seconds":
                    round(result.elapsed_s, 1), "git_commit": git_commit(), **host,
                }
                bundle = bundle_from_training(cfg, result, rec, provenance=provenance, floor=floors[key])
                path = write_bundle(bundle, out / f"{run.key}{SUFFIX}")
                print(f"{run.key}: {path.name} ({path.stat().st_size / 1024:.0f} KB) in {time.time() - t0:.0f}s",
                      file=sys.stderr)
    except PTMoEError as e:
        print(f"gallery: {e}", file=sys.stderr)
        return 1
    write_index(out, command, host)
    total = sum(f.stat().st_size for f in out.glob(f"*{SUFFIX}"))
    print(f"gallery: {len(runs)} bundle(s) in {out}, {total / 1024:.0f} KB in all", file=sys.stderr)
    if total > MAX_GALLERY_BYTES:
        print(f"gallery: warning: more than {MAX_GALLERY_BYTES // 1024} KB; the repository keeps it small",
              file=sys.stderr)
    return 0


def write_index(out: Path, command: str, host: dict[str, Any]) -> Path:
    """gallery/README.md: one row per bundle in ``out`` (also those an earlier ``--only`` made)."""
    order = {r.key: i for i, r in enumerate(RUNS)}
    bundles = [read_bundle(f) for f in out.glob(f"*{SUFFIX}")]
    bundles.sort(key=lambda b: (order.get(b.provenance.get("gallery_key"), len(order)), b.name))
    text = "\n".join([
        "# Gallery",
        "",
        "Example runs that an empty studio imports at first start (experiment “gallery”; hide them with "
        "“show gallery runs” in the Runs tab, or delete them). Each bundle's `manifest.json` holds its full "
        "config, metric history, evaluations with routing, and how it was made.",
        "",
        f"Made by `{command}` on {host['device']} ({host['device_name']}), "
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d')}.",
        "",
        "| bundle | run | trainable params | macro F1 | frozen model's macro F1 | routing (final evaluation) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
        *map(summary_line, bundles),
        "",
    ])
    p = out / "README.md"
    p.write_text(text, encoding="utf-8")
    return p


if __name__ == "__main__":
    sys.exit(main())
