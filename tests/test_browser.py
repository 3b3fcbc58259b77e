"""The dashboard in Chromium (Playwright driving the system browser) against the real server on a free port.

Each test checks what a person sees: rows, loaded images, filters that change the rows to the right ones, links
that reproduce a view, charts drawn by plotly, and no console error on any page.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from test_server_registry import CLASSES, write_base_dir
from xaiboard.server.serving import make_server, shutdown

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip("no chromium found (install Debian's chromium package to run the browser tests)",
                allow_module_level=True)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
# Every image due: lazy ones only once on screen (the grid never fetches what is below the viewport).
IMAGES_LOADED = ("() => { const images = [...document.querySelectorAll('img.map, img.sample-image, img.zoom-image')];"
                 " const seen = (i) => { const r = i.getBoundingClientRect();"
                 " return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth; };"
                 " const due = images.filter((i) => i.loading !== 'lazy' || seen(i));"
                 " return due.length > 0 && due.every((i) => i.complete && i.naturalWidth > 0); }")



@contextmanager
def chromium_context(width: int, height: int) -> Iterator[Any]:
    """A browser context of the system Chromium, for a module's own fixture; closed with everything under it."""
    manager = playwright_api.sync_playwright().start()
    browser = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        context = browser.new_context(viewport={"width": width, "height": height})
        yield context
        context.close()
    finally:
        browser.close()
        manager.stop()


def current_url(page) -> str:
    """The address as the page has it now (``page.url`` follows ``history.replaceState`` only a moment later)."""
    return page.evaluate("() => window.location.href")


def start_server(root: Path, reload_interval: float = 1.0):
    """The real waitress server on a free port, in a daemon thread; returns (server, base URL)."""
    server = make_server(root, host="127.0.0.1", port=0, reload_interval=reload_interval)
    threading.Thread(target=server.run, name="xaiboard-test-server", daemon=True).start()
    return server, f"http://127.0.0.1:{server.effective_port}"


def stop_server(server) -> None:
    shutdown(server)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    data = write_base_dir(tmp_path_factory.mktemp("base"), tmp_path_factory.mktemp("outside"), n=30)
    yield data
    data.live_writer.close("interrupted")


@pytest.fixture(scope="module")
def url(base):
    server, address = start_server(base.root)
    yield address
    stop_server(server)


@pytest.fixture(scope="module")
def browser():
    manager = playwright_api.sync_playwright().start()
    chromium = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield chromium
    chromium.close()
    manager.stop()


class Console:
    """Console errors and uncaught exceptions of a page."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda message: self.errors.append(f"{message.type}: {message.text} ({page.url})")
                if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error} ({page.url})"))


@pytest.fixture(scope="module")
def context(browser):
    """One browser profile for the module, so plotly.js is fetched once and then revalidated from the cache."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    yield context
    context.close()


def new_page(context):
    """A page that records its console errors and every URL it requests (``page.requested``)."""
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.console = Console(page)
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    return page


def close_page(page) -> None:
    """Close a page of :func:`new_page`, failing on any console error it logged."""
    page.close()
    assert page.console.errors == [], "console errors:\n" + "\n".join(page.console.errors)


@pytest.fixture
def page(context):
    page = new_page(context)
    yield page
    close_page(page)


def row_ids(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("tr.sample-row", "rows => rows.map(r => r.dataset.sample)")]


def wait_rows(page, expected: list[int]) -> None:
    """Wait until the table shows exactly these samples in this order (then every image must load)."""
    wanted = ",".join(map(str, expected))
    try:
        page.wait_for_function(
            "wanted => [...document.querySelectorAll('tr.sample-row')].map(r => r.dataset.sample).join(',') === wanted",
            arg=wanted, timeout=10_000)
    except playwright_api.TimeoutError:
        pass
    assert row_ids(page) == expected
    page.wait_for_function(IMAGES_LOADED)


def expected_order(written, labels=(), types=()):
    """Sample ids matching the filters, by the highest matching probability, descending (the default sort)."""
    best = {}
    for (sample, label), kind in written.types.items():
        if (not labels or label in labels) and (not types or kind in types):
            best[sample] = max(best.get(sample, -1.0), written.probs[(sample, label)])
    return [s for s, _ in sorted(best.items(), key=lambda item: (-item[1], item[0]))]


