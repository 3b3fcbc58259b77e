"""The saliency browser and the compare page at ImageNet scale, in Chromium: 1,000 classes of which 12 have samples,
11 explainers, 224 x 224 photos, and a second run that shares nothing with the first.

Checks what a person sees and what the page fetches: the class filter, links that carry every control, images
requested at the size they are shown and only when near the viewport, and comparisons that say when they mean
nothing.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

import imagenet_like
from test_browser import IMAGES_LOADED, browser, close_page, current_url, new_page, start_server, stop_server  # noqa: F401
from test_server_registry import write_summary
from xaiboard.server.registry import summary_id

pytestmark = pytest.mark.browser
EFFNET, AGAIN, TINY = (summary_id(p) for p in ("imagenet/effnet", "imagenet/effnet-again", "shapes/tiny"))
NAMES = imagenet_like.class_names()



@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("base")
    imagenet_like.write(root / "imagenet" / "effnet")
    imagenet_like.write(root / "imagenet" / "effnet-again", seed=1)
    write_summary(root / "shapes" / "tiny", 12, ["Gradient", "GradCAM"], uncertainty=True, seed=1)
    server, address = start_server(root)
    yield address
    stop_server(server)


@pytest.fixture(scope="module")
def context(browser):  # noqa: F811
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield context
    context.close()


@pytest.fixture
def page(context):
    page = new_page(context)
    yield page
    close_page(page)


def open_grid(page, url, query=""):
    page.goto(f"{url}/s/{EFFNET}{query}")
    page.wait_for_selector("tr.sample-row")
    page.wait_for_function(IMAGES_LOADED)


def query_of(address: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(address).query).items()}


def option_names(page) -> list[str]:
    return page.locator("#label-filter .menu-option .option-name").all_inner_texts()


# -- the class filter --------------------------------------------------------------------------------------------


def test_label_filter_lists_the_classes_with_samples_sorts_searches_and_shows_the_rest_on_request(page, url):
    open_grid(page, url)
    page.click("#label-filter summary")
    options = page.locator("#label-filter .menu-option")
    assert options.count() == 12 and "12 of 1,000 classes" in page.locator(".menu-info").inner_text()
    counts = [dict(re.findall(r"(TP|FN|FP|TN) (\d+)", t)) for t in page.locator(".option-counts").all_inner_texts()]
    assert all(set(c) == {"TP", "FN", "FP", "TN"} for c in counts)
    totals = [sum(int(v) for v in c.values()) for c in counts]
    assert totals == sorted(totals, reverse=True) and sum(totals) > 0
    assert set(option_names(page)) == {NAMES[i] for i in imagenet_like.TRUTH_CLASSES}
    page.locator("#label-filter .segment", has_text="name").click()
    assert option_names(page) == sorted(option_names(page), key=str.casefold)
    assert query_of(current_url(page))["lsort"] == "name"
    page.fill("#label-filter .menu-search", "tabby")
    assert option_names(page) == ["tabby cat"]
    page.fill("#label-filter .menu-search", "class 5")  # 99 classes without samples match, hidden for now
    assert options.count() == 0
    page.click("#label-filter .menu-more")
    assert options.count() == 99 and page.is_checked("#label-show-all")
    page.fill("#label-filter .menu-search", "")
    assert options.count() == 1000 and query_of(current_url(page))["lall"] == "1"
    assert option_names(page)[:12] == sorted(option_names(page)[:12], key=str.casefold)  # with samples first
    page.check("#label-filter input[value='281']")  # tabby cat
    page.wait_for_function("() => [...document.querySelectorAll('tr.sample-row')].every((r) => r.textContent.includes('tabby cat'))"
                           " && new URLSearchParams(location.search).get('labels') === '281'")
    page.reload()
    page.wait_for_selector("tr.sample-row")
    assert page.locator("#label-filter .dropdown-text").inner_text() == "tabby cat"
    page.click("#label-filter summary")
    assert options.count() == 1000 and page.is_checked("#label-filter input[value='281']")
    page.click("#label-filter .mini-switch")
    assert options.count() == 12


def test_ground_truth_filter_from_a_link_is_a_removable_chip(page, url):
    open_grid(page, url, "?labels=12&types=FP&truth=1")
    chip = page.locator(".filter-chip")
    assert chip.inner_text().startswith("ground truth: goldfish")
    samples = [u for u in page.requested if "/samples?" in u]
    assert query_of(samples[-1])["truth"] == "1" and query_of(samples[-1])["labels"] == "12"
    page.goto(f"{url}/s/{EFFNET}?truth=88")
    page.wait_for_selector("tr.sample-row")
    rows = page.eval_on_selector_all("tr.sample-row", "rows => rows.map(r => +r.dataset.sample)")
    assert sorted(rows) == [s for s in range(24) if s % 12 == 2]  # the macaw samples
    actives = page.locator("tr.sample-row .label-chip.active .label-name").all_inner_texts()
    assert actives == ["macaw"] * len(rows)  # the row shows the maps of the ground truth filtered by
    page.click(".filter-chip .chip-remove")
    page.wait_for_function("() => document.querySelectorAll('tr.sample-row').length === 20")
    assert page.locator(".filter-chip").count() == 0 and "truth" not in query_of(current_url(page))
    assert "truth=" not in [u for u in page.requested if "/samples?" in u][-1]


# -- every control in the URL ------------------------------------------------------------------------------------


def test_the_label_picked_in_a_row_and_the_large_view_survive_a_reload(page, url):
    open_grid(page, url)
    row = page.locator("tr.sample-row").first
    sample = row.get_attribute("data-sample")
    other = row.locator(".label-chip:not(.active)").first.get_attribute("data-label")
    row.locator(f".label-chip[data-label='{other}']").click()
    assert query_of(current_url(page))["rl"] == f"{sample}:{other}"
    page.reload()
    page.wait_for_selector("tr.sample-row")
    row = page.locator(f"tr.sample-row[data-sample='{sample}']")
    assert row.locator(".label-chip.active").get_attribute("data-label") == other
    assert f"/saliency/{sample}/{other}/" in row.locator("img.map").first.get_attribute("src")
    row.locator("button.thumb").click()
    dialog = page.locator("dialog#zoom")
    dialog.wait_for(state="visible")
    assert dialog.locator(".label-chip.active").get_attribute("data-label") == other
    third = dialog.locator(".label-chip:not(.active)").first.get_attribute("data-label")
    dialog.locator(f".label-chip[data-label='{third}']").click()
    query = query_of(current_url(page))
    assert (query["zoom"], query["zl"], query["rl"]) == (sample, third, f"{sample}:{other}")
    page.reload()
    dialog.wait_for(state="visible")
    assert dialog.locator(".label-chip.active").get_attribute("data-label") == third
    assert f"/saliency/{sample}/{third}/" in dialog.locator("img.map").first.get_attribute("src")
    page.keyboard.press("Escape")
    page.wait_for_function("() => !window.location.search.includes('zoom=')")
    assert page.locator(f"tr.sample-row[data-sample='{sample}'] .label-chip.active").get_attribute("data-label") == other


def test_zoom_shows_only_the_selected_explainers_at_full_resolution(page, url):
    open_grid(page, url, "?explainers=Gradient,GradCAM,RISE")
    page.locator("tr.sample-row").first.locator("button.thumb").click()
    dialog = page.locator("dialog#zoom")
    dialog.wait_for(state="visible")
    page.wait_for_function("() => [...document.querySelectorAll('dialog img')].every((i) => i.complete && i.naturalWidth > 0)")
    assert dialog.locator(".zoom-grid figure[data-explainer]").evaluate_all("f => f.map(x => x.dataset.explainer)") == ["Gradient", "GradCAM", "RISE"]
    assert dialog.locator(".zoom-grid figcaption").all_inner_texts()[1:] == ["Gradient", "GradCAM", "RISE"]
    # frames about 270 px wide show a 224 px image: the stored size, not an enlarged one
    sources = dialog.locator("img").evaluate_all("i => i.map(x => [x.src, x.naturalWidth, x.parentElement.clientWidth])")
    assert all("size=" not in src and natural == 224 and frame >= 224 for src, natural, frame in sources)
    page.keyboard.press("Escape")
    page.uncheck("input[name=explainer][value=RISE]")
    page.wait_for_function("() => document.querySelectorAll('th.map-head').length === 2")
    page.locator("tr.sample-row").first.locator("button.thumb").click()
    dialog.wait_for(state="visible")
    page.wait_for_function("() => document.querySelectorAll('dialog figure[data-explainer]').length === 2")


# -- a light grid ------------------------------------------------------------------------------------------------


def test_grid_images_are_lazy_and_requested_at_the_size_they_are_shown(page, url):
    open_grid(page, url)
    images = page.locator("#results img.map, #results img.sample-image")
    attributes = images.evaluate_all("i => i.map(x => [x.loading, x.decoding, x.getAttribute('src')])")
    assert len(attributes) == 20 * 12
    assert all(loading == "lazy" and decoding == "async" and "size=128" in src for loading, decoding, src in attributes)
    fetched = [u for u in page.requested if "/saliency/" in u or "/images/" in u]
    assert fetched and all(int(query_of(u).get("size", 0)) <= 384 for u in fetched)
    assert len(fetched) < len(attributes)  # the rows far below the viewport are not fetched
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_function(IMAGES_LOADED)
    assert len([u for u in page.requested if "/saliency/" in u or "/images/" in u]) > len(fetched)


def test_a_sharp_screen_gets_twice_the_pixels_but_never_more_than_stored(browser, url):  # noqa: F811
    context = browser.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=2)
    page = context.new_page()
    try:
        page.goto(f"{url}/s/{EFFNET}")
        page.wait_for_selector("tr.sample-row img.map")
        page.wait_for_function(IMAGES_LOADED)
        # 128 CSS px are 256 device px: more than the 224 px stored, so the stored image is fetched as it is
        sources = page.locator("#results img.map, #results img.sample-image").evaluate_all(
            "i => i.map(x => [x.getAttribute('src'), x.complete ? x.naturalWidth : 224])")
        assert all("size=" not in src and natural == 224 for src, natural in sources)
        steps = page.evaluate("() => import('/static/js/util.js').then((u) => [u.requestSize(128, 1000), u.requestSize(128, 224),"
                              " u.requestSize(300, 4000), u.requestSize(128, null)])")
        assert steps == [256, None, 768, 256]
    finally:
        context.close()


def test_eleven_explainers_scroll_sideways_with_sample_and_labels_in_place(page, url):
    open_grid(page, url)
    heads = page.locator("th.map-head")
    assert heads.all_inner_texts() == imagenet_like.EXPLAINERS
    colors = page.evaluate(f"() => fetch('/api/v1/summaries/{EFFNET}').then(r => r.json()).then(d => d.explainers.map(e => e.color))")
    shown = heads.evaluate_all("h => h.map(x => getComputedStyle(x.querySelector('.swatch')).backgroundColor)")
    as_rgb = ["rgb({}, {}, {})".format(*(int(c[i:i + 2], 16) for i in (1, 3, 5))) for c in colors]
    assert shown == as_rgb
    scroller = page.locator(".grid-scroll")
    assert scroller.evaluate("s => s.scrollWidth > s.clientWidth")
    last = heads.last
    assert last.evaluate("h => h.getBoundingClientRect().left") > scroller.evaluate("s => s.getBoundingClientRect().right")
    scroller.evaluate("s => { s.scrollLeft = s.scrollWidth; }")
    box, frame = last.bounding_box(), scroller.bounding_box()
    assert box["x"] + box["width"] <= frame["x"] + frame["width"] + 1
    on_top = page.evaluate(f"() => document.elementFromPoint({box['x'] + box['width'] / 2}, {box['y'] + box['height'] / 2}).closest('th')?.dataset.explainer")
    assert on_top == "RISE"  # visible, not under the sticky columns
    cell = page.locator("tr.sample-row").first.locator("td.sample-cell").bounding_box()
    assert abs(cell["x"] - frame["x"]) <= 2  # the sample column stays in place
    last_map = page.locator("tr.sample-row").first.locator("td.map-cell").last.bounding_box()
    assert last_map["x"] >= cell["x"] + 150


def test_probabilities_show_the_digits_they_need(page, url):
    open_grid(page, url)
    values = page.locator(".prob-value").evaluate_all("v => v.map(x => [x.textContent, parseFloat(x.title.slice(4))])")
    small = [(text, p) for text, p in values if p < 0.01]
    assert small, "the ImageNet-like run has small probabilities"
    for text, p in values:
        assert not text.startswith("<") and text not in ("0.000", "0.00")
        assert float(text) == pytest.approx(p, rel=0.05)
    texts = page.evaluate("() => import('/static/js/util.js').then((u) => [0.0004, 0.0042, 0.5, 0.99996, 1].map(u.probText))")
    assert texts == ["4.0e-4", "0.0042", "0.500", "0.99996", "1"]
    page.goto(f"{url}/s/{TINY}")
    page.wait_for_selector(".interval")
    for text in page.locator(".interval").all_inner_texts():
        low, high = (float(x) for x in text.strip("[]").split(", "))
        assert 0 <= low <= high <= 1


# -- comparing runs ----------------------------------------------------------------------------------------------


def test_compare_unrelated_runs_warns_and_leaves_the_delta_uncoloured(page, url):
    page.goto(f"{url}/compare?ids={EFFNET},{TINY}")
    page.wait_for_selector("table.compare")
    warning = page.locator("#compare-warning")
    assert warning.is_visible() and warning.get_attribute("role") == "alert"
    items = warning.locator("li").all_inner_texts()
    assert any(i.startswith("Classes differ") for i in items) and any(i.startswith("Models differ") for i in items)
    assert any(i.startswith("Datasets differ") for i in items)
    deltas = page.locator("table.compare td.delta")
    assert deltas.count() > 0 and page.locator("td.delta.better, td.delta.worse").count() == 0
    assert page.locator("td.delta.plain").count() == deltas.count() and page.locator("td.best").count() == 0
    assert "not coloured" in page.locator("#colour-note").inner_text()
    assert "no class in common" in page.locator("#compare section.card", has=page.locator("#class-explainer")).inner_text()


def test_compare_related_runs_normalises_jointly_colours_and_keeps_pickers_in_the_url(page, url):
    page.goto(f"{url}/compare?ids={EFFNET},{AGAIN}")
    page.wait_for_selector("table.compare")
    assert page.locator("#compare-warning").count() == 0
    assert page.locator("td.delta.better, td.delta.worse").count() > 0 and page.locator("td.best").count() > 0
    note = page.locator("#normalisation-note").inner_text()
    assert "MaxSensitivity" in note and "all compared runs" in note
    charts = [u for u in page.requested if "/figures/per-class-metric" in u]
    assert len(charts) == 2 and all({"sort": "count", "offset": "0", "limit": "20"}.items() <= query_of(u).items() for u in charts)
    page.wait_for_function("() => document.querySelectorAll('.chart .main-svg').length >= 2")
    # an exact tie (both runs give Gradient a Sparseness of 0.5) is neither best nor coloured
    page.select_option("#compare-table", "Sparseness")
    tie = page.locator("table.compare tbody tr", has=page.locator("th", has_text=re.compile("^Gradient$")))
    assert tie.locator("td.best").count() == 0 and tie.locator("td.delta").inner_text() == "0"
    assert "better" not in tie.locator("td.delta").get_attribute("class")
    rows = page.locator("table.per-class tbody tr")
    assert 0 < rows.count() <= 20
    page.select_option("#class-metric", "InsertionAUC")
    page.select_option("#class-explainer", "GradCAM")
    page.wait_for_function("() => new URLSearchParams(location.search).get('explainer') === 'GradCAM'")
    page.wait_for_function("() => [...document.querySelectorAll('.chart .gtitle')].some((t) => t.textContent.includes('InsertionAUC'))")
    query = query_of(current_url(page))
    assert (query["metric"], query["explainer"], query["table"]) == ("InsertionAUC", "GradCAM", "Sparseness")
    names = set(rows.locator("th").all_inner_texts())
    assert names and names <= set(NAMES)
    page.reload()
    page.wait_for_selector("table.per-class")
    assert page.input_value("#class-metric") == "InsertionAUC" and page.input_value("#class-explainer") == "GradCAM"
    assert page.input_value("#compare-table") == "Sparseness"
