"""What goes over the wire: text compressed for browsers that accept it, versioned bundles cached for good, tiles
at the size they are shown and in the photo's kind of encoding."""

from __future__ import annotations

import gzip
import io
import re

import brotli
import pytest
from PIL import Image

import imagenet_like
from xaiboard.server.app import create_app

BROWSER = {"Accept-Encoding": "gzip, deflate, br, zstd"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("base")
    imagenet_like.write(root / "imagenet", n=4)
    app = create_app(root, reload_interval=0)
    return app.test_client()


@pytest.fixture(scope="module")
def summary_id(client):
    return client.get("/api/v1/summaries").get_json()["summaries"][0]["id"]


def test_json_and_pages_are_compressed_when_the_browser_accepts_it(client, summary_id):
    plain = client.get(f"/api/v1/summaries/{summary_id}")
    assert "Content-Encoding" not in plain.headers and len(plain.data) > 50_000  # 1000 labels with their counts
    packed = client.get(f"/api/v1/summaries/{summary_id}", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in packed.headers["Vary"]
    assert gzip.decompress(packed.data) == plain.data and len(packed.data) < len(plain.data) / 8
    page = client.get(f"/s/{summary_id}/scores", headers=BROWSER)
    assert page.headers["Content-Encoding"] in ("zstd", "br", "gzip")


def test_plotly_is_sent_compressed_once_and_cached_for_good_under_its_version(client, summary_id):
    html = client.get(f"/s/{summary_id}/scores").get_data(as_text=True)
    url = re.search(r'content="(/vendor/plotly\.min\.js\?v=[^"]+)"', html).group(1)
    plain = client.get(url)
    first = client.get(url, headers=BROWSER)
    assert first.headers["Content-Encoding"] == "br" and brotli.decompress(first.data) == plain.data
    assert len(first.data) < len(plain.data) / 3
    assert "immutable" in first.headers["Cache-Control"] and "max-age=31536000" in first.headers["Cache-Control"]
    again = client.get(url, headers={**BROWSER, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and not again.data
    assert "immutable" not in client.get("/vendor/plotly.min.js", headers=BROWSER).headers["Cache-Control"]


def test_versioned_assets_are_cached_for_good(client, summary_id):
    html = client.get(f"/s/{summary_id}").get_data(as_text=True)
    asset = re.search(r'src="(/static/js/browser\.js\?v=[0-9a-f]+)"', html).group(1)
    assert "immutable" in client.get(asset).headers["Cache-Control"]
    assert "immutable" not in client.get("/static/js/browser.js?v=stale").headers.get("Cache-Control", "")


def test_photo_tiles_are_webp_at_the_size_asked(client, summary_id):
    sample = client.get(f"/api/v1/summaries/{summary_id}/samples/0").get_json()
    url = sample["labels"][0]["saliency"][0]["url"]
    sizes = {}
    for size, shown in ((128, 128), (192, 192), (384, 224)):  # never above the photo's 224 px
        tile = client.get(f"{url}&overlay=1&alpha=0.5&size={size}")
        assert tile.mimetype == "image/webp" and "immutable" in tile.headers["Cache-Control"]
        assert Image.open(io.BytesIO(tile.data)).size == (shown, shown)
        sizes[size] = len(tile.data)
    assert sizes[128] < sizes[192] < sizes[384] < 20_000
