"""The JSON API, endpoint by endpoint and parameter by parameter, checked against what the store was given."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from test_server_registry import CLASSES, METRICS, OUTSIDE_NAME, tree_state, write_base_dir
from xaiboard.server import create_app
from xaiboard.server.security import HEADERS

N = 40


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    data = write_base_dir(tmp_path_factory.mktemp("base"), tmp_path_factory.mktemp("outside"), n=N)
    (data.outside / "sentinel.txt").write_text("TOP-SECRET-SENTINEL")
    before = tree_state(data.root)
    yield data
    data.live_writer.close("interrupted")
    after = tree_state(data.root)
    # The server never writes into BASE_DIR (the live run's own files changed because its writer closed).
    assert {k: v for k, v in after.items() if not k.startswith("live")} == \
        {k: v for k, v in before.items() if not k.startswith("live")}


@pytest.fixture(scope="module")
def app(base):
    app = create_app(base.root, reload_interval=0)
    yield app
    app.extensions["xaiboard.registry"].close()


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def a(base):
    return base.ids["shapes/run-a"]


def get_json(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.data[:300])
    assert response.mimetype == "application/json"
    return response.get_json()


def expected_ids(written, labels=(), types=()):
    return {s for (s, label), kind in written.types.items()
            if (not labels or label in labels) and (not types or kind in types)}


def matching_max(written, values, sample, labels=(), types=()):
    found = [values[(sample, label)] for (s, label), kind in written.types.items()
             if s == sample and (not labels or label in labels) and (not types or kind in types)
             and (sample, label) in values]
    return max(found) if found else None


def png(response) -> np.ndarray:
    assert response.status_code == 200 and response.mimetype == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.data)).convert("RGB"))


# -- summaries ---------------------------------------------------------------------------------------------------


def test_list_summaries(client, base):
    data = get_json(client, "/api/v1/summaries")
    assert data["total"] == 4
    rows = {row["path"]: row for row in data["summaries"]}
    assert list(rows) == ["broken", "live", "shapes/run-a", "shapes/run-b"]
    run_a = rows["shapes/run-a"]
    assert set(run_a) >= {"id", "name", "path", "status", "progress", "created_at", "updated_at", "num_samples",
                          "explainers", "metrics", "error"}
    assert (run_a["id"], run_a["name"], run_a["status"], run_a["num_samples"]) == (base.ids["shapes/run-a"], "run-a",
                                                                                  "complete", N)
    assert run_a["progress"] == {"done": N, "total": N} and run_a["error"] is None
    assert run_a["explainers"] == ["Gradient", "GradCAM"] and run_a["metrics"] == [m[0] for m in METRICS]
    assert run_a["created_at"].endswith("Z")
    assert rows["live"]["status"] == "running" and rows["live"]["progress"] == {"done": 3, "total": 10}
    assert rows["broken"]["status"] == "error" and "not a database" in rows["broken"]["error"]
    assert all(OUTSIDE_NAME not in json.dumps(row) and "secret" not in json.dumps(row) for row in data["summaries"])  # the symlink out is not listed


def test_list_query_offset_limit(client):
    assert [r["path"] for r in get_json(client, "/api/v1/summaries?q=RUN-")["summaries"]] == ["shapes/run-a",
                                                                                               "shapes/run-b"]
    assert get_json(client, "/api/v1/summaries?q=shapes/run-b")["total"] == 1
    assert get_json(client, "/api/v1/summaries?q=nothing-like-this") == {"total": 0, "summaries": [],
                                                                          "scanned_at": pytest.approx(0, abs=1e12)}
    page = get_json(client, "/api/v1/summaries?offset=1&limit=2")
    assert page["total"] == 4 and [r["path"] for r in page["summaries"]] == ["live", "shapes/run-a"]
    assert len(get_json(client, "/api/v1/summaries?limit=100000")["summaries"]) == 4
    for bad in ("offset=-1", "offset=abc", "limit=-2", "limit=1.5", "limit=%C2%B2"):
        assert "error" in get_json(client, f"/api/v1/summaries?{bad}", 400)


def test_summary_detail(client, base, a):
    detail = get_json(client, f"/api/v1/summaries/{a}")
    assert (detail["threshold"], detail["top_k"], detail["task"]) == (0.5, 2, "single-label")
    assert detail["uncertainty"] == {"method": "mc-dropout", "samples": 10}
    assert detail["config"] == {"batch_size": 8, "seed": 1}
    assert detail["model"] == {"class": "TinyNet", "num_parameters": 4242, "device": "cpu"}
    expected = defaultdict(lambda: {"TP": 0, "FN": 0, "FP": 0, "TN": 0})
    for (_, label), kind in base.run_a.types.items():
        expected[label][kind] += 1
    assert [(l["index"], l["name"], l["counts"]) for l in detail["labels"]] == [
        (i, name, expected[i]) for i, name in enumerate(CLASSES)]
    assert [e["name"] for e in detail["explainers"]] == ["Gradient", "GradCAM"]
    assert detail["explainers"][0]["config"] == {"class": "Gradient", "steps": 8}
    assert [(m["name"], m["higher_is_better"], tuple(m["range"])) for m in detail["metrics"]] == [
        (name, higher, value_range) for name, higher, value_range, _ in METRICS]
    assert detail["failures"][0]["stage"] == "benchmark:MaxSensitivity" and "traceback" not in detail["failures"][0]
    assert get_json(client, f"/api/v1/summaries/{base.ids['shapes/run-b']}")["uncertainty"] is None


def test_detail_errors(client, base):
    assert "unknown summary" in get_json(client, "/api/v1/summaries/nope-0000000000", 404)["error"]
    error = get_json(client, f"/api/v1/summaries/{base.ids['broken']}", 409)["error"]
    assert "broken" in error and "not a database" in error
    for suffix in ("samples", "samples/0", "images/0", "saliency/0/0/Gradient", "scores", "figures/radar"):
        assert get_json(client, f"/api/v1/summaries/{base.ids['broken']}/{suffix}", 409)
        assert get_json(client, f"/api/v1/summaries/nope-0000000000/{suffix}", 404)


def test_running_summary_is_served_live(client, base):
    live = base.ids["live"]
    detail = get_json(client, f"/api/v1/summaries/{live}")
    assert detail["status"] == "running" and detail["progress"] == {"done": 3, "total": 10}
    assert get_json(client, f"/api/v1/summaries/{live}/samples")["total"] == 3


# -- samples -----------------------------------------------------------------------------------------------------


def test_samples_unfiltered_default_page(client, base, a):
    data = get_json(client, f"/api/v1/summaries/{a}/samples")
    assert data["total"] == N and len(data["samples"]) == 20
    assert [s["id"] for s in data["samples"]] == list(range(20))  # default sort: id
    sample = data["samples"][1]
    assert sample["name"] == base.run_a.names[1] and sample["image_url"].startswith(f"/api/v1/summaries/{a}/images/1")
    by_index = {label["index"]: label for label in sample["labels"]}
    assert set(by_index) == {l for (s, l) in base.run_a.types if s == 1}  # only explained labels
    for index, label in by_index.items():
        assert set(label) >= {"index", "name", "prob", "type", "sd", "interval", "saliency"}
        assert label["name"] == CLASSES[index] and label["type"] == base.run_a.types[(1, index)]
        assert label["prob"] == pytest.approx(base.run_a.probs[(1, index)])
        assert label["sd"] == pytest.approx(base.run_a.sd[(1, index)])
        lo, hi = label["interval"]
        assert lo <= label["prob"] <= hi
        assert [m["explainer"] for m in label["saliency"]] == ["Gradient", "GradCAM"]
        assert label["saliency"][1]["url"].startswith(f"/api/v1/summaries/{a}/saliency/1/{index}/GradCAM")


@pytest.mark.parametrize("labels,types", [((1,), ()), ((), ("FP",)), ((1,), ("FP",)), ((0, 3), ("FN", "TN")),
                                          ((2,), ("TP", "FN", "FP", "TN"))])
def test_samples_filters(client, base, a, labels, types):
    query = f"labels={','.join(map(str, labels))}&types={','.join(types)}&limit=200"
    data = get_json(client, f"/api/v1/summaries/{a}/samples?{query}")
    expected = expected_ids(base.run_a, labels, types)
    assert expected and data["total"] == len(expected)
    assert {s["id"] for s in data["samples"]} == expected


def test_label_filter_by_name_and_with_markup(client, base, a):
    by_name = get_json(client, f"/api/v1/summaries/{a}/samples?labels=square,%3Cb%3Ecross%3C/b%3E&limit=200")
    assert {s["id"] for s in by_name["samples"]} == expected_ids(base.run_a, (1, 3))


def test_ground_truth_filter_keeps_the_samples_of_that_class(client, base, a):
    truth = 2  # the class of every sample whose id is 2 modulo the classes
    wanted = {s for s in base.run_a.names if s % len(CLASSES) == truth}
    data = get_json(client, f"/api/v1/summaries/{a}/samples?truth={CLASSES[truth]}&limit=200")
    assert {s["id"] for s in data["samples"]} == wanted
    mistaken = get_json(client, f"/api/v1/summaries/{a}/samples?truth={truth}&labels=3&types=FP&limit=200")
    expected = {s for s in wanted if base.run_a.types.get((s, 3)) == "FP"}
    assert expected and {s["id"] for s in mistaken["samples"]} == expected and mistaken["total"] == len(expected)
    assert "in truth" in get_json(client, f"/api/v1/summaries/{a}/samples?truth=99", 400)["error"]


@pytest.mark.parametrize("sort", ["prob", "-prob", "uncertainty", "-uncertainty", "score:GradCAM:InsertionAUC",
                                  "-score:Gradient:DeletionAUC"])
def test_samples_sorted_within_filter(client, base, a, sort):
    labels, types = (1, 2), ("TP", "FP", "TN")
    data = get_json(client, f"/api/v1/summaries/{a}/samples?labels=1,2&types=TP,FP,TN&sort={sort}&limit=200")
    descending, key = sort.startswith("-"), sort.lstrip("-")
    if key == "prob":
        values = base.run_a.probs
    elif key == "uncertainty":
        values = base.run_a.sd
    else:
        _, explainer, metric = key.split(":")
        values = {(s, l): v for (e, m, s, l), v in base.run_a.scores.items() if (e, m) == (explainer, metric)}
    ids = sorted(expected_ids(base.run_a, labels, types))
    keyed = [(matching_max(base.run_a, values, s, labels, types), s) for s in ids]
    present = sorted([k for k in keyed if k[0] is not None], key=lambda k: ((-k[0] if descending else k[0]), k[1]))
    expected = [s for _, s in present] + [s for v, s in keyed if v is None]
    assert [s["id"] for s in data["samples"]] == expected


def test_samples_sort_by_name_and_pagination(client, base, a):
    everything = get_json(client, f"/api/v1/summaries/{a}/samples?sort=-name&limit=200")["samples"]
    assert [s["name"] for s in everything] == sorted(base.run_a.names.values(), reverse=True)
    pages = [get_json(client, f"/api/v1/summaries/{a}/samples?sort=-name&offset={o}&limit=7")
             for o in range(0, N + 7, 7)]
    assert [s["id"] for p in pages for s in p["samples"]] == [s["id"] for s in everything]
    assert all(p["total"] == N for p in pages) and pages[-1]["samples"] == []
    assert get_json(client, f"/api/v1/summaries/{a}/samples?limit=100000")["limit"] == 200


def test_pages_reuse_the_json_of_samples_already_sent(client, app, a):
    cache = app.extensions["xaiboard.json_cache"]
    url = f"/api/v1/summaries/{a}/samples?labels=2&sort=-prob&limit=7"
    first = client.get(url)
    hits = cache.hits
    second = client.get(url)
    assert second.data == first.data and cache.hits == hits + 7
    resorted = get_json(client, f"/api/v1/summaries/{a}/samples?labels=2&sort=prob&limit=200")
    by_id = {sample["id"]: sample for sample in resorted["samples"]}
    assert all(by_id[sample["id"]] == sample for sample in first.get_json()["samples"])


def test_samples_explainer_selection(client, a):
    data = get_json(client, f"/api/v1/summaries/{a}/samples?explainers=GradCAM&limit=5")
    maps = [m["explainer"] for s in data["samples"] for l in s["labels"] for m in l["saliency"]]
    assert maps and set(maps) == {"GradCAM"}
    data = get_json(client, f"/api/v1/summaries/{a}/samples?explainers=GradCAM,Gradient&limit=1")
    assert [m["explainer"] for m in data["samples"][0]["labels"][0]["saliency"]] == ["GradCAM", "Gradient"]


@pytest.mark.parametrize("query,word", [
    ("labels=99", "label"), ("labels=-1", "label"), ("labels=nope", "label"), ("types=XX", "type"),
    ("types=tp", "type"), ("explainers=Nope", "explainer"), ("sort=bogus", "sort"), ("sort=score:Nope:InsertionAUC",
                                                                                     "explainer"),
    ("sort=score:Gradient:Nope", "metric"), ("sort=score:Gradient", "sort"), ("offset=-1", "offset"),
    ("offset=abc", "offset"), ("limit=-5", "limit"), ("limit=x", "limit"), ("limit=1e3", "limit"),
])
def test_samples_bad_parameters(client, a, query, word):
    assert word in get_json(client, f"/api/v1/summaries/{a}/samples?{query}", 400)["error"]


def test_one_sample_has_every_label_and_box(client, base, a):
    sample = get_json(client, f"/api/v1/summaries/{a}/samples/2")
    assert sorted(l["index"] for l in sample["labels"]) == list(range(len(CLASSES)))
    unexplained = [l for l in sample["labels"] if l["type"] is None]
    assert unexplained and all(l["saliency"] == [] for l in unexplained)
    truth = [l["index"] for l in sample["labels"] if l["ground_truth"]]
    assert truth == [2 % len(CLASSES)] and sample["boxes"][0]["label_index"] == truth[0]
    only = get_json(client, f"/api/v1/summaries/{a}/samples/2?explainers=Gradient")
    assert {m["explainer"] for l in only["labels"] for m in l["saliency"]} == {"Gradient"}
    assert "explainer" in get_json(client, f"/api/v1/summaries/{a}/samples/2?explainers=Nope", 400)["error"]
    assert "unknown sample" in get_json(client, f"/api/v1/summaries/{a}/samples/{N + 5}", 404)["error"]
    get_json(client, f"/api/v1/summaries/{a}/samples/{10**30}", 404)
    get_json(client, f"/api/v1/summaries/{a}/samples/-1", 404)
    get_json(client, f"/api/v1/summaries/{a}/samples/abc", 404)


# -- images and maps ---------------------------------------------------------------------------------------------


def test_image_is_the_written_image(client, base, a):
    url = get_json(client, f"/api/v1/summaries/{a}/samples?limit=1")["samples"][0]["image_url"]
    response = client.get(url)
    assert np.array_equal(png(response), base.run_a.images[0])
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable" and response.headers["ETag"]
    assert client.get(url, headers={"If-None-Match": response.headers["ETag"]}).status_code == 304
    bigger = client.get(url + "&size=96")  # never enlarged on the server: the browser does it, crisply
    assert np.array_equal(png(bigger), base.run_a.images[0]) and len(bigger.data) == len(response.data)
    assert client.get(f"/api/v1/summaries/{a}/images/0").headers["Cache-Control"] == "no-cache"
    assert "size" in get_json(client, f"/api/v1/summaries/{a}/images/0?size=4", 400)["error"]
    assert "size" in get_json(client, f"/api/v1/summaries/{a}/images/0?size=big", 400)["error"]
    get_json(client, f"/api/v1/summaries/{a}/images/{N}", 404)


def test_saliency_heatmap_follows_the_stored_map(client, base, a):
    (sample, label), _ = next(iter(base.run_a.types.items()))
    relevance = base.run_a.maps[(sample, label, "GradCAM")]
    url = f"/api/v1/summaries/{a}/saliency/{sample}/{label}/GradCAM"
    gray = png(client.get(url + "?cmap=gray&sign=absolute"))[:, :, 0].astype(float)
    expected = np.abs(relevance) / np.abs(relevance).max() * 255
    assert gray.shape == relevance.shape and np.abs(gray - expected).max() <= 1.5
    positive = png(client.get(url + "?cmap=gray&sign=positive"))[:, :, 0].astype(float)
    assert np.abs(positive - np.clip(relevance, 0, None) / relevance.max() * 255).max() <= 1.5
    negative = png(client.get(url + "?cmap=gray&sign=negative"))[:, :, 0]
    assert negative[relevance > 0].max() == 0 and negative.max() == 255
    signed = png(client.get(url + "?cmap=gray&sign=all"))[:, :, 0].astype(float)
    assert np.abs(signed - (0.5 + 0.5 * relevance / np.abs(relevance).max()) * 255).max() <= 1.5
    image = base.run_a.images[sample].astype(float)
    assert np.abs(png(client.get(url + "?overlay=1&alpha=0")) - image).max() <= 0.5
    heat = png(client.get(url + "?overlay=0&cmap=jet")).astype(float)
    half = png(client.get(url + "?overlay=1&alpha=0.5&cmap=jet")).astype(float)
    assert np.abs(half - (image + heat) / 2).max() <= 1.0
    assert png(client.get(url + "?overlay=1&size=240")).shape == image.shape  # at most the native size
    assert png(client.get(url + "?overlay=1&size=8")).shape == (8, 8, 3)
    assert not np.array_equal(png(client.get(url + "?cmap=viridis")), png(client.get(url + "?cmap=inferno")))


def test_saliency_cache_and_etag(client, app, a):
    cache = app.extensions["xaiboard.png_cache"]
    url = f"/api/v1/summaries/{a}/saliency/0/0/Gradient?overlay=1&alpha=0.3&cmap=magma"
    first = client.get(url)
    hits = cache.hits
    second = client.get(url)
    assert second.data == first.data and cache.hits == hits + 1
    assert client.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    other = client.get(url.replace("alpha=0.3", "alpha=0.4"))
    assert other.headers["ETag"] != first.headers["ETag"]


@pytest.mark.parametrize("query,word", [("alpha=2", "alpha"), ("alpha=nan", "alpha"), ("alpha=x", "alpha"),
                                        ("cmap=rainbow", "cmap"), ("sign=both", "sign"), ("overlay=maybe", "overlay"),
                                        ("size=2", "size"), ("size=99999", "size"), ("size=-4", "size")])
def test_saliency_bad_parameters(client, a, query, word):
    assert word in get_json(client, f"/api/v1/summaries/{a}/saliency/0/0/Gradient?{query}", 400)["error"]


def test_saliency_not_found(client, base, a):
    unexplained = next(l for l in range(len(CLASSES)) if (0, l) not in base.run_a.types)
    for path in (f"0/{unexplained}/Gradient", "0/0/Nope", f"{N}/0/Gradient", "0/99/Gradient", f"0/0/{'x' * 300}",
                 f"{10**25}/0/Gradient", f"0/{10**25}/Gradient"):
        assert "error" in get_json(client, f"/api/v1/summaries/{a}/saliency/{path}", 404)


def test_colormap_bars(client):
    for name in ("inferno", "viridis", "magma", "jet", "gray", "RdBu"):
        bar = png(client.get(f"/api/v1/colormaps/{name}"))
        assert bar.shape[1] == 256 and not np.array_equal(bar[0, 0], bar[0, -1])
    get_json(client, "/api/v1/colormaps/nope", 404)


# -- scores, figures, comparison ---------------------------------------------------------------------------------


def test_scores_match_the_written_values(client, base, a):
    data = get_json(client, f"/api/v1/summaries/{a}/scores")
    assert data["explainers"] == ["Gradient", "GradCAM"]
    rows = {(r["explainer"], r["metric"]): r for r in data["scores"]}
    assert len(rows) == 8
    for (explainer, metric), row in rows.items():
        written = {(s, l): v for (e, m, s, l), v in base.run_a.scores.items() if (e, m) == (explainer, metric)}
        per_class = defaultdict(list)
        for (_, label), value in written.items():
            per_class[label].append(value)
        means = {label: np.mean(v) for label, v in per_class.items()}
        overall = np.mean(list(means.values())) if metric == "PointingGame" else np.mean(list(written.values()))
        assert row["value"] == pytest.approx(overall) and row["count"] == len(written)
        assert {c["index"]: c["value"] for c in row["per_class"]} == pytest.approx(means)
        assert sum(row["distribution"]["counts"]) == len(written)
        assert len(row["distribution"]["edges"]) == len(row["distribution"]["counts"]) + 1
    # normalised: within the declared range, inverted for lower-is-better, open ranges use the explainers' spread
    assert rows[("Gradient", "InsertionAUC")]["normalized"] == pytest.approx(rows[("Gradient", "InsertionAUC")]["value"])
    assert rows[("GradCAM", "DeletionAUC")]["normalized"] == pytest.approx(1 - rows[("GradCAM", "DeletionAUC")]["value"])
    sensitivity = sorted(rows[(e, "MaxSensitivity")]["value"] for e in data["explainers"])
    low = min(rows[(e, "MaxSensitivity")]["normalized"] for e in data["explainers"])
    assert low == pytest.approx(1 - sensitivity[1] / sensitivity[1])  # range (0, None): the worst sits at 0
    for explainer, value in data["comprehensive"].items():
        normalised = [rows[(explainer, m[0])]["normalized"] for m in METRICS]
        assert value == pytest.approx(np.mean(normalised))
    assert [t["explainer"] for t in data["timings"]] == ["Gradient", "GradCAM"]
    assert data["timings"][1]["seconds"] == pytest.approx(0.02)
    benchmarks = {(t["explainer"], t["metric"]): t for t in data["score_timings"]}
    assert set(benchmarks) == {(e, m[0]) for e in data["explainers"] for m in METRICS}
    pairs = sum(1 for (s, l) in base.run_a.types)
    assert benchmarks[("GradCAM", "PointingGame")]["mean_seconds"] == pytest.approx(0.002)
    assert benchmarks[("GradCAM", "PointingGame")]["total_seconds"] == pytest.approx(0.002 * pairs)
    assert benchmarks[("GradCAM", "PointingGame")]["count"] == pairs


def test_scores_csv_and_weights(client, a):
    table = get_json(client, f"/api/v1/summaries/{a}/scores")
    rows = {(r["explainer"], r["metric"]): r for r in table["scores"]}
    response = client.get(f"/api/v1/summaries/{a}/scores?format=csv&weights=InsertionAUC:1,DeletionAUC:3")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="run-a-scores.csv"' in response.headers["Content-Disposition"]
    lines = list(csv.reader(io.StringIO(response.data.decode())))
    assert lines[0] == ["explainer", "InsertionAUC", "DeletionAUC", "PointingGame", "MaxSensitivity", "comprehensive"]
    for line in lines[1:]:
        explainer = line[0]
        assert float(line[1]) == pytest.approx(rows[(explainer, "InsertionAUC")]["value"])
        weighted = (rows[(explainer, "InsertionAUC")]["normalized"] + 3 * rows[(explainer, "DeletionAUC")]["normalized"]) / 4
        assert float(line[-1]) == pytest.approx(weighted)
    weighted = get_json(client, f"/api/v1/summaries/{a}/scores?weights=PointingGame:2")
    assert weighted["comprehensive"]["Gradient"] == pytest.approx(rows[("Gradient", "PointingGame")]["normalized"])
    download = client.get(f"/api/v1/summaries/{a}/scores?download=1")
    assert 'filename="run-a-scores.json"' in download.headers["Content-Disposition"]
    for bad in ("format=xml", "weights=Nope:1", "weights=InsertionAUC:-1", "weights=InsertionAUC:x",
                "weights=InsertionAUC", "weights=InsertionAUC:inf"):
        assert "error" in get_json(client, f"/api/v1/summaries/{a}/scores?{bad}", 400)


@pytest.mark.parametrize("name,query", [("per-class-explainer", "explainer=GradCAM"), ("per-class-metric", "metric=PointingGame"),
                                        ("radar", ""), ("distributions", "metric=DeletionAUC"), ("timings", ""),
                                        ("per-class-explainer", ""), ("distributions", "")])
def test_figures(client, a, name, query):
    figure = get_json(client, f"/api/v1/summaries/{a}/figures/{name}?{query}")
    assert figure["data"] and figure["layout"]["title"]["text"]
    if name == "timings":  # the map, then each benchmark, per explainer
        assert [trace["name"] for trace in figure["data"]] == ["explaining", *(m[0] for m in METRICS)]
        assert figure["data"][0]["y"] == pytest.approx([10.0, 20.0]) and figure["data"][1]["y"] == pytest.approx([1, 2])
    if name.startswith("per-class"):
        escaped = [c.replace("<", "&lt;").replace(">", "&gt;") for c in CLASSES]
        assert sorted(figure["data"][0]["y"]) == sorted(escaped) and figure["data"][0]["orientation"] == "h"
        assert figure["meta"]["total"] == len(CLASSES)
        assert len(figure["data"]) == (4 if name == "per-class-explainer" else 2)


def test_figure_errors(client, a):
    assert "figure" in get_json(client, f"/api/v1/summaries/{a}/figures/pie", 404)["error"]
    assert "metric" in get_json(client, f"/api/v1/summaries/{a}/figures/per-class-metric?metric=Nope", 400)["error"]
    assert "explainer" in get_json(client, f"/api/v1/summaries/{a}/figures/per-class-explainer?explainer=Nope",
                                   400)["error"]


def test_shared_samples_match_by_unique_name():
    from xaiboard.server.comparison import shared_samples as _shared_samples

    runs = [{0: "a.png", 1: "b.png", 2: "c.png", 3: "dup.png", 4: "dup.png"},
            {0: "c.png", 1: "a.png", 2: "dup.png", 3: "x.png"}]
    assert _shared_samples(runs) == [{"name": "a.png", "ids": [0, 1]}, {"name": "c.png", "ids": [2, 0]}]
    assert _shared_samples([runs[0], {}]) == []


def test_compare(client, base):
    a, b = base.ids["shapes/run-a"], base.ids["shapes/run-b"]
    data = get_json(client, f"/api/v1/compare?ids={a},{b}")
    assert [s["id"] for s in data["summaries"]] == [a, b]
    assert data["explainers"] == ["Gradient", "GradCAM", "IntegratedGradients"]
    rows = {(r["explainer"], r["metric"]): r["values"] for r in data["table"]}
    single_a = {(r["explainer"], r["metric"]): r["value"] for r in get_json(client, f"/api/v1/summaries/{a}/scores")["scores"]}
    single_b = {(r["explainer"], r["metric"]): r["value"] for r in get_json(client, f"/api/v1/summaries/{b}/scores")["scores"]}
    assert rows[("Gradient", "InsertionAUC")] == pytest.approx([single_a[("Gradient", "InsertionAUC")],
                                                                single_b[("Gradient", "InsertionAUC")]])
    assert rows[("GradCAM", "PointingGame")][1] is None and rows[("IntegratedGradients", "DeletionAUC")][0] is None
    assert data["shared_samples"]["total"] == N
    assert data["shared_samples"]["samples"][3] == {"name": base.run_a.names[3], "ids": [3, 3]}
    with_live = get_json(client, f"/api/v1/compare?ids={a},{base.ids['live']}")
    assert with_live["shared_samples"]["total"] == 3
    assert "ids" in get_json(client, "/api/v1/compare", 400)["error"]
    assert "ids" in get_json(client, "/api/v1/compare?ids=,,", 400)["error"]
    assert "at most" in get_json(client, "/api/v1/compare?ids=" + ",".join(f"x{i}" for i in range(9)), 400)["error"]
    get_json(client, f"/api/v1/compare?ids={a},nope", 404)
    get_json(client, f"/api/v1/compare?ids={a},{base.ids['broken']}", 409)


# -- safety ------------------------------------------------------------------------------------------------------


def every_url(base):
    a = base.ids["shapes/run-a"]
    return ["/", f"/s/{a}", f"/s/{a}/scores", "/compare", "/api/v1", "/api/v1/summaries", f"/api/v1/summaries/{a}",
            f"/api/v1/summaries/{a}/samples", f"/api/v1/summaries/{a}/samples/0", f"/api/v1/summaries/{a}/images/0",
            f"/api/v1/summaries/{a}/saliency/0/0/Gradient", f"/api/v1/summaries/{a}/scores",
            f"/api/v1/summaries/{a}/figures/radar", f"/api/v1/compare?ids={a}", "/api/v1/colormaps/gray",
            "/static/css/app.css", "/static/js/util.js", "/vendor/plotly.min.js", "/nope", "/api/v1/nope",
            f"/api/v1/summaries/{a}/samples?labels=99", "/s/nope"]


def test_security_headers_on_every_response(client, base):
    for url in every_url(base):
        response = client.get(url)
        assert response.status_code < 500, url
        for name, value in HEADERS.items():
            assert response.headers.get(name) == value, (url, name)
        policy = response.headers["Content-Security-Policy"]
        script = next(part for part in policy.split(";") if part.strip().startswith("script-src"))
        assert "unsafe" not in script and "'self'" in script
    response = client.get(f"/api/v1/summaries/{base.ids['shapes/run-a']}/images/0",
                          headers={"If-None-Match": client.get(f"/api/v1/summaries/{base.ids['shapes/run-a']}/images/0").headers["ETag"]})
    assert response.status_code == 304 and response.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_have_no_inline_script_or_event_handlers(client, base):
    from html.parser import HTMLParser

    class Scripts(HTMLParser):
        def __init__(self):
            super().__init__()
            self.inline, self.handlers = [], []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "script" and "src" not in attrs:
                self.inline.append(attrs)
            self.handlers += [name for name in attrs if name.startswith("on")]

    for url in every_url(base)[:4]:
        parser = Scripts()
        parser.feed(client.get(url).data.decode())
        assert parser.inline == [] and parser.handlers == [], url


def test_methods_and_unknown_routes_answer_json(client, base):
    response = client.post("/api/v1/summaries")
    assert response.status_code == 405 and "GET" in response.headers["Allow"] and "error" in response.get_json()
    assert client.delete(f"/api/v1/summaries/{base.ids['shapes/run-a']}").status_code == 405
    page = client.get("/s/does-not-exist")
    assert page.status_code == 404 and page.mimetype == "text/html" and b"does-not-exist" in page.data
    broken = client.get(f"/s/{base.ids['broken']}/scores")
    assert broken.status_code == 409 and b"not a database" in broken.data


TRAVERSALS = ["..", "%2e%2e", "..%2f..%2f", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%5c..%5c", "..\\..\\",
              "%2Fetc%2Fpasswd", "/etc/passwd", "C:%5cWindows", "escape", "escape%2fxaiboard.db", "%00", "~",
              "....//....//"]


def test_path_traversal_never_leaves_the_base_dir(client, base):
    a = base.ids["shapes/run-a"]
    outside_ids = [base.ids.get("escape", ""), "escape", "secret-run"]
    from xaiboard.server.registry import summary_id
    outside_ids += [summary_id("escape"), summary_id("../outside/secret-run"), summary_id(str(base.outside))]
    templates = ["/api/v1/summaries/{x}", "/api/v1/summaries/{x}/samples", "/api/v1/summaries/{x}/samples/0",
                 "/api/v1/summaries/{x}/images/0", "/api/v1/summaries/{x}/saliency/0/0/Gradient",
                 "/api/v1/summaries/{x}/scores", "/api/v1/summaries/{x}/figures/radar", "/api/v1/compare?ids={x}",
                 f"/api/v1/summaries/{a}/samples/{{x}}", f"/api/v1/summaries/{a}/images/{{x}}",
                 f"/api/v1/summaries/{a}/saliency/{{x}}/0/Gradient", f"/api/v1/summaries/{a}/saliency/0/{{x}}/Gradient",
                 f"/api/v1/summaries/{a}/saliency/0/0/{{x}}", f"/api/v1/summaries/{a}/figures/{{x}}",
                 "/api/v1/colormaps/{x}", "/s/{x}", "/s/{x}/scores", "/static/{x}", "/vendor/{x}"]
    for template in templates:
        for payload in TRAVERSALS + outside_ids:
            for variant in (payload, payload + "/xaiboard.db", payload + "/../sentinel.txt"):
                url = template.format(x=variant)
                response = client.get(url)
                body = response.data
                assert response.status_code in (400, 404, 405, 308, 409), (url, response.status_code)
                assert b"TOP-SECRET-SENTINEL" not in body and OUTSIDE_NAME.encode() not in body, url
                assert b"Traceback" not in body


GARBAGE = ["", " ", "-1", "0", "1e309", "NaN", "inf", "-0", "%00", "%ff%fe", "\u00e9\u00df", "%F0%9F%92%A5",
           "'%3B DROP TABLE samples%3B--", "a" * 3000, "9" * 40, ",,,", ":::", "score:::", "-", "--prob",
           "%3Cscript%3Ealert(1)%3C%2Fscript%3E", "[]", "{}", "1,2,3,4,5,6,7,8,9,10,11,12"]


def test_garbage_in_every_parameter_is_never_a_500(client, base):
    a = base.ids["shapes/run-a"]
    endpoints = {
        "/api/v1/summaries": ["q", "offset", "limit"],
        f"/api/v1/summaries/{a}/samples": ["labels", "types", "explainers", "sort", "offset", "limit"],
        f"/api/v1/summaries/{a}/samples/0": ["explainers"],
        f"/api/v1/summaries/{a}/images/0": ["size", "v"],
        f"/api/v1/summaries/{a}/saliency/0/0/Gradient": ["overlay", "alpha", "cmap", "sign", "size", "v"],
        f"/api/v1/summaries/{a}/scores": ["format", "weights", "download"],
        f"/api/v1/summaries/{a}/figures/per-class-metric": ["metric"],
        f"/api/v1/summaries/{a}/figures/per-class-explainer": ["explainer"],
        "/api/v1/compare": ["ids"],
    }
    for url, names in endpoints.items():
        for name in names:
            for value in GARBAGE:
                response = client.get(f"{url}?{name}={value}")
                assert response.status_code < 500, (url, name, value, response.data[:200])
                if response.status_code >= 400:
                    assert "error" in response.get_json()
                    assert b"Traceback" not in response.data


def test_unexpected_errors_are_json_without_a_stack_trace(tmp_path, monkeypatch):
    app = create_app(tmp_path, reload_interval=0)

    def explode(*_args, **_kwargs):
        raise RuntimeError("secret internals /very/private/path")

    monkeypatch.setattr(app.extensions["xaiboard.registry"], "entries", explode)
    response = app.test_client().get("/api/v1/summaries")
    assert response.status_code == 500 and response.get_json() == {"error": "internal error (the server log has the details)"}
    assert b"private" not in response.data
    app.extensions["xaiboard.registry"].close()


def test_trusted_hosts_refuse_other_host_headers(base):
    app = create_app(base.root, reload_interval=0, trusted_hosts=["localhost", "127.0.0.1"])
    client = app.test_client()
    assert client.get("/api/v1/summaries", headers={"Host": "127.0.0.1:8080"}).status_code == 200
    assert client.get("/api/v1/summaries", headers={"Host": "localhost"}).status_code == 200
    refused = client.get("/api/v1/summaries", headers={"Host": "attacker.example:8080"})
    assert refused.status_code == 400 and "localhost" in refused.get_json()["error"]
    app.extensions["xaiboard.registry"].close()


def test_server_never_imports_torch_or_captum(base):
    code = (
        "import sys\n"
        "from xaiboard.server import create_app\n"
        "from xaiboard.server import serving, cli\n"
        f"app = create_app({str(base.root)!r}, reload_interval=0)\n"
        "client = app.test_client()\n"
        f"assert client.get('/api/v1/summaries/{base.ids['shapes/run-a']}/figures/radar').status_code == 200\n"
        f"assert client.get('/api/v1/summaries/{base.ids['shapes/run-a']}/saliency/0/0/Gradient?overlay=1').status_code == 200\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'captum', 'torchvision'))\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_live_run_grows_without_a_rescan(client, base):
    from xaiboard.store import Batch, PredictionRecord, SampleRecord

    live = base.ids["live"]
    assert get_json(client, "/api/v1/summaries?q=live")["summaries"][0]["progress"]["done"] == 3
    base.live_writer.write_batch(Batch(samples=[SampleRecord(7, "late.png", np.zeros((24, 24, 3), np.uint8), [0])],
                                       predictions=[PredictionRecord(7, 0, 0.9, True, "TP")]))
    assert get_json(client, "/api/v1/summaries?q=live")["summaries"][0]["progress"]["done"] == 4
    assert get_json(client, f"/api/v1/summaries/{live}")["num_samples"] == 4
    assert 7 in [s["id"] for s in get_json(client, f"/api/v1/summaries/{live}/samples?labels=0&types=TP")["samples"]]
    assert math.isclose(get_json(client, f"/api/v1/summaries/{live}/samples/7")["labels"][0]["prob"], 0.9)


def test_photo_summaries_serve_their_images_and_native_maps(tmp_path):
    """A 224 x 224 photo is stored and served as WebP/JPEG with its content type; a 7 x 7 map is drawn at 224."""
    from conftest import photo
    from xaiboard.store import Batch, PredictionRecord, ProbabilityRecord, SaliencyRecord, SampleRecord, SummaryWriter

    writer = SummaryWriter.create(tmp_path / "photos" / "run")
    writer.set_labels(["cat", "dog", "car"])
    writer.register_explainer("GradCAM")
    batch = Batch(samples=[SampleRecord(0, "cat.jpg", photo(224), [0])],
                  probabilities=[ProbabilityRecord(0, np.array([0.7, 0.2, 0.1]))],
                  predictions=[PredictionRecord(0, 0, 0.7, True, "TP")],
                  saliency=[SaliencyRecord(0, 0, "GradCAM", np.random.default_rng(0).random((7, 7)))])
    writer.write_batch(batch)
    writer.close("complete")
    app = create_app(tmp_path / "photos", reload_interval=0)
    client = app.test_client()
    (row,) = get_json(client, "/api/v1/summaries")["summaries"]
    sample = get_json(client, f"/api/v1/summaries/{row['id']}/samples/0")
    assert [(l["index"], l["prob"], l["type"]) for l in sample["labels"]] == [(0, 0.7, "TP"),
                                                                              (1, pytest.approx(0.2), None),
                                                                              (2, pytest.approx(0.1), None)]
    image = client.get(sample["image_url"])
    assert image.status_code == 200 and image.mimetype in ("image/webp", "image/jpeg")
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    assert np.asarray(Image.open(io.BytesIO(image.data)).convert("RGB")).shape == (224, 224, 3)
    small = client.get(sample["image_url"] + "&size=128")
    assert small.mimetype == image.mimetype and Image.open(io.BytesIO(small.data)).size == (128, 128)
    url = sample["labels"][0]["saliency"][0]["url"]
    for overlay in ("1", "0"):  # heatmaps too are drawn at the image size, and as WebP like the photo
        tile = client.get(url + "&overlay=" + overlay)
        assert tile.mimetype == "image/webp"
        assert np.asarray(Image.open(io.BytesIO(tile.data)).convert("RGB")).shape == (224, 224, 3)
        shown = client.get(url + "&overlay=" + overlay + "&size=128")
        assert Image.open(io.BytesIO(shown.data)).size == (128, 128) and len(shown.data) < len(tile.data)
    app.extensions["xaiboard.registry"].close()
