"""``xaiboard export``: one HTML file that a colleague opens offline. Over a summary written by the real runner and
over synthetic ones: the gallery has the samples asked for, chosen as the browser's filters choose them, the
evaluation table shows the store's aggregates, photos' tiles are small WebP, nothing points outside the file, and
Chromium opening it from disk makes no request, decodes every image and draws the plotly charts.
"""

from __future__ import annotations

import base64
import io
import math
import re
from html import escape
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import photo
from test_server_registry import CLASSES, write_summary
from xaiboard.server.cli import main
from xaiboard.server.export import ExportError, build_report, write_report
from xaiboard.server.pages import plotly_js_path
from xaiboard.store import PredictionRecord, SaliencyRecord, SampleRecord, ScoreRecord, Summary, SummaryWriter, Batch


class Page(HTMLParser):
    """What a reader of the report sees, collected from its HTML: every tag with its attributes, text per cell."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.cells: list[tuple[dict[str, str], str]] = []
        self._cell: dict[str, str] | None = None
        self._text: list[str] = []
        self._scripts: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag == "td":
            self._cell, self._text = attributes, []
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append((self._cell, "".join(self._text).strip()))
            self._cell = None
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._cell is not None:
            self._text.append(data)
        if self._in_script:
            self._scripts.append(data)

    def all(self, tag: str, **wanted: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v or (
            k == "class_" and v in a.get("class", "").split()) for k, v in wanted.items())]

    def sample_ids(self) -> list[int]:
        return [int(a["data-sample"]) for a in self.all("article", class_="sample-card")]


def decoded(uri: str) -> Image.Image:
    head, data = uri.split(",", 1)
    assert head.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


# -- summaries -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """30 samples of five shapes, two explainers, four metrics, with uncertainty."""
    written, _ = write_summary(tmp_path_factory.mktemp("synthetic") / "shapes", 30, ["Gradient", "GradCAM"],
                               uncertainty=True, seed=1)
    return written


@pytest.fixture(scope="module")
def real(tmp_path_factory, one_torch_thread):
    """A run of the real runner: a small CNN, Gradient and GradCAM, insertion and the pointing game."""
    torch = pytest.importorskip("torch")
    from diagnostic_run import CLASSES as RUN_CLASSES, MEAN, STD, items, network

    from xaiboard.runner import ImageClassificationRunner
    from xaiboard.runner.benchmarks import Faithfulness, Localization
    from xaiboard.runner.explainers import GradCAM, Gradient

    torch.manual_seed(0)
    net = network()
    directory = tmp_path_factory.mktemp("real") / "squares"
    runner = ImageClassificationRunner(directory, network=net, data=items(6), classes=RUN_CLASSES, device="cpu",
                                       top_k=2, mean=MEAN, std=STD)
    runner.register_saliency([Gradient(net), GradCAM(net, layer="3")],
                             [Faithfulness("InsertionAUC", steps=8), Localization("PointingGame")])
    runner.run(progress=False).close()
    return directory


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three 224 x 224 photos (stored as WebP by the store) with one map each."""
    directory = tmp_path_factory.mktemp("photos") / "photos"
    writer = SummaryWriter.create(directory, name="photos")
    writer.set_labels(["apple", "pear"])
    writer.register_explainer("Gradient", {})
    writer.register_metric("InsertionAUC", True, (0.0, 1.0), "mean", {})
    writer.update_run(task="single-label", activation="softmax", image_height=224, image_width=224)
    batch = Batch()
    rng = np.random.default_rng(0)
    for sample in range(3):
        batch.samples.append(SampleRecord(sample, f"photo_{sample}.jpg", photo(224, seed=sample), [0]))
        batch.predictions.append(PredictionRecord(sample, 0, 0.9, True, "TP"))
        batch.predictions.append(PredictionRecord(sample, 1, 0.1, False, None))
        batch.saliency.append(SaliencyRecord(sample, 0, "Gradient", rng.normal(size=(224, 224))))
        batch.scores.append(ScoreRecord("Gradient", "InsertionAUC", sample, 0, float(rng.random())))
    writer.write_batch(batch)
    writer.close("complete")
    return directory


# -- what the file holds -------------------------------------------------------------------------------------------


def test_the_gallery_has_the_samples_asked_for_in_the_browsers_order(synthetic):
    report = build_report(synthetic.directory, samples=7)
    page = Page(report.html)
    best = {s: max(p for (sample, _), p in synthetic.probs.items() if sample == s and (s, _) in synthetic.types)
            for s in synthetic.names}
    expected = sorted(best, key=lambda s: (-best[s], s))[:7]  # the browser's default: highest probability first
    assert page.sample_ids() == report.sample_ids == expected
    assert report.matching == 30
    assert "7 samples of 30 matching" in report.html
    assert Page(build_report(synthetic.directory, samples=100).html).sample_ids() == sorted(best, key=lambda s: (-best[s], s))


