"""The studio in a real browser (Playwright driving Debian's Chromium, headless), as a new user
would use it: set up a tiny run, see a wrong value explained at its field, launch, watch it finish
(a second tab shows the same run), inspect it side by side, open the Runs table.

Screenshots go to ``screenshots/`` (or ``$PTMOE_SCREENSHOTS``). Skipped without Chromium or the
``playwright`` package; never downloads a browser."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def srv(tmp_path_factory, browser):
    from app.testing import running_app

    with running_app(tmp_path_factory.mktemp("studio-browser")) as s:
        yield s


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def launch_tiny_run(page, batch: int, max_new: int, max_eval: int) -> None:
    """Small batches, answers and data limits; then Launch once the form says it is ready."""
    set_number(page, "pt-batch", batch)
    set_number(page, "pt-max-new", max_new)
    page.get_by_text("Data limits").click()
    set_number(page, "pt-max-train", 64)
    set_number(page, "pt-max-eval", max_eval)
    page.locator("#pt-check").get_by_text("Ready to launch").wait_for()
    page.get_by_role("button", name="Launch").click()
    page.locator("#pt-check").get_by_text("Queued run").wait_for(timeout=20_000)


def test_train_watch_inspect_runs(browser, srv, shots):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(srv.url)
    page.get_by_role("button", name="Launch").wait_for()
    # The embedded default is preselected (here: the test model), with a live parameter count.
    page.locator("#pt-params").get_by_text("Trainable parameters").wait_for()
    assert "PT-MoE" in page.locator("#pt-params").inner_text()

    # A wrong value is explained next to its field, before launching.
    set_number(page, "pt-R", 99)
    page.locator("#pt-R").get_by_text("must not exceed the prompt length").wait_for()
    assert "Fix before launching" in page.locator("#pt-check").inner_text()
    page.screenshot(path=str(shots / "01-train-invalid-field.png"), full_page=True)
    set_number(page, "pt-R", 36)

    # A tiny run: 3 steps of batch 2; the warm-up must then be at most 3 (its section opens to say so).
    set_number(page, "pt-steps", 3)
    page.locator("#pt-warmup").get_by_text("must be between 0 and steps=3").wait_for()
    set_number(page, "pt-warmup", 0)
    launch_tiny_run(page, batch=2, max_new=4, max_eval=3)

    # A second tab (or a refresh) shows the same run: the state lives in storage.
    other = ctx.new_page()
    other.goto(srv.url)
    other.locator("#pt-progress").get_by_text(re.compile(r"run #1")).wait_for(timeout=20_000)
    other.close()

    page.locator('#pt-progress [data-status="FINISHED"]').wait_for(timeout=150_000)
    progress = page.locator("#pt-progress").inner_text()
    assert "step 3 / 3" in progress and "100%" in progress
    page.wait_for_timeout(1500)  # let the last curves draw
    page.screenshot(path=str(shots / "02-train-finished.png"), full_page=True)

    # Inspect: straight from the finished run.
    page.get_by_role("button", name="Inspect this run →").click()
    page.locator("#pt-inspect-info").get_by_text("#1").wait_for(timeout=20_000)
    page.locator("#pt-inspect-text textarea").fill(
        "What is 17 plus 25? => 42\nConvert 3 kilometres to metres. => 3000\nWho wrote the report?"
    )
    page.get_by_label("Also answer with each expert forced").check()
    page.locator("#pt-inspect-go").click()
    rows = page.locator("#pt-inspect-table tbody tr")
    rows.first.wait_for(timeout=60_000)
    assert rows.count() == 3
    headers = page.locator("#pt-inspect-table thead th").all_inner_texts()
    for h in ("Input", "Expert", "Router p", "Conf.", "Generated answer", "Gold", "Score", "Forced e0", "Forced e1"):
        assert h in headers
    first = rows.nth(0).locator("td").all_inner_texts()
    assert "What is 17 plus 25?" in first[1] and re.match(r"e[01]", first[2]) and first[6] == "42"
    assert rows.nth(0).locator(".pt-bar-fill").count() == 2  # one probability bar per expert
    rows.nth(1).click()
    page.locator("#pt-inspect-detail").get_by_text("Input #2").wait_for()
    assert "3 kilometres" in page.locator("#pt-inspect-detail").inner_text()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(shots / "03-inspect.png"), full_page=True)

    # Runs: the table lists the run with its method and parameters.
    page.get_by_role("tab", name="Runs").click()
    table = page.locator("#pt-runs-table")
    page.wait_for_function("() => document.querySelector('#pt-runs-table').innerText.includes('ptmoe-builtin')",
                           timeout=20_000)
    text = table.inner_text()
    assert "FINISHED" in text and "ptmoe" in text
    # Clicking the row selects the run and adds it to the comparison (scores per data set, curves).
    table.get_by_role("gridcell", name="ptmoe-builtin", exact=True).first.click()
    page.locator("#pt-scores").get_by_text("Macro").wait_for(timeout=20_000)
    assert "builtin-arith" in page.locator("#pt-scores").inner_text()
    page.locator("#pt-run-details").get_by_text("FINISHED").wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(shots / "04-runs.png"), full_page=True)
    assert not errors, errors
    ctx.close()


def test_an_upload_is_listed_in_the_data_folder_at_once(browser, srv, shots, tmp_path):
    """Upload a JSONL file: the training spec points at the saved copy, and the data-folder list
    offers it without pressing refresh."""
    f = tmp_path / "my-colours.jsonl"
    f.write_text("".join(f'{{"question": "What colour is thing {i}?", "context": "Thing {i} is blue.", '
                         f'"answer": "blue"}}\n' for i in range(3)))
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(srv.url)
    page.get_by_role("button", name="Launch").wait_for()
    page.locator("#pt-data-source").get_by_label("Upload a file").check()
    page.locator("#pt-upload input[type=file]").set_input_files(str(f))
    page.wait_for_function("() => document.querySelector('#pt-train-specs textarea').value.includes('my-colours')",
                           timeout=20_000)
    spec = page.locator("#pt-train-specs textarea").input_value()
    assert spec.startswith("jsonl:uploads/my-colours-"), spec
    page.locator("#pt-data-source").get_by_label("File from the data folder").check()
    page.locator("#pt-folder-file input").click()
    page.get_by_role("option", name=re.compile("my-colours")).wait_for(timeout=10_000)
    page.screenshot(path=str(shots / "05-upload-listed.png"), full_page=True)
    page.close()


def test_preset_and_routing_by_domain_while_training(browser, srv, shots):
    """Choose the paper preset (its values fill the advanced-routing fields), launch, and watch the
    routing by domain: the domain × expert plot and I(domain; expert) over steps; the run's config
    names its preset."""
    from ptmoe_core.presets import preset_values

    page = browser.new_page(viewport={"width": 1440, "height": 1100})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(srv.url)
    page.get_by_role("button", name="Launch").wait_for()
    page.get_by_text("Advanced routing").click()
    page.locator("#pt-preset").get_by_label("paper").check()
    paper_mult = preset_values("paper", "ptmoe")["router_lr_mult"]
    # Wait on a value the two presets set differently (their router learning rates are the same now).
    norm = str(preset_values("paper", "ptmoe")["router_norm"]).lower()
    page.wait_for_function(f"() => document.querySelector('#pt-router-norm input').checked === {norm}",
                           timeout=10_000)
    page.wait_for_function(
        f"() => Number(document.querySelector('#pt-router-lr input[type=number]').value) === {paper_mult}",
        timeout=10_000)
    assert page.locator("#pt-router-norm input").is_checked() == preset_values("paper", "ptmoe")["router_norm"]
    page.locator("#pt-preset").get_by_label("studio").check()
    studio_mult = preset_values("studio", "ptmoe")["router_lr_mult"]
    page.wait_for_function(
        f"() => Number(document.querySelector('#pt-router-lr input[type=number]').value) === {studio_mult}",
        timeout=10_000)
    page.locator("#pt-check").get_by_text("Preset studio").wait_for(timeout=10_000)
    set_number(page, "pt-steps", 12)
    page.locator("#pt-run-name input, #pt-run-name textarea").first.fill("routing-watch")
    launch_tiny_run(page, batch=4, max_new=2, max_eval=2)
    page.wait_for_function(  # this run, not one shown before it was launched
        """() => { const p = document.querySelector('#pt-progress');
                   return p.innerText.includes('routing-watch') && p.querySelector('[data-status="FINISHED"]'); }""",
        timeout=240_000)
    plots = page.locator("#pt-domain-routing")
    plots.get_by_text("I(domain; expert) =").wait_for(timeout=20_000)
    text = plots.inner_text()
    assert "Routing by domain" in text and "builtin-arith" in text and "steps 3–12" in text
    page.get_by_text("Configuration of this run").click()
    page.locator("#pt-run-config-view").get_by_text("Method preset").wait_for()
    assert "studio" in page.locator("#pt-run-config-view").inner_text()
    page.wait_for_timeout(1000)
    plots.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "06-routing-by-domain.png"), full_page=True)
    plots.screenshot(path=str(shots / "07-routing-by-domain-plots.png"))
    assert not errors, errors
    page.close()