def open_browser_page(page, url, summary_id, query=""):
    page.goto(f"{url}/s/{summary_id}{query}")
    page.wait_for_selector("tr.sample-row")
    page.wait_for_function(IMAGES_LOADED)


# -- the summary list --------------------------------------------------------------------------------------------


def test_list_shows_every_summary_with_status_and_errors(page, url, base):
    page.goto(url + "/")
    page.wait_for_selector("table.summaries")
    names = page.eval_on_selector_all("table.summaries tbody tr[data-id] .name", "n => n.map(x => x.textContent)")
    assert names == ["broken", "live", "run-a", "run-b"]
    live = page.locator("tr[data-id='%s']" % base.ids["live"])
    assert live.locator(".status").inner_text().lower() == "running"
    assert live.locator(".progress-text").inner_text() == "3 / 10"
    assert "not a database" in page.locator(".error-text").inner_text()
    row = page.locator("tr[data-id='%s']" % base.ids["shapes/run-a"])
    assert "Gradient" in row.inner_text() and "PointingGame" in row.inner_text()
    page.fill("#filter", "run-b")
    page.wait_for_function("() => document.querySelectorAll('tr[data-id]').length === 1")
    assert page.locator("tr[data-id] .name").inner_text() == "run-b"
    assert "q=run-b" in current_url(page)
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('tr[data-id]').length === 1")
    assert page.input_value("#filter") == "run-b"
    page.click("tr[data-id] a.name")
    page.wait_for_selector("tr.sample-row")
    assert page.url.endswith("/s/" + base.ids["shapes/run-b"])


def test_list_selects_runs_to_compare(page, url, base):
    page.goto(url + "/")
    page.wait_for_selector("table.summaries")
    for key in ("shapes/run-a", "shapes/run-b"):
        page.check(f"tr[data-id='{base.ids[key]}'] input[type=checkbox]")
    page.click("#compare-selected")
    page.wait_for_selector("table.compare")
    page.wait_for_function("() => document.querySelectorAll('.chart .main-svg').length >= 2")
    page.wait_for_function(IMAGES_LOADED)
    assert "run-a" in page.locator("table.compare thead").inner_text()
    assert page.locator(".compare-row").count() == 2
    assert page.locator("td.best").count() > 0


# -- the saliency browser ----------------------------------------------------------------------------------------


def test_browser_shows_images_maps_threshold_and_legend(page, url, base):
    open_browser_page(page, url, base.ids["shapes/run-a"])
    assert row_ids(page) == expected_order(base.run_a)[:20]
    assert page.locator("th.map-head").all_inner_texts() == ["Gradient", "GradCAM"]
    first = page.locator("tr.sample-row").first
    assert first.locator("img.map").count() == 2
    assert page.evaluate("() => document.querySelector('img.sample-image').naturalWidth") > 0
    meta = page.locator(".meta").inner_text()
    assert "threshold" in meta and "0.50" in meta and "top-k" in meta and "mc-dropout" in meta
    legend = page.locator(".legend").inner_text()
    assert all(kind in legend for kind in ("TP", "FN", "FP", "TN")) and "ground truth" in legend
    assert page.locator(".interval").count() > 0  # uncertainty intervals of this run
    # a class name with markup is shown as text, never parsed as HTML
    assert page.locator(".label-name", has_text="<b>cross</b>").count() > 0 and page.locator(".label-name b").count() == 0


