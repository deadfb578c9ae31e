"""An idle studio (no job, no page) does not poll: Gradio's queue waits 0.1 s between looks for work
instead of 1 ms, and the job supervisor polls at its idle interval when it runs nothing.
(The CPU itself is measured by bench/idle_cpu.py, not asserted here.)"""

from __future__ import annotations

import time

from app.main import build_app, close_context, create_context, serve
from app.serving import PROGRESS_POLL_S, QUEUE_POLL_S
from app.testing import tiny_settings
from storage import JobManager, JobSettings, Storage


def test_the_gradio_queue_polls_slowly(tmp_path):
    ctx = create_context(tiny_settings(tmp_path), start_jobs=False)
    try:
        demo = build_app(ctx)
        server = serve(ctx, demo, port=0)  # configured, not started
        server.sock.close()
        assert demo._queue.sleep_when_free >= QUEUE_POLL_S >= 0.05
        assert demo._queue.progress_update_sleep_when_free >= PROGRESS_POLL_S >= 0.1
    finally:
        close_context(ctx)


def test_an_idle_job_supervisor_polls_at_its_idle_interval(tmp_path):
    with Storage(str(tmp_path / "s.db"), runs_dir=tmp_path / "runs") as st:
        manager = JobManager(st, JobSettings(slots=1, poll_interval_s=0.05, idle_poll_interval_s=0.5))
        ticks = []
        real_tick = manager.tick
        manager.tick = lambda: (ticks.append(time.monotonic()), real_tick())[1]
        manager.start()
        time.sleep(1.6)
        manager.stop()
        assert 2 <= len(ticks) <= 6, f"{len(ticks)} ticks in 1.6 s: the busy interval would give ~30"