def test_each_card_shows_its_image_labels_flags_probabilities_and_every_explainers_map(synthetic):
    page_html = build_report(synthetic.directory, samples=3).html
    for card in re.findall(r'<article class="sample-card card" data-sample="(\d+)">(.*?)</article>', page_html, re.S):
        sample, body = int(card[0]), card[1]
        part = Page(body)
        image = decoded(part.all("img", class_="sample-image")[0]["src"])
        assert np.array_equal(np.asarray(image.convert("RGB")), synthetic.images[sample])  # small images stay exact
        labels = part.all("div", class_="report-label")
        explained = {label: kind for (s, label), kind in synthetic.types.items() if s == sample}
        assert {int(a["data-label"]): a["data-type"] for a in labels} == explained
        for a in labels:
            assert float(a["data-prob"]) == pytest.approx(synthetic.probs[(sample, int(a["data-label"]))])
        rows = part.all("div", class_="map-row")
        assert 1 <= len(rows) <= 3 and {int(r["data-label"]) for r in rows} <= set(explained)
        tiles = part.all("img", class_="map")
        assert len(tiles) == 2 * len(rows)
        assert [t["alt"].split(" map of ")[0] for t in tiles[:2]] == ["Gradient", "GradCAM"]
        for tile in tiles:
            assert decoded(tile["src"]).format == "PNG" and decoded(tile["src"]).size == (24, 24)
        for name in {CLASSES[label] for label in explained}:
            assert escape(name) in body and ("<" not in name or name not in body)  # names from a dataset: as typed


@pytest.mark.parametrize("which", ["synthetic", "real"])
def test_the_evaluation_table_shows_the_stores_aggregates(which, request):
    directory = request.getfixturevalue(which)
    directory = directory.directory if which == "synthetic" else directory
    report = build_report(directory, samples=1)
    shown: dict[str, list] = {}  # metric -> its cells, one per explainer row
    for attributes, text in Page(report.html).cells:
        if "data-metric" in attributes:
            shown.setdefault(attributes["data-metric"], []).append((attributes, text))
    with Summary.open(directory) as summary:
        aggregates = summary.aggregates()
        explainers = [e.name for e in summary.explainers()]
    assert aggregates and sorted(shown) == sorted({a.metric for a in aggregates})
    for aggregate in aggregates:
        row = explainers.index(aggregate.explainer)
        attributes, text = shown[aggregate.metric][row]
        assert attributes["data-count"] == str(aggregate.count)
        if aggregate.value is None:
            assert text == "–"
        else:
            assert float(attributes["data-value"]) == aggregate.value
            assert text == f"{aggregate.value:.3f}"


def test_filters_select_what_the_browser_selects(synthetic):
    circle, square = CLASSES.index("circle"), CLASSES.index("square")

    def expected(label, kind):
        probs = {s: p for (s, lab), p in synthetic.probs.items() if lab == label and synthetic.types.get((s, lab)) == kind}
        return sorted(probs, key=lambda s: (-probs[s], s))

    false_circles = expected(circle, "FP")
    assert false_circles, "the synthetic run has false positives of circle"
    report = build_report(synthetic.directory, filters=["types=FP&labels=circle"])
    assert report.sample_ids == false_circles and report.matching == len(false_circles)
    # a pasted browser link, names or indices, and view-only parameters
    link = f"http://localhost:8080/s/shapes-0123456789?labels={square}&types=TP&offset=20&zoom=3&rl=1:2"
    assert build_report(synthetic.directory, filters=[link]).sample_ids == expected(square, "TP")[:24]
    by_truth = build_report(synthetic.directory, filters=["truth=square", "sort=id"]).sample_ids
    assert by_truth == sorted(s for s in synthetic.names if s % len(CLASSES) == square)
    # the first row of maps is the label the browser opens the row with: the filtered one
    page_html = build_report(synthetic.directory, filters=["types=FP&labels=circle"]).html
    first_rows = re.findall(r'<div class="map-rows">\s*<div class="map-row" data-label="(\d+)"', page_html)
    assert first_rows == [str(circle)] * len(false_circles)


def test_explainers_and_drawing_options_choose_the_maps(synthetic):
    page = Page(build_report(synthetic.directory, samples=2, explainers=["GradCAM"],
                             filters=["overlay=0&cmap=viridis"]).html)
    assert {a["data-explainer"] for a in page.all("figure", class_="tile")} == {"GradCAM"}
    assert [a["data-explainer"] for a in page.all("tr") if "data-explainer" in a] == ["GradCAM"]
    tile = np.asarray(decoded(page.all("img", class_="map")[0]["src"]).convert("RGB"))
    viridis_ends = {(68, 1, 84), (253, 231, 37)}
    assert any(tuple(pixel) in viridis_ends for pixel in tile.reshape(-1, 3))  # a heatmap, not an overlay


@pytest.mark.parametrize("filters, explainers, message", [
    (["types=XX"], None, "unknown prediction type 'XX'"),
    (["labels=unicorn"], None, "unknown label 'unicorn'"),
    (["lables=1"], None, "unknown filter 'lables'"),
    (["sort=colour"], None, "unknown sort key"),
    ([], ["Occlusion"], "unknown explainer 'Occlusion'"),
    (["alpha=2"], None, "alpha must be between 0 and 1"),
])
def test_a_bad_filter_says_what_is_wrong(synthetic, filters, explainers, message):
    with pytest.raises(ExportError, match=re.escape(message)):
        build_report(synthetic.directory, filters=filters, explainers=explainers)


