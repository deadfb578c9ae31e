"""CPU an idle studio uses: ``python launch.py`` with no job and no page open, sampled with psutil.

    python -m bench.idle_cpu [--window 30] [--port 7890] [--root PATH]

Starts the studio (tiny-random, a throw-away database and data folder), waits until it answers and
settles for 10 s, then prints the process's CPU time over ``--window`` seconds as a share of one
core. ``--root`` measures another checkout of the studio with this interpreter (e.g. the previous
release, for a before/after). A measurement, not a test: on the 2-core development machine an idle
studio went from about 4 % of a core to about 0.3 % once Gradio's queue and the job supervisor
stopped polling every millisecond / second while idle.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--window", type=float, default=30.0, help="seconds to sample (default 30)")
    p.add_argument("--port", type=int, default=7890)
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    args = p.parse_args(argv)
    import psutil

    home = Path(tempfile.mkdtemp(prefix="ptmoe-idle-"))
    env = {**os.environ, "PTMOE_DATA_DIR": str(home / "data"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "launch.py", "--port", str(args.port), "--model", "tiny-random", "--db", str(home / "s.db")]
    proc = subprocess.Popen(cmd, cwd=args.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.port}/config", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    print(f"the studio did not start (exit {proc.poll()})", file=sys.stderr)
                    return 1
                time.sleep(1)
        time.sleep(10)
        ps = psutil.Process(proc.pid)
        t0, c0 = time.monotonic(), sum(ps.cpu_times()[:2])
        time.sleep(args.window)
        t1, c1 = time.monotonic(), sum(ps.cpu_times()[:2])
        print(f"{args.root}: idle studio used {100 * (c1 - c0) / (t1 - t0):.2f} % of one core over {t1 - t0:.0f} s")
    finally:
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
