"""The diagnostics behind a pair's map and scores, through the store and the API: Integrated Gradients' path with
its verdict and images, the perturbation curves, the convergence sort and filter, and older summaries."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from diagnostic_run import MEAN, STD, items, write_diagnostic_run
from test_migrations import migrate
from xaiboard.runner.explainers.baselines import make_baseline, uniform_noise as runner_noise
from xaiboard.server.diagnostics import verdict
from xaiboard.server.path_images import baseline_image, uniform_noise
from xaiboard.store import Summary


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("diagnostics")
    write_diagnostic_run(root / "run")
    shutil.copytree(root / "run", root / "old")
    migrate(root / "old", "0003")  # what a summary written before the diagnostics looks like
    return root


@pytest.fixture(scope="module")
def summary(base):
    with Summary.open(base / "run") as opened:
        yield opened


def test_the_pair_json_is_the_stored_path_and_curves(client, ids, summary):
    body = client.get(f"/api/v1/summaries/{ids['run']}/diagnostics/0/0").get_json()
    assert body["stored"] and body["label"] == "ring"
    paths = {p.explainer: p for p in summary.paths(0, 0)}
    assert [e["explainer"] for e in body["integrated_gradients"]] == list(paths)
    for entry in body["integrated_gradients"]:
        stored = paths[entry["explainer"]]
        assert np.allclose(entry["alphas"], stored.alphas) and np.allclose(entry["probabilities"], stored.probabilities)
        assert np.allclose(entry["gradients"], stored.gradients)
        assert entry["relative_delta"] == pytest.approx(stored.relative_delta)
        assert entry["converged"] == (stored.relative_delta <= entry["tolerance"])
        assert [image["alpha"] for image in entry["images"]] == [0, 0.25, 0.5, 0.75, 1]
    black = body["integrated_gradients"][0]
    assert black["searched"] and black["steps_needed"] == paths["IntegratedGradients[black]"].steps_needed
    assert f"{black['steps_needed']} steps were enough" in black["verdict"]
    curves = {(c.metric, c.explainer): c for c in summary.curves(0, 0)}
    shown = {(m["metric"], c["explainer"]): (m, c) for m in body["curves"] for c in m["curves"]}
    assert set(shown) == set(curves)
    for key, (metric, curve) in shown.items():
        assert np.allclose(curve["values"], curves[key].values) and curve["score"] == pytest.approx(curves[key].score)
        assert len(metric["x"]) == len(curve["values"])
    insertion = next(m for m in body["curves"] if m["metric"] == "InsertionAUC")
    assert insertion["area"] and insertion["x"][0] == 0 and insertion["x"][-1] == 1 and insertion["higher_is_better"]
    naive = next(m for m in body["curves"] if m["metric"] == "NaiveFaithfulness")
    assert not naive["area"] and naive["x"] == list(range(9))


def test_the_verdict_says_in_words_whether_the_integral_converged():
    assert verdict(0.003, 1.2, 0.05, 32, None, False) == (
        "The sum of attributions matches F(x) − F(baseline) within 0.3% (tolerance 5.0%): the integral converged "
        "with 32 steps.", True)
    text, converged = verdict(0.2, 1.2, 0.05, 8, 64, True)
    assert not converged and "misses F(x) − F(baseline) by 20%" in text and text.endswith("64 steps were enough.")
    assert verdict(0.2, 1e-5, 0.05, 8, None, False)[1] is None
    assert "No step count tried was enough." in verdict(0.3, 1.0, 0.05, 8, None, True)[0]


def test_the_path_images_run_from_the_baseline_to_the_input(client, ids, summary):
    body = client.get(f"/api/v1/summaries/{ids['run']}/diagnostics/0/0").get_json()
    by_name = {e["explainer"]: e for e in body["integrated_gradients"]}

    def picture(url):
        response = client.get(url)
        assert response.status_code == 200 and response.mimetype == "image/png"
        return np.asarray(Image.open(io.BytesIO(response.data)).convert("RGB")).astype(int)

    black, white = by_name["IntegratedGradients[black]"]["images"], by_name["IntegratedGradients[white]"]["images"]
    assert picture(black[0]["url"]).max() == 0
    assert picture(white[0]["url"]).min() == 255
    shown = summary.image(0).astype(int)
    assert np.abs(picture(black[-1]["url"]) - shown).max() <= 1
    halfway = picture(black[2]["url"])
    assert np.abs(halfway - shown / 2).max() <= 1  # alpha 0.5 from black is half the image
    assert client.get(black[0]["url"].replace("alpha=0", "alpha=2")).status_code == 400
    assert client.get(f"/api/v1/summaries/{ids['run']}/path-images/0/Nope?alpha=0").status_code == 400


def test_the_drawn_baselines_are_the_runner_s(summary):
    import torch

    assert np.array_equal(uniform_noise(7, (3, 4, 5)), runner_noise(7, (3, 4, 5)))
    image = summary.image(1).astype(np.float64) / 255
    run_config = summary.run().config
    inputs = items(2)[1]["image"][None]
    for baseline in ("zero", "black", "white", "uniform"):
        expected = make_baseline(baseline, inputs, None, 0, MEAN, STD)
        expected = (torch.zeros_like(inputs) + expected)[0].permute(1, 2, 0).numpy() * STD[0] + MEAN[0]
        drawn = baseline_image(image, {"baseline": baseline, "seed": 0}, run_config, 3)
        assert np.abs(drawn - np.clip(expected, 0, 1)).max() < 0.02, baseline


def test_the_browser_sorts_and_filters_by_the_convergence_delta(client, ids, summary):
    columns = summary.delta_columns()
    over = set(columns["sample_id"][columns["over"]].tolist())
    assert over and over != set(summary.sample_ids())
    page = client.get(f"/api/v1/summaries/{ids['run']}/samples?unconverged=1&limit=200").get_json()
    assert {s["id"] for s in page["samples"]} == over and page["total"] == len(over)
    worst = {}
    for sample_id, value in zip(columns["sample_id"].tolist(), columns["value"].tolist()):
        worst[sample_id] = max(worst.get(sample_id, 0.0), value)
    page = client.get(f"/api/v1/summaries/{ids['run']}/samples?sort=-delta&limit=200").get_json()
    assert [s["id"] for s in page["samples"]] == sorted(worst, key=lambda i: (-worst[i], i))
    # filtered by label: the worst delta of that label's pairs only
    page = client.get(f"/api/v1/summaries/{ids['run']}/samples?labels=2&sort=-delta&unconverged=1").get_json()
    expected = {i for i, label, bad in zip(columns["sample_id"].tolist(), columns["label_index"].tolist(),
                                           columns["over"].tolist()) if label == 2 and bad}
    assert {s["id"] for s in page["samples"]} == expected
    assert client.get(f"/api/v1/summaries/{ids['run']}/samples?unconverged=maybe").status_code == 400


def test_a_summary_from_before_the_diagnostics_opens_and_simply_lacks_them(client, ids, base):
    with Summary.open(base / "old") as old:
        assert old.revision == "0003" and not old.has_diagnostics
        assert old.paths(0, 0) == [] and old.curves(0, 0) == [] and old.counts()["num_ig_paths"] == 0
    body = client.get(f"/api/v1/summaries/{ids['old']}/diagnostics/0/0").get_json()
    assert body == {"sample_id": 0, "label_index": 0, "label": "ring", "stored": False, "integrated_gradients": [],
                    "curves": []}
    page = client.get(f"/api/v1/summaries/{ids['old']}/samples?unconverged=1").get_json()
    assert page["total"] == 0
    assert client.get(f"/api/v1/summaries/{ids['old']}/samples?sort=delta").get_json()["total"] == 6
