"""The hosted demo as a Space runs it, in a real browser: ``SPACE_ID`` set, no GPU, persistent storage
at a stand-in for ``/data``, a gallery (made here on the tiny random model by bench/gallery.py). The
first screen is a gallery run's Inspect table; the test reports how long it took to appear (printed,
never asserted), then inspects the run: a row in full, typed inputs through its imported adapter,
and the Runs table with and without the gallery.

Skipped without Chromium or the ``playwright`` package; never downloads a browser."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def space(tmp_path_factory, browser):
    """The studio started as on a CPU Space: settings from the environment a Space sets."""
    from app.settings import from_args
    from app.testing import make_tiny_gallery, running_app

    root = tmp_path_factory.mktemp("space")
    gallery = make_tiny_gallery(root / "gallery")
    (root / "data").mkdir()
    env = {"SPACE_ID": "someone/pt-moe-studio", "PTMOE_SPACE_STORAGE": str(root / "data"),
           "PTMOE_GALLERY": str(gallery), "PTMOE_MODEL": "tiny-random", "PTMOE_DEVICE": "cpu"}
    settings = from_args([], env=env, gpu=False)
    assert settings.demo and settings.persistent and settings.db.startswith(str(root / "data"))
    t0 = time.monotonic()
    with running_app(root, settings=settings, host="127.0.0.1", poll_s=0.5) as s:
        print(f"\n[space] studio up (gallery imported at first start) in {time.monotonic() - t0:.1f} s")
        yield s


def test_first_visit_shows_a_gallery_run_in_inspect(browser, space, shots):
    st = space.ctx.storage
    runs = {r.name: r.id for r in st.list_runs()}
    assert len(runs) == 4 and {r.experiment for r in st.list_runs()} == {"gallery"}
    assert str(st.runs_dir).startswith(str(Path(space.ctx.settings.db).parent))  # under the persistent storage
    studio, routed = runs["gallery · PT-MoE · studio defaults"], runs["gallery · PT-MoE · routed preset"]

    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    t0 = time.monotonic()
    page.goto(space.url)
    rows = page.locator("#pt-inspect-table tbody tr")
    rows.first.wait_for(state="visible", timeout=60_000)
    elapsed = time.monotonic() - t0
    print(f"\n[space] first screen: page open -> gallery run's Inspect table on screen in {elapsed:.1f} s")

    assert "Demo mode" in page.locator("#pt-header").inner_text()
    assert "temporary" not in page.locator("#pt-header").inner_text()
    page.locator("#pt-inspect-info").get_by_text(f"#{studio}").first.wait_for(timeout=20_000)  # the run's summary
    assert rows.count() == 8  # the stored evaluation: 2 questions × 4 built-in sets
    headers = page.locator("#pt-inspect-table thead th").all_inner_texts()
    for h in ("Input", "Expert", "Router p", "Generated answer", "Gold", "Score", "Frozen model (no adapter)"):
        assert h in headers, headers
    assert any(h.startswith(f"Baseline: #{routed}") for h in headers), headers
    assert rows.nth(0).locator(".pt-bar-fill").count() == 2  # one probability bar per expert
    page.wait_for_timeout(800)
    page.screenshot(path=str(shots / "10-space-first-screen.png"), full_page=True)

    # A row in full: router, answer, the baseline run's and the frozen model's answers.
    rows.nth(1).click()
    detail = page.locator("#pt-inspect-detail")
    detail.get_by_text("Input #2").wait_for()
    text = detail.inner_text().lower()  # the section titles are upper-cased by CSS
    assert "frozen model (no adapter)" in text and "baseline (#" in text and "confidence" in text

    # Typed inputs through the gallery run's imported adapter (and the frozen model).
    page.locator("#pt-inspect-mode").get_by_label("Type inputs").check()
    page.locator("#pt-inspect-text textarea").fill("What is 17 plus 25? => 42\nConvert 3 kilometres to metres. => 3000")
    page.locator("#pt-inspect-go").click()
    page.locator("#pt-inspect-status").get_by_text(re.compile(r"2 inputs")).wait_for(timeout=60_000)
    assert rows.count() == 2 and "What is 17 plus 25?" in rows.nth(0).inner_text()
    page.screenshot(path=str(shots / "11-space-typed.png"), full_page=True)

    # Runs: the gallery is listed, and hidden on request.
    page.get_by_role("tab", name="Runs").click()
    page.wait_for_function("() => document.querySelector('#pt-runs-table').innerText.includes('gallery')",
                           timeout=20_000)
    page.locator("#pt-show-gallery input").uncheck()
    page.wait_for_function("() => !document.querySelector('#pt-runs-table').innerText.includes('gallery ·')",
                           timeout=20_000)
    page.screenshot(path=str(shots / "12-space-runs-gallery-hidden.png"), full_page=True)
    assert not errors, errors
    ctx.close()
