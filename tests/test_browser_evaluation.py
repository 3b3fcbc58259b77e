"""The evaluation page in Chromium on an ImageNet-size summary (1,000 classes, a few dozen with scores): per-class
charts that show only classes with scores, sorted and paged, every control in the URL, "best" only where the lead
is larger than the noise, and the confusion card with links into the saliency browser."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np
import pytest

import imagenet_like
from test_browser import Console, current_url, start_server, stop_server
from test_browser import browser  # noqa: F401  (the Chromium fixture)
from test_confusion import write_multi_label
from xaiboard.server.registry import summary_id
from xaiboard.store import Summary

pytestmark = pytest.mark.browser
CHART_DRAWN = "id => { const n = document.getElementById(id); return n && n._fullData && n._fullData.length > 0; }"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("evaluation")
    imagenet_like.write(base / "imagenet")
    write_multi_label(base / "multi")
    return base


@pytest.fixture(scope="module")
def url(root):
    server, address = start_server(root)
    yield address
    stop_server(server)


@pytest.fixture
def page(browser):  # noqa: F811
    """A fresh profile at 1,400 pixels wide for each test; no console error may happen on it."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    console = Console(page)
    yield page
    context.close()
    assert console.errors == [], "console errors:\n" + "\n".join(console.errors)


@pytest.fixture(scope="module")
def class_means(root):
    """Per (explainer, metric), per class with scores, the mean of the written values."""
    values = defaultdict(list)
    with Summary.open(root / "imagenet") as summary:
        for explainer, metric, _, label, value in summary.scores():
            if value is not None:
                values[(explainer, metric, label)].append(value)
    means = defaultdict(dict)
    for (explainer, metric, label), found in values.items():
        means[(explainer, metric)][label] = (float(np.mean(found)), len(found))
    return means


SUMMARY = summary_id("imagenet")
NAMES = imagenet_like.class_names()


def open_scores(page, url, query=""):
    page.goto(f"{url}/s/{SUMMARY}/scores{query}")
    page.wait_for_function(CHART_DRAWN, arg="chart-metric")
    page.wait_for_function(CHART_DRAWN, arg="chart-explainer")


def rows_of(page, chart) -> list[str]:
    return page.evaluate("id => document.getElementById(id)._fullData[0].y", f"chart-{chart}")


def wait_rows_change(page, chart, before):
    page.wait_for_function("([id, before]) => JSON.stringify(document.getElementById(id)._fullData[0].y) !== before",
                           arg=[f"chart-{chart}", json.dumps(before, ensure_ascii=False, separators=(",", ":"))])


def card(page, chart):
    return page.locator(f"section.chart-card[data-chart='{chart}']")


def test_per_class_chart_shows_only_classes_with_scores_sorted_and_paged(page, url, class_means):
    open_scores(page, url, "?sort=score")  # the default is the classes with most scored pairs first
    per_class = defaultdict(list)  # per class with scores, every explainer's class mean
    for (_, metric), means in class_means.items():
        if metric == "PointingGame":
            for label, (mean, _) in means.items():
                per_class[label].append(mean)
    assert len(per_class) < 100 and len(per_class) > 20  # far from the 1,000 classes, more than one page
    score = {NAMES[label]: float(np.mean(v)) for label, v in per_class.items()}
    shown = rows_of(page, "metric")
    assert len(shown) == 20 and set(shown) <= set(score)
    assert page.evaluate("() => document.getElementById('chart-metric')._fullData.length") == 11
    assert page.evaluate("() => document.getElementById('chart-metric')._fullData[0].orientation") == "h"
    values = [score[name] for name in shown]
    assert all(a >= b - 1e-9 for a, b in zip(values, values[1:]))  # best first
    assert min(values) >= max(v for n, v in score.items() if n not in shown) - 1e-9
    assert card(page, "metric").locator(".page-info").inner_text() == f"classes 1–20 of {len(score)} with scores"
    # the legend sits right of the plot, clear of the class names
    legend = page.locator("#chart-metric .legend").bounding_box()
    plot = page.locator("#chart-metric .nsewdrag").first.bounding_box()
    assert legend["x"] >= plot["x"] + plot["width"]

    card(page, "metric").locator("select").nth(1).select_option("name")
    wait_rows_change(page, "metric", shown)
    alphabetical = sorted(score, key=str.casefold)
    assert rows_of(page, "metric") == alphabetical[:20]
    assert "sort=name" in current_url(page) and "order" not in current_url(page)
    card(page, "metric").locator("button.next").click()
    wait_rows_change(page, "metric", alphabetical[:20])
    assert rows_of(page, "metric") == alphabetical[20:40]
    assert "offset=20" in current_url(page)
    assert card(page, "metric").locator(".page-info").inner_text() == f"classes 21–40 of {len(score)} with scores"
    card(page, "metric").locator("button.order").click()
    wait_rows_change(page, "metric", alphabetical[20:40])
    assert rows_of(page, "metric") == alphabetical[::-1][:20] and "order=desc" in current_url(page)
    assert "offset" not in current_url(page)  # a new order starts at the first page