def test_filter_by_label_and_fp_then_reload_keeps_the_view(page, url, base):
    open_browser_page(page, url, base.ids["shapes/run-a"])
    page.click("#label-filter summary")
    page.check("#label-filter input[value='1']")
    wait_rows(page, expected_order(base.run_a, labels=(1,))[:20])
    page.check("input[name=type][value=FP]")
    expected = expected_order(base.run_a, labels=(1,), types=("FP",))
    assert expected
    wait_rows(page, expected)
    for row in page.locator("tr.sample-row").all():  # the label shown is the matching one: square, FP
        active = row.locator(".label-chip.active")
        assert active.locator(".label-name").inner_text() == CLASSES[1] and active.locator(".type").inner_text() == "FP"
    assert "types=FP" in current_url(page) and "labels=1" in current_url(page)
    page.reload()
    page.wait_for_selector("tr.sample-row")
    wait_rows(page, expected)
    assert page.is_checked("input[name=type][value=FP]") and page.is_checked("#label-filter input[value='1']")
    assert page.locator("#label-filter .dropdown-text").inner_text() == CLASSES[1]


def test_sort_and_pagination_are_in_the_url(page, url, base):
    open_browser_page(page, url, base.ids["shapes/run-a"], "?sort=name&limit=10")
    assert row_ids(page) == sorted(base.run_a.names, key=base.run_a.names.get)[:10]
    page.click(".pager >> nth=0 >> [data-action=next]")
    wait_rows(page, sorted(base.run_a.names, key=base.run_a.names.get)[10:20])
    assert "offset=10" in current_url(page)
    page.select_option("#sort", "score:GradCAM:InsertionAUC")
    best = {}
    for (_, _, sample, _), value in ((k, v) for k, v in base.run_a.scores.items() if k[:2] == ("GradCAM", "InsertionAUC")):
        best[sample] = max(best.get(sample, -1.0), value)
    wait_rows(page, sorted(best, key=lambda s: (best[s], s))[:10])  # ascending, as the name sort was; back to page 1
    assert page.locator(".pager-info").first.inner_text().startswith("1–10 of 30")
    assert "sort=score%3AGradCAM%3AInsertionAUC" in current_url(page) and "offset" not in current_url(page)


def test_overlay_switch_opacity_and_colormap_change_the_maps(page, url, base):
    open_browser_page(page, url, base.ids["shapes/run-a"])
    first_map = page.locator("img.map").first
    before = first_map.get_attribute("src")
    assert "overlay=1" in before
    page.click("label.switch")
    page.wait_for_function("() => document.querySelector('img.map').src.includes('overlay=0')")
    assert first_map.get_attribute("src") != before and "overlay=0" in current_url(page)
    page.wait_for_function(IMAGES_LOADED)
    page.select_option("#cmap", "viridis")
    page.wait_for_function("() => document.querySelector('img.map').src.includes('cmap=viridis')")
    page.locator("#alpha").fill("0.8")
    page.wait_for_function("() => document.querySelector('img.map').src.includes('alpha=0.8')")
    page.wait_for_function(IMAGES_LOADED)
    page.reload()
    page.wait_for_function(IMAGES_LOADED)
    assert not page.is_checked("#overlay") and page.input_value("#cmap") == "viridis"
    assert "cmap=viridis" in page.locator("img.map").first.get_attribute("src")


def test_clicking_a_label_switches_the_maps(page, url, base):
    open_browser_page(page, url, base.ids["shapes/run-a"])
    row = page.locator("tr.sample-row", has=page.locator(".label-chip >> nth=1")).first
    sample = row.get_attribute("data-sample")
    chips = row.locator(".label-chip")
    active = int(row.locator(".label-chip.active").get_attribute("data-label"))
    other = next(int(c.get_attribute("data-label")) for c in chips.all() if int(c.get_attribute("data-label")) != active)
    assert f"/saliency/{sample}/{active}/" in row.locator("img.map").first.get_attribute("src")
    row.locator(f".label-chip[data-label='{other}']").click()
    row = page.locator(f"tr.sample-row[data-sample='{sample}']")
    page.wait_for_function(f"() => document.querySelector(\"tr[data-sample='{sample}'] img.map\").src.includes('/saliency/{sample}/{other}/')")
    assert all(f"/saliency/{sample}/{other}/" in src for src in row.locator("img.map").evaluate_all("i => i.map(x => x.src)"))
    assert row.locator(".label-chip.active").get_attribute("data-label") == str(other)
    page.wait_for_function(IMAGES_LOADED)