def test_photos_get_small_lossy_tiles(photos):
    report = build_report(photos, size=160)
    page = Page(report.html)
    for image in page.all("img", class_="sample-image") + page.all("img", class_="map"):
        picture = decoded(image["src"])
        assert picture.format == "WEBP" and max(picture.size) == 160
    assert len(report.sample_ids) == 3 and report.bytes_per_sample < 30_000


def test_nothing_in_the_file_points_outside_it(synthetic):
    report = build_report(synthetic.directory, samples=4)
    bundle = plotly_js_path().read_text(encoding="utf-8")
    assert report.html.count(bundle) == 1 and report.plotly_bytes == len(bundle.encode())
    rest = report.html.replace(bundle, "")
    assert not re.search(r"(?i)\b(?:https?|ftp|wss?):", rest)
    assert not re.search(r"(?i)(?:src|href|action|srcset)\s*=\s*[\"']?\s*//", rest)
    assert not re.search(r"(?i)url\(\s*['\"]?(?!data:)", rest) and "@import" not in rest
    page = Page(report.html)
    for tag, attributes in page.tags:
        for name in ("src", "href"):
            if name in attributes:
                assert attributes[name].startswith("data:"), (tag, attributes[name][:60])
    policy = page.all("meta", http_equiv="Content-Security-Policy")[0]["content"]
    assert "default-src 'none'" in policy and "connect-src" not in policy and "'unsafe-eval'" not in policy
    assert policy.count("'sha256-") == 2  # plotly.js and the lines that draw the charts, nothing else


def test_a_script_that_writes_a_closing_tag_cannot_end_its_element(synthetic, monkeypatch, tmp_path):
    from xaiboard.server import export

    hostile = tmp_path / "plotly.min.js"
    hostile.write_text('window.Plotly = {}; var s = "</script><img src=x>"; var t = "</SCRIPT >";')
    monkeypatch.setattr(export, "plotly_js_path", lambda: hostile)
    page = Page(build_report(synthetic.directory, samples=1).html)
    assert not any(tag == "img" and attributes.get("src") == "x" for tag, attributes in page.tags)
    assert [tag for tag, _ in page.tags].count("script") == 3, "the figures' data, plotly.js, the drawing lines"


def test_the_command_writes_the_file_and_says_how_big_it_is(real, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["export", str(real), "--html", str(out), "--samples", "2",
                                       "--explainers", "GradCAM"])
    assert result.exit_code == 0, result.output
    assert len(Page(out.read_text("utf-8")).sample_ids()) == 2
    megabytes = float(re.search(r": ([\d.]+) MB, 2 samples \(of 6 matching\), [\d.]+ KB per sample", result.output)[1])
    assert math.isclose(megabytes, out.stat().st_size / 1e6, abs_tol=0.05)
    bad = CliRunner().invoke(main, ["export", str(real), "--html", str(out), "--filter", "types=XX"])
    assert bad.exit_code != 0 and "unknown prediction type 'XX'" in bad.output


def test_a_running_summary_exports_what_it_has(tmp_path):
    written, writer = write_summary(tmp_path / "live", 5, ["Gradient"], uncertainty=False, seed=3, close=False,
                                    total=20)
    try:
        report = write_report(written.directory, tmp_path / "live.html", samples=24)
    finally:
        writer.close("interrupted")
    assert len(report.sample_ids) == 5 and 'status-running' in report.html and "5 of 20 done" in report.html


# -- in Chromium ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    browser_tests = pytest.importorskip("test_browser", reason="playwright or chromium is missing")
    with browser_tests.chromium_context(1360, 900) as context:
        yield browser_tests, context


@pytest.mark.browser
@pytest.mark.parametrize("which", ["synthetic", "real"])
def test_chromium_opens_the_file_offline_with_images_and_charts(which, request, chromium, tmp_path):
    browser_tests, context = chromium
    directory = request.getfixturevalue(which)
    directory = directory.directory if which == "synthetic" else directory
    path = tmp_path / "report.html"
    report = write_report(directory, path, samples=6)
    page = browser_tests.new_page(context)
    url = path.as_uri()
    blocked = []

    def only_the_file(route):
        if route.request.url == url:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_file)
    page.goto(url)
    charts = len(Page(report.html).all("div", class_="chart"))
    assert charts >= 3
    page.wait_for_function("n => document.querySelectorAll('[data-drawn]').length === n", arg=charts)
    assert page.locator(".js-plotly-plot svg.main-svg").count() >= charts
    images = page.evaluate("() => [...document.images].map((i) => [i.complete, i.naturalWidth])")
    assert len(images) == 6 + 1 + len(Page(report.html).all("img", class_="map"))  # samples, colour bar, maps
    assert all(complete and width > 0 for complete, width in images)
    assert page.locator("article.sample-card").count() == 6
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    outside = [u for u in page.requested if u != url and not u.startswith("data:")]
    assert outside == [] and blocked == []
    browser_tests.close_page(page)  # fails on any console error (a CSP violation is one)