def test_reload_keeps_every_picker_sort_and_page(page, url, class_means):
    open_scores(page, url)
    card(page, "metric").locator("select").first.select_option("Sparseness")
    page.wait_for_function("() => document.querySelector('#chart-metric .gtitle').textContent.includes('Sparseness')")
    card(page, "explainer").locator("select").first.select_option("GradCAM")
    page.wait_for_function("() => document.querySelector('#chart-explainer .gtitle').textContent.includes('GradCAM')")
    counts = page.evaluate("() => document.getElementById('chart-explainer')._fullData[0].customdata")
    assert list(counts) == sorted(counts, reverse=True)
    expected = {NAMES[label]: n for label, (_, n) in class_means[("GradCAM", "PointingGame")].items()}
    assert [expected[name] for name in rows_of(page, "explainer")] == list(counts)
    before = rows_of(page, "explainer")
    card(page, "explainer").locator("select").nth(2).select_option("50")
    wait_rows_change(page, "explainer", before)
    total = len(class_means[("GradCAM", "PointingGame")])
    assert len(rows_of(page, "explainer")) == min(50, total)
    card(page, "explainer").locator("button.next").click()
    page.wait_for_function("() => window.location.search.includes('eoffset=50')")
    page.wait_for_function("n => document.getElementById('chart-explainer')._fullData[0].y.length === n",
                           arg=total - 50)
    card(page, "distribution").locator("select").select_option("MaxSensitivity")
    page.fill("input.weight[data-metric='PointingGame']", "2")
    page.wait_for_function("() => window.location.search.includes('w=')")
    address = current_url(page)
    for part in ("metric=Sparseness", "explainer=GradCAM", "elimit=50", "eoffset=50",
                 "dist=MaxSensitivity", "w=PointingGame%3A2"):
        assert part in address
    shown = (rows_of(page, "metric"), rows_of(page, "explainer"))

    page.goto(address)
    page.wait_for_function(CHART_DRAWN, arg="chart-explainer")
    page.wait_for_function(CHART_DRAWN, arg="chart-distribution")
    assert current_url(page) == address
    assert card(page, "metric").locator("select").first.input_value() == "Sparseness"
    pickers = card(page, "explainer").locator("select")
    assert [pickers.nth(i).input_value() for i in range(3)] == ["GradCAM", "count", "50"]
    assert card(page, "distribution").locator("select").input_value() == "MaxSensitivity"
    assert page.input_value("input.weight[data-metric='PointingGame']") == "2"
    assert (rows_of(page, "metric"), rows_of(page, "explainer")) == shown
    assert card(page, "explainer").locator(".page-info").inner_text() == f"classes 51–{total} of {total} with scores"
    assert card(page, "explainer").locator("button.next").is_disabled()
    assert "MaxSensitivity" in page.locator("#chart-distribution .gtitle").text_content()


def test_best_only_where_the_lead_beats_the_noise(page, url):
    open_scores(page, url)
    best = page.eval_on_selector_all("td.num.best", "cells => cells.map(c => [c.dataset.explainer, c.dataset.metric])")
    assert ["GradCAM", "PointingGame"] in best
    assert not [cell for cell in best if cell[1] == "Sparseness"]
    tied = [page.locator(f"td[data-explainer='{e}'][data-metric='Sparseness']") for e in ("Gradient", "InputXGradient")]
    assert [c.inner_text() for c in tied] == ["0.500", "0.500"]
    title = page.get_attribute("td[data-explainer='GradCAM'][data-metric='PointingGame']", "title")
    assert "±" in title and "best: leads" in title and "2·√(SE₁² + SE₂²)" in title
    assert "2·√(SE₁² + SE₂²)" in page.locator("#table .footnote").inner_text()
    table = page.evaluate(f"() => fetch('/api/v1/summaries/{SUMMARY}/scores').then(r => r.json())")
    rows = {(r["explainer"], r["metric"]): r for r in table["scores"]}
    assert rows[("Gradient", "Sparseness")]["sem"] == 0 and rows[("GradCAM", "PointingGame")]["sem"] > 0
    assert table["best"]["PointingGame"]["explainer"] == "GradCAM"
    # the highlighted cells are exactly the API's decisions
    assert sorted(best) == sorted([d["explainer"], m] for m, d in table["best"].items() if d["explainer"])


def test_confusion_card_links_into_the_browser(page, url):
    open_scores(page, url)
    page.wait_for_selector("#confusion-matrix")
    assert "accuracy" in page.locator("#confusion .card-head").inner_text()
    data = page.evaluate(f"() => fetch('/api/v1/summaries/{SUMMARY}/confusion').then(r => r.json())")
    assert page.locator("table.pairs tbody tr").count() == len(data["pairs"]) > 0
    matrix = data["matrix"]
    assert page.locator("#confusion-matrix tbody tr").count() == len(matrix["classes"])
    cells = page.eval_on_selector_all("#confusion-matrix tbody tr", "rows => rows.map(r => [...r.querySelectorAll('td')]"
                                      ".map(c => c.textContent ? parseInt(c.textContent, 10) : 0))")
    assert cells == matrix["counts"]  # every count where the API puts it, empty cells for zero
    first = data["pairs"][0]
    link = page.locator("table.pairs a.pair-link").first
    assert link.inner_text() == str(first["count"])
    link.click()
    expected = rf"/s/{SUMMARY}\?labels={first['predicted']}&types=FP&truth={first['truth']}$"
    page.wait_for_url(re.compile(expected))
    page.wait_for_selector("tr.sample-row, .empty")

    open_scores(page, url)
    # a diagonal cell opens the class's correct predictions
    index = next(i for i, row in enumerate(matrix["counts"]) if row[i] > 0)
    label = matrix["classes"][index]
    page.locator(f"#confusion-matrix tbody tr:nth-child({index + 1}) td:nth-of-type({index + 1}) a").click()
    page.wait_for_url(re.compile(rf"/s/{SUMMARY}\?labels={label}&types=TP$"))


def test_confusion_of_a_multi_label_run_says_why_it_is_missing(page, url):
    page.goto(f"{url}/s/{summary_id('multi')}/scores")
    page.wait_for_selector(".confusion-message")
    assert "not available for multi-label runs" in page.locator(".confusion-message").inner_text()