def test_zoom_view_opens_with_every_explainer_and_is_in_the_link(page, url, base):
    open_browser_page(page, url, base.ids["shapes/run-a"])
    sample = page.locator("tr.sample-row").first.get_attribute("data-sample")
    page.locator("tr.sample-row").first.locator("button.thumb").click()
    dialog = page.locator("dialog#zoom")
    dialog.wait_for(state="visible")
    page.wait_for_function(IMAGES_LOADED)
    assert dialog.locator(".zoom-grid figcaption").all_inner_texts()[1:] == ["Gradient", "GradCAM"]
    assert base.run_a.names[int(sample)] in dialog.locator("h2").inner_text()
    assert f"zoom={sample}" in current_url(page)
    page.reload()  # the link opens the same large view
    dialog.wait_for(state="visible")
    assert base.run_a.names[int(sample)] in dialog.locator("h2").inner_text()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    # the dialog's "close" event, which drops the zoom from the address, is dispatched a task after it hides
    page.wait_for_function("() => !window.location.search.includes('zoom=')", timeout=5000)
    # keyboard: move to the second row and open it with Enter
    page.locator("tr.sample-row").first.focus()
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    dialog.wait_for(state="visible")
    second = page.locator("tr.sample-row").nth(1).get_attribute("data-sample")
    assert base.run_a.names[int(second)] in dialog.locator("h2").inner_text()
    page.wait_for_function(IMAGES_LOADED)


def test_boxes_are_drawn_in_the_zoom_view_of_a_ground_truth_label(page, url, base):
    open_browser_page(page, url, base.ids["shapes/run-a"], "?types=TP&zoom=0&zl=0")
    page.locator("dialog#zoom").wait_for(state="visible")
    assert page.locator("dialog#zoom svg.boxes rect").count() == 1


def test_running_summary_page_updates_as_samples_arrive(page, url, base):
    from xaiboard.store import Batch, PredictionRecord, SampleRecord
    import numpy as np

    page.goto(f"{url}/s/{base.ids['live']}")
    page.wait_for_selector("tr.sample-row")
    assert page.locator(".progress-text").inner_text() == "3 / 10"
    assert len(row_ids(page)) == 3
    base.live_writer.write_batch(Batch(samples=[SampleRecord(8, "arrived.png", np.full((24, 24, 3), 90, np.uint8), [0])],
                                       predictions=[PredictionRecord(8, 0, 0.99, True, "TP")]))
    page.wait_for_function("() => document.querySelectorAll('tr.sample-row').length === 4", timeout=20_000)
    assert page.locator(".progress-text").inner_text() == "4 / 10"
    assert row_ids(page)[0] == 8  # highest probability first


# -- evaluation --------------------------------------------------------------------------------------------------


def test_scores_page_draws_charts_and_weights_change_the_comprehensive_score(page, url, base):
    page.goto(f"{url}/s/{base.ids['shapes/run-a']}/scores")
    page.wait_for_function("() => document.querySelectorAll('.chart .main-svg').length >= 5")
    assert page.locator("table.scores tbody tr").count() == 2
    assert page.locator(".metric-head .arrow.down").count() == 2 and page.locator(".metric-head .arrow.up").count() == 2
    shares = page.locator(".share").all_inner_texts()
    assert shares == ["25%"] * 4
    cell = page.locator("[data-comprehensive='Gradient'] .score-value")
    before = cell.inner_text()
    page.fill("input.weight[data-metric='InsertionAUC']", "3")
    page.wait_for_function(f"() => document.querySelector(\"[data-comprehensive='Gradient'] .score-value\").textContent !== '{before}'")
    assert page.locator(".share").first.inner_text() == "50%"
    table = page.evaluate(f"() => fetch('/api/v1/summaries/{base.ids['shapes/run-a']}/scores?weights=InsertionAUC:3,DeletionAUC:1,PointingGame:1,MaxSensitivity:1').then(r => r.json())")
    assert cell.inner_text() == f"{table['comprehensive']['Gradient']:.3f}"
    assert "w=InsertionAUC" in current_url(page)
    csv_link = page.get_attribute("#download-csv", "href")
    assert "format=csv" in csv_link and "InsertionAUC%3A3" in csv_link
    page.reload()
    page.wait_for_selector("input.weight")
    assert page.input_value("input.weight[data-metric='InsertionAUC']") == "3"
    assert page.locator("[data-comprehensive='Gradient'] .score-value").inner_text() == cell.inner_text()
    page.select_option("section.chart-card:has(#chart-metric) select", "PointingGame")
    page.wait_for_function("() => document.querySelector('#chart-metric .gtitle') && document.querySelector('#chart-metric .gtitle').textContent.includes('PointingGame')")
    ticks = page.eval_on_selector_all("#chart-metric .ytick text", "t => t.map(x => x.textContent)")
    assert "<b>cross</b>" in ticks  # markup in a class name shows as typed


