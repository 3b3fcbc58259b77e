"""Colormaps, map normalisation, overlay blending and the PNG cache of the server's renderer."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from xaiboard.server import colormaps
from xaiboard.server.cache import LruCache
from xaiboard.server.render import RenderError, RenderOptions, colorbar, normalise, render_image, render_saliency
from xaiboard.store import codec


@pytest.mark.parametrize("name,reference", [("viridis", "viridis"), ("inferno", "inferno"), ("magma", "magma"),
                                            ("jet", "jet"), ("gray", "gray"), ("RdBu", "RdBu_r")])
def test_colormaps_match_matplotlib(name, reference):
    matplotlib = pytest.importorskip("matplotlib")
    expected = np.rint(matplotlib.colormaps[reference](np.linspace(0, 1, 256))[:, :3] * 255)
    table = colormaps.table(name).astype(float)
    assert table.shape == (256, 3) and table.dtype == np.float64
    # Perceptual maps are interpolated from 17 reference colours: within 8/255 of the full table, invisible on screen.
    tolerance = 8 if name in ("viridis", "inferno", "magma") else 1
    assert np.abs(table - expected).max() <= tolerance, name


def test_colormap_ends_and_unknown_name():
    assert colormaps.table("gray")[0].tolist() == [0, 0, 0] and colormaps.table("gray")[-1].tolist() == [255, 255, 255]
    assert colormaps.table("jet")[0].tolist() == [0, 0, 128]
    assert colormaps.apply("gray", np.array([[0.0, 0.5, 1.0, np.nan]]))[0, :, 0].tolist() == [0, 128, 255, 0]
    with pytest.raises(KeyError):
        colormaps.table("rainbow")
    with pytest.raises(RenderError):
        colorbar("rainbow")


def test_normalise_by_sign():
    r = np.array([[-2.0, -1.0, 0.0, 1.0, 4.0]])
    assert normalise(r, "positive").tolist() == [[0, 0, 0, 0.25, 1]]
    assert normalise(r, "negative").tolist() == [[1, 0.5, 0, 0, 0]]
    assert normalise(r, "absolute").tolist() == [[0.5, 0.25, 0, 0.25, 1]]
    assert normalise(r, "all").tolist() == [[0.25, 0.375, 0.5, 0.625, 1]]
    flat = np.zeros((2, 2))
    assert normalise(flat, "absolute").tolist() == [[0, 0], [0, 0]] and normalise(flat, "all").max() == 0.5
    assert normalise(-np.ones((1, 2)), "positive").max() == 0  # nothing positive: all low, no division by zero


def test_options_defaults_and_validation():
    assert RenderOptions.parse({}) == RenderOptions(False, 0.5, "inferno", "absolute", None)
    assert RenderOptions.parse({"sign": "all"}).cmap == "RdBu"  # signed maps default to a diverging colormap
    assert RenderOptions.parse({"overlay": "true", "alpha": "0.25", "size": "64"}).key() == (True, 0.25, "inferno",
                                                                                             "absolute", 64)
    for bad in ({"alpha": "-0.1"}, {"alpha": "nan"}, {"cmap": "Jet"}, {"sign": ""}, {"size": "7"}, {"size": "1.5"},
                {"overlay": "2"}):
        with pytest.raises(RenderError):
            RenderOptions.parse(bad)


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_overlay_resizes_a_coarse_map_onto_the_image():
    image = np.full((32, 48, 3), 200, np.uint8)
    relevance = np.zeros((8, 12))
    relevance[:, 6:] = 1.0  # right half relevant
    out = decode(render_saliency(relevance, codec.encode_image(image), RenderOptions(True, 1.0, "gray", "absolute")))
    assert out.shape == (32, 48, 3)
    assert out[:, :20].max() == 0 and out[:, 28:].min() == 255
    big = decode(render_saliency(relevance, codec.encode_image(image), RenderOptions(True, 0.5, "gray", "absolute", 96)))
    assert big.shape == (32, 48, 3)  # never enlarged beyond the image
    small = decode(render_saliency(relevance, codec.encode_image(image), RenderOptions(True, 1.0, "gray", "absolute", 24)))
    assert small.shape == (16, 24, 3) and small[:, :10].max() == 0 and small[:, 14:].min() == 255
    heat = decode(render_saliency(relevance, None, RenderOptions(True, 0.5, "gray", "absolute")))
    assert heat.shape == (8, 12, 3)  # no image to blend over: the heatmap at map resolution
    assert decode(render_image(codec.encode_image(image), 24)).shape == (16, 24, 3)


def test_cache_is_a_bounded_lru():
    cache = LruCache(max_bytes=10)
    cache.put(("a",), b"12345")
    cache.put(("b",), b"12345")
    assert cache.get(("a",)) == b"12345"  # a is now the most recent
    cache.put(("c",), b"123")
    assert cache.get(("b",)) is None and cache.get(("a",)) == b"12345" and cache.get(("c",)) == b"123"
    cache.put(("huge",), b"x" * 11)
    assert cache.get(("huge",)) is None and len(cache) == 2


def test_a_7x7_map_is_rendered_at_the_image_size():
    """Grad-CAM maps are stored at the layer's grid; overlays and heatmaps show them upsampled to the image as the
    runner's torch upsampling did, so they look as they did when maps were stored at input resolution."""
    torch = pytest.importorskip("torch")
    cam = np.random.default_rng(0).random((7, 7)).astype(np.float32)
    upsampled = torch.nn.functional.interpolate(torch.from_numpy(cam)[None, None], size=(224, 224), mode="bilinear",
                                                align_corners=False)[0, 0].numpy()
    image = codec.encode_image(np.full((224, 224, 3), 90, np.uint8))
    for options, size in ((RenderOptions(True, 0.6, "jet", "absolute"), None),
                          (RenderOptions(False, 0.5, "inferno", "positive"), (224, 224)),
                          (RenderOptions(True, 0.5, "viridis", "absolute", 128), None)):
        native = decode(render_saliency(cam, image, options, image_size=size)).astype(int)
        before = decode(render_saliency(upsampled, image, options)).astype(int)  # the map stored at 224 x 224
        assert native.shape == before.shape == ((128, 128, 3) if options.size else (224, 224, 3))
        assert np.abs(native - before).max() <= 1


def test_photos_keep_their_format_when_resized():
    from conftest import photo

    stored = codec.encode_display_image(photo(224))
    resized = render_image(stored, 128)
    assert codec.image_format(resized) == codec.image_format(stored) != "PNG"
    assert decode(resized).shape == (128, 128, 3)
    assert render_image(stored) == stored
