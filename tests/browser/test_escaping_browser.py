"""Script injection, in a real browser (Playwright driving Debian's Chromium, headless): a script-
carrying name arriving from a loaded configuration file and from stored runs (run name, model, data
spec, error message, data-set names, inputs, answers) shows as text everywhere and never runs.

Skipped without Chromium or the ``playwright`` package; never downloads a browser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = '<img src=x onerror="window.__xss=(window.__xss||0)+1">'
TEXT = "<img src=x onerror="  # what the page shows when the payload is text


def _stored_runs(st) -> None:
    """A failed run and a finished one whose every stored string carries the payload (no job runs)."""
    bad = st.submit({"name": f"bad {PAYLOAD}", "model": {"name": PAYLOAD}, "data": {"train": [f"jsonl:{PAYLOAD}"]}})
    st.transition(bad, "RUNNING")
    st.transition(bad, "FAILED", reason="error", error_message=f"ModelLoadError: cannot load {PAYLOAD}")
    ok = st.submit({"name": f"ok {PAYLOAD}", "model": {"name": "tiny-random"}, "data": {"train": ["builtin:arith"]},
                    "train": {"steps": 2, "warmup_steps": 0}})
    st.transition(ok, "RUNNING")
    st.log_metrics(ok, [("loss", 1, 2.0), ("loss", 2, 1.5), ("eval/macro/f1", 2, 0.5)], step=2)
    records = [{"id": f"q{i}", "dataset": PAYLOAD, "domain": PAYLOAD, "answer_type": "text", "input": PAYLOAD,
                "context": PAYLOAD, "gold": [PAYLOAD], "prediction": PAYLOAD, "expert": i % 2,
                "probs": [0.7, 0.3] if i % 2 == 0 else [0.2, 0.8], "confidence": 0.7, "entropy": 0.6, "em": 0.0,
                "f1": 0.0, "correct": False, "score": 0.0} for i in range(3)]
    st.log_evaluation(ok, 2, {PAYLOAD: {"f1": 0.5}, "macro": {"f1": 0.5}}, records)
    adapter = Path(st.get_run(ok).output_dir) / "adapter"
    adapter.mkdir(parents=True)
    st.set_adapter(ok, adapter)
    st.transition(ok, "FINISHED", reason="finished")


@pytest.fixture(scope="module")
def srv(tmp_path_factory, browser):
    from app.testing import running_app

    with running_app(tmp_path_factory.mktemp("studio-xss")) as s:
        s.ctx.queue.stop()  # nothing here needs a job; the runs are written straight into storage
        _stored_runs(s.ctx.storage)
        yield s


def _assert_inert(page) -> None:
    assert page.evaluate("window.__xss") is None, "the payload ran"
    assert page.locator('img[src="x"]').count() == 0, "the payload became an element"


def test_a_script_in_names_and_files_never_runs(browser, srv, tmp_path):
    shots = Path(os.environ.get("PTMOE_SCREENSHOTS") or ROOT / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(srv.url)
    page.get_by_role("button", name="Launch").wait_for()

    # Train: the newest run is shown with its name.
    page.locator("#pt-progress").get_by_text("FINISHED").wait_for(timeout=20_000)
    assert TEXT in page.locator("#pt-progress").inner_text()

    # A shared configuration file whose model name is the payload (the reported hole: the parameter box).
    cfg = tmp_path / "shared.yaml"
    cfg.write_text(f"name: 'from a file {PAYLOAD}'\nmodel: {{name: '{PAYLOAD}'}}\n")
    page.get_by_text("Configuration: save · load · copy from a run · CLI").click()
    page.locator("#pt-load-config input[type=file]").set_input_files(str(cfg))
    page.locator("#pt-check").get_by_text("Fix before launching").wait_for(timeout=30_000)
    page.wait_for_function("() => document.querySelector('#pt-params').innerText.includes('<img src=x')",
                           timeout=30_000)
    assert TEXT in page.locator("#pt-check").inner_text()
    _assert_inert(page)
    page.screenshot(path=str(shots / "xss-1-train.png"), full_page=True)

    # Runs: the table, the details of the failed run, the comparison (scores table, curves' legends).
    page.get_by_role("tab", name="Runs").click()
    table = page.locator("#pt-runs-table")
    page.wait_for_function("() => document.querySelector('#pt-runs-table').innerText.includes('<img src=x')",
                           timeout=20_000)
    table.get_by_role("gridcell", name=f"bad {PAYLOAD}", exact=True).first.click()
    page.locator("#pt-run-details").get_by_text("ModelLoadError").wait_for(timeout=20_000)
    assert TEXT in page.locator("#pt-run-details").inner_text()
    table.get_by_role("gridcell", name=f"ok {PAYLOAD}", exact=True).first.click()
    page.locator("#pt-scores").get_by_text("Macro").wait_for(timeout=20_000)
    page.wait_for_timeout(1500)  # plots draw
    assert TEXT in page.locator("#pt-scores").inner_text()
    _assert_inert(page)
    page.screenshot(path=str(shots / "xss-2-runs.png"), full_page=True)

    # Inspect: the finished run's stored evaluation (table, full example, router plots).
    page.get_by_role("tab", name="Inspect").click()
    page.locator("#pt-inspect-info").get_by_text("ok").wait_for(timeout=20_000)
    page.locator("#pt-inspect-mode").get_by_label("The run's stored evaluation").check()
    page.locator("#pt-inspect-go").click()
    rows = page.locator("#pt-inspect-table tbody tr")
    rows.first.wait_for(timeout=30_000)
    rows.nth(1).click()
    page.locator("#pt-inspect-detail").get_by_text("Input #2").wait_for()
    page.wait_for_timeout(1500)
    assert TEXT in page.locator("#pt-inspect-detail").inner_text()
    assert TEXT in page.locator("#pt-inspect-table").inner_text()
    _assert_inert(page)
    page.screenshot(path=str(shots / "xss-3-inspect.png"), full_page=True)
    assert not errors, errors
    page.close()