def test_compare_page_without_ids_lets_you_pick(page, url, base):
    page.goto(f"{url}/compare")
    page.wait_for_selector(".pick-row")
    assert page.locator(".pick-row").count() == 3  # the broken summary cannot be compared
    page.locator(".pick-row", has_text="run-a").locator("input").check()
    page.locator(".pick-row", has_text="live").locator("input").check()
    page.click("button.primary:has-text('Compare')")
    page.wait_for_selector("table.compare")
    assert re.search(r"ids=[\w-]+,[\w-]+", page.url)
    page.wait_for_function(IMAGES_LOADED)


# -- the demo summary --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The runner's demo (digits, a small CNN trained in seconds) written into a fresh base directory and served."""
    from xaiboard.runner.demo import run_demo

    base = tmp_path_factory.mktemp("demo")
    directory = run_demo(dataset="digits", samples=24, out=base, serve=False, seed=0, progress=False)
    server, address = start_server(base)
    yield directory, address
    stop_server(server)


def test_list_shows_the_demo_summary(page, demo):
    directory, url = demo
    from xaiboard.store import Summary

    with Summary.open(directory) as summary:
        name, explainers = summary.run().name, [e.name for e in summary.explainers()]
    page.goto(url + "/")
    row = page.locator("tr[data-id]", has_text=name)
    row.wait_for()
    assert row.locator(".status").inner_text().lower() == "complete"
    assert row.locator("td.num").inner_text() == "24"
    assert all(explainer in row.inner_text() for explainer in explainers)
    row.locator("a.name").click()
    page.wait_for_selector("tr.sample-row")
    page.wait_for_function(IMAGES_LOADED)
    assert page.locator("th.map-head").all_inner_texts() == explainers
    assert page.locator("tr.sample-row").count() == 20


def test_saliency_browser_on_the_demo_filters_by_label_and_type(page, demo):
    directory, url = demo
    from xaiboard.store import Summary

    with Summary.open(directory) as summary:
        counts = summary.label_counts()
        kind = "FP" if any(c["FP"] for c in counts.values()) else "TP"
        label = next(index for index, c in counts.items() if c[kind])
        expected = [s.id for s in summary.samples([label], [kind], "-prob", 0, 200).samples]
        everything = [s.id for s in summary.samples([], [], "-prob", 0, 20).samples]
    page.goto(url + "/")
    page.locator("tr[data-id] a.name").first.click()
    page.wait_for_selector("tr.sample-row")
    wait_rows(page, everything)
    page.click("#label-filter summary")
    page.check(f"#label-filter input[value='{label}']")
    page.check(f"input[name=type][value={kind}]")
    wait_rows(page, expected)
    first_map = page.locator("img.map").first.get_attribute("src")
    page.click("label.switch")
    page.wait_for_function("() => document.querySelector('img.map').src.includes('overlay=0')")
    assert page.locator("img.map").first.get_attribute("src") != first_map
    page.locator("tr.sample-row").first.locator("button.thumb").click()
    page.locator("dialog#zoom").wait_for(state="visible")
    page.wait_for_function(IMAGES_LOADED)
    assert page.locator("dialog#zoom .zoom-grid figcaption").count() == 14  # the input and every explainer
    page.keyboard.press("Escape")
    page.click(".tab:has-text('Evaluation')")
    page.wait_for_function("() => document.querySelectorAll('.chart .main-svg').length >= 5")
    assert page.locator("table.scores tbody tr").count() == 13  # one row per explainer
