"""The "Inside" panel's API over summaries the real runner writes: the JSON is what the store holds, the tiles are
drawn from the stored arrays at their native grid, the heads' entropy and box share are right on analytic cases,
and what is not stored answers 404."""

from __future__ import annotations

import io
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from nets import TinyNet
from test_migrations import migrate
from test_server_registry import write_summary
from vit_blocks import TinyViT, attention_names
from xaiboard.runner import ImageClassificationRunner
from xaiboard.runner.explainers import AttentionRollout, Gradient
from xaiboard.server import colormaps
from xaiboard.server.inside import box_coverage, box_share, entropy
from xaiboard.store import Summary
from xaiboard.store.views import BoxView

CLASSES = ["a", "b", "c", "d", "e"]
BOX = (0.0, 0.0, 16.0, 16.0)  # the top-left quarter of a 32 x 32 image


def images(count: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("inside")
    torch.manual_seed(0)
    cnn = TinyNet(classes=4).eval()
    items = [{"image": image, "labels": [i % 4]} for i, image in enumerate(images(3, 16, seed=0))]
    runner = ImageClassificationRunner(root / "cnn", cnn, items, CLASSES[:4], device="cpu")
    runner.register_internals(layers=["features.conv1", "features.conv2"], top_k=3)
    runner.run(progress=False).close()

    torch.manual_seed(1)
    vit = TinyViT("fused", classes=5, patch=8, grid=(4, 4)).eval()
    items = [{"image": image, "labels": [i % 5], "boxes": [BOX]} for i, image in enumerate(images(3, 32, seed=1))]
    runner = ImageClassificationRunner(root / "vit", vit, items, CLASSES, device="cpu")
    runner.register_saliency([AttentionRollout(vit), Gradient(vit)])
    runner.register_internals(layers=["patch_embed"], attention=True, scale=3.0)
    runner.run(progress=False).close()
    write_summary(root / "plain", 2, ["Gradient"], uncertainty=False, seed=0)
    shutil.copytree(root / "cnn", root / "old")
    migrate(root / "old", "0004")  # a summary written before the internals existed
    return root


def inside(client, ids, run: str, sample: int) -> dict:
    response = client.get(f"/api/v1/summaries/{ids[run]}/inside/{sample}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def png(client, url: str) -> np.ndarray:
    response = client.get(url)
    assert response.status_code == 200 and response.mimetype == "image/png", response.get_data(as_text=True)[:200]
    return np.asarray(Image.open(io.BytesIO(response.data)).convert("RGB"))


def test_feature_layers_are_the_stored_maps_and_filters(client, ids, base):
    body = inside(client, ids, "cnn", 1)
    assert body["stored"] and body["intervention"] is None and body["rollout"] == []
    with Summary.open(base / "cnn") as summary:
        for layer, name in zip(body["layers"], ["features.conv1", "features.conv2"]):
            stored = summary.feature_maps(1, name)
            assert layer["name"] == name and layer["kind"] == "features" and layer["top_k"] == 3
            assert layer["kept"] == 3 and layer["channels"] == stored.total_channels
            assert [m["channel"] for m in layer["maps"]] == stored.channels.tolist()
            assert [m["mean"] for m in layer["maps"]] == pytest.approx(stored.means.tolist())
            assert [m["high"] for m in layer["maps"]] == pytest.approx(stored.high.tolist())
            filters = summary.filters(name)
            assert layer["filters"]["count"] == len(layer["filters"]["urls"]) == filters.display.shape[0]
        first = body["layers"][0]["maps"][0]
        tile = png(client, first["url"])
        stored = summary.feature_maps(1, "features.conv1")
        assert tile.shape == (16, 16, 3), "a feature map is drawn at its own grid"
        peak = np.unravel_index(np.argmax(stored.maps[0]), stored.maps[0].shape)
        assert tuple(tile[peak]) == tuple(colormaps.apply("viridis", np.ones((1, 1)))[0, 0]), "the maximum is the top colour"
    rgb = png(client, body["layers"][0]["filters"]["urls"][0])
    assert rgb.shape == (3, 3, 3) and body["layers"][0]["filters"]["mode"] == "rgb"
    assert png(client, body["layers"][1]["filters"]["urls"][0]).shape == (3, 3, 3), "6 inputs: their mean"


def test_attention_heads_intervention_and_rollout(client, ids, base):
    body = inside(client, ids, "vit", 2)
    attention = [layer for layer in body["layers"] if layer["kind"] == "attention"]
    assert [layer["name"] for layer in attention] == attention_names(TinyViT("fused"))
    assert body["has_boxes"] and all((l["rows"], l["columns"], l["heads"]) == (4, 4, 4) for l in attention)
    with Summary.open(base / "vit") as summary:
        heads = summary.attention_maps(2)[attention[0]["name"]]
        coverage = np.zeros((4, 4))
        coverage[:2, :2] = 1.0  # the box is exactly the top-left 2 x 2 patches
        for row in attention[0]["head_list"]:
            assert row["entropy"] == pytest.approx(entropy(heads[row["head"]]))
            share = heads[row["head"]][:2, :2].sum() / heads[row["head"]].sum()
            assert row["box_share"] == pytest.approx(share, rel=1e-5)
        after, before = summary.intervention(2), summary.probabilities(2).probs
    change = body["intervention"]
    assert change["scale"] == 3.0 and change["top_before"] == CLASSES[int(np.argmax(before))]
    assert change["changed"] == (int(np.argmax(before)) != int(np.argmax(after)))
    for label in change["labels"]:
        assert label["before"] == pytest.approx(before[label["index"]])
        assert label["after"] == pytest.approx(after[label["index"]])
    assert png(client, attention[0]["head_list"][0]["url"]).shape == (32, 32, 3), "over the image, at its size"
    assert png(client, attention[0]["head_list"][0]["url"] + "&size=16").shape == (16, 16, 3)
    assert [r["explainer"] for r in body["rollout"]] == ["AttentionRollout"]
    assert png(client, body["rollout"][0]["url"]).shape[:2] == (32, 32)


def test_what_is_not_stored_answers_404(client, ids):
    for run in ("plain", "old"):
        body = inside(client, ids, run, 0)
        assert body["stored"] is False and body["layers"] == [] and body["intervention"] is None
    cnn = f"/api/v1/summaries/{ids['cnn']}"
    assert client.get(f"{cnn}/inside/99").status_code == 404
    body = inside(client, ids, "cnn", 0)
    kept = {m["channel"] for m in body["layers"][1]["maps"]}
    missing = next(c for c in range(8) if c not in kept)
    for url in [f"{cnn}/inside-images/features/0/{missing}/features.conv2",
                f"{cnn}/inside-images/features/0/0/features.conv9",
                f"{cnn}/inside-images/filters/6/features.conv1",
                f"{cnn}/inside-images/attention/0/0/blocks.0.attn",
                f"/api/v1/summaries/{ids['vit']}/inside-images/attention/0/4/{attention_names(TinyViT('fused'))[0]}"]:
        response = client.get(url)
        assert response.status_code == 404 and "error" in response.get_json(), url
    assert client.get(f"/api/v1/summaries/{ids['vit']}/inside-images/attention/0/0/x?size=99999").status_code == 400


def test_entropy_and_box_share_on_known_heads():
    one_patch = np.zeros((4, 4))
    one_patch[1, 2] = 0.7
    assert entropy(one_patch) == 0.0 and entropy(np.full((4, 4), 0.3)) == pytest.approx(1.0)
    assert entropy(np.zeros((4, 4))) is None
    half = np.zeros((2, 2))
    half[0] = 0.5
    assert entropy(half) == pytest.approx(math.log(2) / math.log(4))
    boxes = [BoxView(label_index=0, x=0.0, y=0.0, width=16.0, height=32.0)]
    coverage = box_coverage(boxes, (32, 32), (2, 4))
    np.testing.assert_allclose(coverage, [[1, 1, 0, 0], [1, 1, 0, 0]])
    assert box_share(np.ones((2, 4)), coverage) == pytest.approx(0.5)
    assert box_share(np.ones((2, 4)), None) is None and box_coverage([], (32, 32), (2, 4)) is None
    inside_only = np.zeros((2, 4))
    inside_only[:, :2] = 1.0
    assert box_share(inside_only, coverage) == pytest.approx(1.0)
