"""The zoom view's Integrated Gradients and faithfulness curves panels in Chromium, over a summary the real runner
writes for a tiny linear model: what the charts draw is what the summary stored, the images along the path load
and start at the baseline, the random map's curve is the dashed reference, the panels follow the label and the
explainer selection, a failed request stays inside the panel, and a summary without diagnostics draws no chart.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from diagnostic_run import write_diagnostic_run
from test_browser import browser, close_page, context, new_page, page, start_server, stop_server, wait_rows  # noqa: F401
from test_server_registry import write_summary
from xaiboard.server.registry import summary_id
from xaiboard.store import Summary

pytestmark = pytest.mark.browser
torch = pytest.importorskip("torch")

SIZE = 32
CLASSES = ["red", "green", "blue"]
IG = ["IntegratedGradients[black]", "IntegratedGradients[white]"]
EXPLAINERS = [*IG, "Gradient"]
REFERENCE = "Random"  # RandomMap, the chance level: drawn dashed grey, kept whatever the selection
METRICS = ["InsertionAUC", "DeletionAUC"]
RUN, PLAIN, CNN = summary_id("linear"), summary_id("plain"), summary_id("cnn")
DRAWN = "#zoom .diagnostics[data-state='drawn']"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from torch import nn

    from xaiboard.runner import ImageClassificationRunner
    from xaiboard.runner.benchmarks import Faithfulness
    from xaiboard.runner.explainers import Gradient, IntegratedGradients, RandomMap

    root = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, len(CLASSES)))
    items = []
    for i in range(3):
        image = 0.3 * torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(i))
        image[i % 3, 8:22, 8:22] = 0.9  # a square in the class's colour, visible along the path
        items.append({"image": (image - 0.5) / 0.25, "labels": [i % 3], "name": f"square_{i}.png"})
    runner = ImageClassificationRunner(root / "linear", network=net, data=items, classes=CLASSES, device="cpu",
                                       top_k=2, mean=[0.5] * 3, std=[0.25] * 3)
    explainers = [*IntegratedGradients.with_baselines(net, ["black", "white"], n_steps=8, search_steps=32),
                  Gradient(net), RandomMap(net, seed=0)]
    runner.register_saliency(explainers, [Faithfulness("InsertionAUC", steps=12), Faithfulness("DeletionAUC")])
    runner.run(progress=False).close()
    write_summary(root / "plain", 4, ["Gradient", "GradCAM"], uncertainty=False, seed=0)
    write_diagnostic_run(root / "cnn")  # a CNN whose Integrated Gradients misses its tolerance on some pairs
    return root


@pytest.fixture(scope="module")
def summary(root):
    summary = Summary.open(root / "linear")
    yield summary
    summary.close()


@pytest.fixture(scope="module")
def labels(summary) -> list[int]:
    """The explained labels of sample 0, as its zoom view lists them."""
    found = [p.label_index for p in summary.predictions(0, explained_only=True)]
    assert len(found) == 2
    return found


@pytest.fixture(scope="module")
def url(root):
    server, address = start_server(root)
    yield address
    stop_server(server)




def open_zoom(page, url, label, state="drawn", summary=RUN):
    page.goto(f"{url}/s/{summary}?zoom=0&zl={label}")
    page.wait_for_selector(f"#zoom .diagnostics[data-label='{label}'][data-state='{state}']")


@pytest.fixture(scope="module")
def zoomed(context, url, labels):
    """One page with the zoom view of sample 0 and its first label, for the tests that only read it."""
    page = new_page(context)
    open_zoom(page, url, labels[0])
    yield page
    close_page(page)


def chart(page, name) -> list[dict]:
    """The traces plotly drew in a chart of the zoom view: name, x, y, line and fill."""
    return page.evaluate("""name => document.querySelector(`#zoom [data-chart="${name}"]`).data.map((t) => ({
        name: t.name, x: t.x, y: t.y, meta: t.meta || null, line: t.line, fill: t.fill || null }))""", name)


def close(actual, expected) -> bool:
    return len(actual) == len(expected) and all(
        (a is None and math.isnan(e)) or (a is not None and abs(a - e) <= 1e-6) for a, e in zip(actual, expected))


def test_both_panels_open_below_the_maps_and_the_path_charts_are_the_stored_path(zoomed, url, summary, labels):
    page = zoomed
    assert page.evaluate("() => document.querySelector('#zoom .zoom-grid').nextElementSibling.className") == "diagnostics"
    assert page.locator("#zoom .diag-panel h3").all_inner_texts() == ["Integrated Gradients", "Faithfulness curves"]
    paths = summary.paths(0, labels[0])
    assert [p.explainer for p in paths] == IG
    heads = page.locator("#zoom .ig-row-head").all_inner_texts()
    assert [h.split("\n")[0] for h in heads] == IG and "black image" in heads[0] and "white image" in heads[1]
    probability, gradient = chart(page, "ig-probability"), chart(page, "ig-gradient")
    assert [t["name"] for t in probability] == IG and [t["name"] for t in gradient] == IG
    for path, p_trace, g_trace in zip(paths, probability, gradient):
        assert close(p_trace["x"], path.alphas) and close(g_trace["x"], path.alphas)
        assert close(p_trace["y"], path.probabilities) and close(g_trace["y"], path.gradients)
    detail = page.evaluate("u => fetch(u).then((r) => r.json())", f"{url}/api/v1/summaries/{RUN}")
    colors = {e["name"]: e["color"] for e in detail["explainers"]}
    assert [t["line"]["color"] for t in probability] == [colors[name] for name in IG]
    values = np.concatenate([p.gradients for p in paths])
    positive = values[values > 0]
    log = positive.max() / positive.min() > 100
    assert page.evaluate("() => document.querySelector('#zoom [data-chart=ig-gradient]')._fullLayout.yaxis.type") == (
        "log" if log else "linear")
    # the verdict: converged (the linear model's integral is exact) with its numbers
    for path, row in zip(paths, page.locator("#zoom .ig-row").all()):
        verdict = row.locator(".ig-verdict")
        assert path.relative_delta < 0.05 and "verdict-ok" in verdict.get_attribute("class")
        assert "matches F(x) − F(baseline)" in verdict.inner_text()
        facts = dict(zip(row.locator(".ig-facts dt").all_inner_texts(), row.locator(".ig-facts dd").all_inner_texts()))
        assert float(facts["F(x) − F(baseline)"]) == pytest.approx(path.output_gap, abs=5e-4)
        assert facts["steps"].startswith("8") and facts["steps needed"] == str(path.steps_needed)
    assert "saturates" in page.locator("#zoom .diag-caption").nth(1).inner_text()


PIXEL = """img => { const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  return [...g.getImageData(Math.floor(c.width / 2), Math.floor(c.height / 2), 1, 1).data].slice(0, 3); }"""


def test_the_images_along_the_path_load_from_the_baseline_to_the_input(zoomed):
    page = zoomed
    page.wait_for_function("() => { const images = [...document.querySelectorAll('#zoom .ig-step img')];"
                           " return images.length === 10 && images.every((i) => i.complete && i.naturalWidth > 0); }")
    black, white = page.locator("#zoom .ig-row").all()
    captions = [c.split("\n")[0] for c in black.locator(".ig-caption").all_inner_texts()]
    assert captions == ["α = 0", "α = 0.25", "α = 0.5", "α = 0.75", "α = 1"]
    assert black.locator(".ig-step img").first.evaluate(PIXEL) == [0, 0, 0]
    assert white.locator(".ig-step img").first.evaluate(PIXEL) == [255, 255, 255]
    # halfway, each row shows the mean of its baseline and the input; at alpha 1, the input as the zoom view shows it
    page.wait_for_function("() => document.querySelector('#zoom img.zoom-image').naturalWidth > 0")
    given = np.array(page.locator("#zoom img.zoom-image").evaluate(PIXEL))
    halves = [np.array(row.locator(".ig-step img").nth(2).evaluate(PIXEL)) for row in (black, white)]
    ends = [np.array(row.locator(".ig-step img").last.evaluate(PIXEL)) for row in (black, white)]
    assert given[0] > 200 and given[1] < 100  # the red square of sample 0
    assert np.abs(halves[0] - given / 2).max() <= 2 and np.abs(halves[1] - (255 + given) / 2).max() <= 2
    assert np.abs(ends[0] - given).max() <= 1 and np.abs(ends[1] - given).max() <= 1


def test_the_faithfulness_charts_draw_every_explainers_stored_curve_with_its_auc(zoomed, summary, labels):
    page = zoomed
    curves = {(c.metric, c.explainer): c for c in summary.curves(0, labels[0])}
    for metric in METRICS:
        traces = chart(page, f"curves-{metric}")
        assert [t["meta"]["explainer"] for t in traces] == [*EXPLAINERS, REFERENCE]
        points = len(curves[(metric, EXPLAINERS[0])].values)
        for trace in traces:
            stored = curves[(metric, trace["meta"]["explainer"])]
            assert close(trace["y"], stored.values.astype(np.float64))
            assert close(trace["x"], np.linspace(0, 1, points))
        *methods, reference = traces
        assert all(t["fill"] == "tozeroy" and t["line"].get("dash") is None for t in methods)
        assert reference["meta"]["reference"] and reference["line"]["dash"] == "dash"
        assert reference["line"]["color"] == "#868e96" and reference["fill"] is None
        node = page.locator(f"#zoom [data-chart='curves-{metric}']")
        legend = node.locator(".legendtext").all_text_contents()
        assert legend == [f"{e} (AUC {curves[(metric, e)].score:.3f})" for e in EXPLAINERS] + [
            f"{REFERENCE} (reference, AUC {curves[(metric, REFERENCE)].score:.3f})"]
        title = node.locator(".gtitle").text_content()
        assert title == f"{metric} · {'higher' if metric == 'InsertionAUC' else 'lower'} is better " + (
            "↑" if metric == "InsertionAUC" else "↓")
        assert node.locator(".xtitle").text_content().startswith("fraction of pixels")
        assert node.locator(".ytitle").text_content() == f"probability of {CLASSES[labels[0]]}"


def test_switching_label_reloads_the_panels_for_the_new_label(page, url, summary, labels):
    open_zoom(page, url, labels[0])
    page.click(f"#zoom .label-chip[data-label='{labels[1]}']")
    page.wait_for_selector(f"#zoom .diagnostics[data-label='{labels[1]}'][data-state='drawn']")
    paths = summary.paths(0, labels[1])
    assert all(close(t["y"], p.probabilities) for t, p in zip(chart(page, "ig-probability"), paths))
    insertion = {c.explainer: c for c in summary.curves(0, labels[1]) if c.metric == "InsertionAUC"}
    assert all(close(t["y"], insertion[t["meta"]["explainer"]].values.astype(np.float64))
               for t in chart(page, "curves-InsertionAUC"))
    assert page.locator("#zoom .ytitle").first.text_content() == f"probability of {CLASSES[labels[1]]}"


def test_deselecting_an_explainer_removes_its_path_and_its_curves_but_not_the_reference(page, url, labels):
    page.goto(f"{url}/s/{RUN}")
    page.wait_for_selector("tr.sample-row")
    for name in ("IntegratedGradients[white]", REFERENCE):
        page.locator(f"input[name='explainer'][value='{name}']").uncheck()
    page.wait_for_function("() => document.querySelectorAll('th.map-head').length === 2")
    page.locator("tr.sample-row[data-sample='0'] button.thumb").click()
    page.wait_for_selector(DRAWN)
    assert page.locator("#zoom .ig-row").evaluate_all("rows => rows.map((r) => r.dataset.explainer)") == IG[:1]
    assert [t["name"] for t in chart(page, "ig-probability")] == IG[:1]
    for metric in METRICS:
        assert [t["meta"]["explainer"] for t in chart(page, f"curves-{metric}")] == [IG[0], "Gradient", REFERENCE]


def test_a_failed_request_shows_an_error_inside_the_panel_and_leaves_the_view_working(page, url, labels):
    page.route("**/diagnostics/**", lambda route: route.fulfill(status=500, json={"error": "the summary is busy"}))
    open_zoom(page, url, labels[0], state="failed")
    assert "the summary is busy" in page.locator("#zoom .diagnostics .alert-error").inner_text()
    assert page.locator("#zoom .zoom-figure").count() == 2 + len(EXPLAINERS)  # the input and every map still there
    page.click(f"#zoom .label-chip[data-label='{labels[1]}']")  # and the view still works
    page.wait_for_selector(f"#zoom .diagnostics[data-label='{labels[1]}'][data-state='failed']")
    page.console.errors = [e for e in page.console.errors if "status of 500" not in e]


def test_a_summary_without_diagnostics_shows_one_line_and_no_chart(page, url):
    page.goto(f"{url}/s/{PLAIN}?zoom=0")
    page.wait_for_selector("#zoom .diagnostics[data-state='empty']")
    assert page.locator("#zoom .diagnostics").inner_text() == "No path or curve diagnostics stored for this pair."
    assert page.locator("#zoom .diag-chart, #zoom .diag-panel").count() == 0
    assert not any("plotly" in address for address in page.requested)  # plotly is fetched only for a chart
    # a summary written before diagnostics were stored says so
    page.route("**/diagnostics/**", lambda route: route.fulfill(json={**route.fetch().json(), "stored": False}))
    page.goto(f"{url}/s/{PLAIN}?zoom=1")
    page.wait_for_selector("#zoom .diagnostics[data-sample='1'][data-state='empty']")
    assert page.locator("#zoom .diagnostics").inner_text() == (
        "This summary was written before path and curve diagnostics were stored.")


def test_the_browser_sorts_by_the_convergence_delta_and_shows_the_pairs_that_did_not_converge(page, url, root):
    with Summary.open(root / "cnn") as cnn:
        columns = cnn.delta_columns()
        ids = cnn.sample_ids()
    over = sorted(set(columns["sample_id"][columns["over"]].tolist()))
    assert over and len(over) < len(ids)
    worst: dict[int, float] = {}
    for sample_id, value in zip(columns["sample_id"].tolist(), columns["value"].tolist()):
        worst[sample_id] = max(worst.get(sample_id, 0.0), value)
    page.goto(f"{url}/s/{CNN}")
    page.wait_for_selector("tr.sample-row")
    page.select_option("#sort", "delta")  # keeps the default descending direction: the worst first
    wait_rows(page, sorted(worst, key=lambda i: (-worst[i], i)))
    assert "sort=-delta" in page.url
    page.click("label:has(#unconverged)")
    wait_rows(page, sorted(over, key=lambda i: (-worst[i], i)))
    assert "unconverged=1" in page.url
    page.reload()
    wait_rows(page, sorted(over, key=lambda i: (-worst[i], i)))
    assert page.is_checked("#unconverged")
