"""Sweep throughput: the same 8-run tiny-model sweep through the Ray executor and the local one.

    RAY_AUTH_MODE=token .venv/bin/python -m bench.sweep_throughput --db postgresql+psycopg://... \\
        --ray http://127.0.0.1:8275 [--concurrency 1] [--steps 3]

Both executors get the same database (a server database: Ray needs one), the same runs and the same
number of runs at once (``--concurrency``: local slots, Ray jobs at a time with one CPU each), so
the ratio is Ray's overhead per run (job submission, its supervisor actor, status polling) next to a
run. Each sweep goes into a fresh PostgreSQL schema. Prints the wall time of each and the ratio
Ray / local against the target (≤ 1.3). Not part of CI (``.ci/ray.sh`` starts a head).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGET = 1.3
BASE = {
    "model": {"name": "tiny-random", "device": "cpu"},
    "method": {"method": "ptmoe", "prompt_len": 4, "rank": 2},
    "data": {"train": ["builtin:all"], "max_train_examples": 16, "max_eval_examples": 4},
    "train": {"batch_size": 2, "warmup_steps": 0, "max_new_tokens": 2, "eval_batch_size": 4},
}


def run_sweep(db: str, executor, concurrency: int, steps: int, runs_dir: Path) -> tuple[float, list]:
    from storage import JobManager, JobSettings, Storage
    from storage.sweep_spec import SweepSpec
    from storage.sweeps import launch_sweep, wait_sweep

    base = {**BASE, "train": {**BASE["train"], "steps": steps}}
    spec = SweepSpec(base, {"method.n_experts": ["1", "2"], "train.lr": ["0.01", "0.03"]}, [0, 1], "bench", "tp")
    with Storage(db, runs_dir=runs_dir) as storage:
        settings = JobSettings(slots=concurrency, poll_interval_s=0.2, heartbeat_interval_s=1.0)
        jobs = JobManager(storage, settings, executor=executor(concurrency))
        jobs.start()
        try:
            t0 = time.perf_counter()
            launch = launch_sweep(storage, spec, jobs)
            runs = wait_sweep(storage, launch.sweep_id, timeout=3600, poll_s=0.2)
            return time.perf_counter() - t0, runs
        finally:
            jobs.stop(cancel_running=True, timeout=60)


def fresh_schema(base_url: str):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(base_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()

    return url.render_as_string(hide_password=False), drop


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True, help="a PostgreSQL URL (each sweep gets its own schema)")
    p.add_argument("--ray", required=True, help="the Ray dashboard address, e.g. http://127.0.0.1:8275")
    p.add_argument("--concurrency", type=int, default=1, help="runs at once, both executors (default 1)")
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()

    from storage.jobs import LocalExecutor
    from storage.ray_executor import RayExecutor

    executors = {
        "local": lambda n: LocalExecutor(n),
        "ray": lambda n: RayExecutor(args.ray, cpus_per_run=1.0, max_running=n),
    }
    times = {}
    with tempfile.TemporaryDirectory(prefix="ptmoe-sweep-bench-") as tmp:
        for name in ("local", "ray"):
            url, drop = fresh_schema(args.db)
            try:
                wall, runs = run_sweep(url, executors[name], args.concurrency, args.steps, Path(tmp) / name)
            finally:
                drop()
            bad = [r for r in runs if r.status.value != "FINISHED"]
            if bad:
                print(f"{name}: {len(bad)} run(s) did not finish: {bad[0].error_message}", file=sys.stderr)
                return 1
            times[name] = wall
            print(f"{name:5s}: {len(runs)} runs in {wall:6.1f} s ({wall / len(runs):.1f} s per run)")
    ratio = times["ray"] / times["local"]
    print(f"Ray / local wall time: {ratio:.2f} (target <= {TARGET}) {'met' if ratio <= TARGET else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
