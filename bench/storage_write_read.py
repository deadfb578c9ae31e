"""Storage benchmark: a job writes 100,000 metric points while another process reads them.

    .venv/bin/python -m bench.storage_write_read [--points 100000] [--db URL_OR_PATH]

The writer is a real job (``python -m storage.worker`` started by ``JobManager``) whose stand-in
trainer reports steps of 8 metrics through the same callback the trainer uses, as fast as it can.
A separate reader process polls the run's full history and the run list meanwhile. Reported:
points/s written, the reader's latencies and errors, and the latency of fetching the finished
run's whole history against the 50 ms target (ratio < 1 meets it). Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGET_MS = 50.0
KEYS_PER_STEP = 8  # loss, lr, tokens_per_s, grad_norm, router_entropy, expert_load/0..2


def job(cfg, callbacks=(), should_stop=lambda: False, resume=True):
    """The benchmark's job: ``cfg.train.steps`` steps of 8 points each, no model."""
    from ptmoe_core.callbacks import StepMetrics

    steps = cfg.train.steps
    t0 = time.perf_counter()
    for cb in callbacks:
        cb.on_train_begin(steps, 0, {})
    for step in range(1, steps + 1):
        m = StepMetrics(step=step, total_steps=steps, loss=1.0 / step, lr=1e-3, tokens_per_s=1e4, grad_norm=0.5,
                        router_entropy=0.69, expert_load=[0.2, 0.3, 0.5])
        for cb in callbacks:
            cb.on_step(m)
    for cb in callbacks:
        cb.on_train_end("finished", steps, None)  # flushes the last buffered points
    elapsed = time.perf_counter() - t0
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.output_dir) / "bench.json").write_text(json.dumps({"write_s": elapsed, "points": steps * KEYS_PER_STEP}))
    return type("Result", (), {"status": "finished", "step": steps, "adapter_dir": None, "trainable_params": 0})()


def reader(db: str, run_id: int) -> None:
    """Poll the run's full history until it ends; print latency stats as JSON."""
    from storage import Storage

    history_ms, list_ms, errors, sizes = [], [], [], []
    with Storage(db, upgrade=False) as s:
        while True:
            try:
                t = time.perf_counter()
                hist = s.metric_history(run_id)
                history_ms.append((time.perf_counter() - t) * 1000)
                sizes.append(sum(len(x) for x in hist.values()))
                t = time.perf_counter()
                s.list_runs(limit=50)
                list_ms.append((time.perf_counter() - t) * 1000)
                if s.get_run(run_id).is_final:
                    break
            except Exception as e:  # counted, not hidden: the point is that there are none
                errors.append(f"{type(e).__name__}: {e}")
                time.sleep(0.01)
    print(json.dumps({"history_ms": history_ms, "list_ms": list_ms, "errors": errors, "sizes": sizes}))


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--db", default=None, help="database URL or SQLite path (default: a temporary SQLite file)")
    parser.add_argument("--reader", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader is not None:
        reader(args.db, args.reader)
        return 0

    from storage import JobManager, JobSettings, RunStatus, Storage

    tmp = tempfile.TemporaryDirectory(prefix="ptmoe-bench-")
    db = args.db or str(Path(tmp.name) / "studio.db")
    steps = args.points // KEYS_PER_STEP
    with Storage(db, runs_dir=Path(tmp.name) / "runs") as storage:
        jobs = JobManager(storage, JobSettings(slots=1, poll_interval_s=0.05, target="bench.storage_write_read:job"))
        cfg = {"name": "bench", "model": {"name": "tiny-random"}, "train": {"steps": steps, "warmup_steps": 0}}
        run_id = storage.submit(cfg, experiment="bench")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        read_proc = subprocess.Popen([sys.executable, __file__, "--reader", str(run_id), "--db", storage.url_string],
                                     stdout=subprocess.PIPE, text=True, env=env)
        jobs.start()
        run = jobs.wait(run_id, timeout=600)
        jobs.stop()
        out, _ = read_proc.communicate(timeout=120)
        if run.status is not RunStatus.FINISHED:
            print(f"the job ended {run.status}: {run.error_message}\n{storage.log_tail(run_id, 30)}", file=sys.stderr)
            return 1
        written = json.loads((Path(run.output_dir) / "bench.json").read_text())
        reads = json.loads(out)
        full = []
        for _ in range(30):
            t = time.perf_counter()
            hist = storage.metric_history(run_id)
            full.append((time.perf_counter() - t) * 1000)
        n = sum(len(x) for x in hist.values())

    p50 = statistics.median(full)
    print(f"database: {'SQLite (temporary file)' if not args.db else storage.label}")
    print(f"write:  {written['points']:,} points in {written['write_s']:.2f}s from the job process = "
          f"{written['points'] / written['write_s']:,.0f} points/s (while a reader polled)")
    print(f"reader: {len(reads['history_ms'])} full-history reads during the write, max {max(reads['sizes'] or [0]):,} "
          f"points; p50 {_pct(reads['history_ms'], 0.5):.1f} ms, p95 {_pct(reads['history_ms'], 0.95):.1f} ms; "
          f"run list p95 {_pct(reads['list_ms'], 0.95):.1f} ms; errors: {len(reads['errors'])}")
    for e in reads["errors"][:5]:
        print(f"        {e}")
    print(f"history of one run ({n:,} points, {len(hist)} metrics), 30 fetches: p50 {p50:.1f} ms, "
          f"p95 {_pct(full, 0.95):.1f} ms, min {min(full):.1f} ms")
    print(f"ratio to the {TARGET_MS:.0f} ms target (p50 / target): {p50 / TARGET_MS:.2f} "
          f"({'meets' if p50 < TARGET_MS else 'MISSES'} the target)")
    tmp.cleanup()
    return 0 if not reads["errors"] and n == args.points else 1


if __name__ == "__main__":
    sys.exit(main())
