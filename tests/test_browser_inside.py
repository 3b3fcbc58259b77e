"""The zoom view's "Inside" panel in Chromium, over summaries the real runner writes with ``register_internals``: a
CNN's top-k feature maps and filters per layer, a ViT's attention heads (sorted by the stored entropy and box
share, one shown large), its attention rollout and the prediction with and without the attention intervention.
A summary without internals shows no panel, and a failed request stays inside the panel.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from test_browser import browser, close_page, context, new_page, page, row_ids, start_server, stop_server  # noqa: F401
from test_server_registry import write_summary
from xaiboard.server.registry import summary_id
from xaiboard.store import Summary

pytestmark = pytest.mark.browser
torch = pytest.importorskip("torch")

SIZE = 32
CNN_LAYERS = ["features.conv1", "features.conv2"]
CNN_CHANNELS = {"features.conv1": 6, "features.conv2": 8}  # TinyNet's convolutions
TOP_K = 4
VIT_LAYERS = ["patch_embed", "blocks.0.attn", "blocks.1.attn"]
HEADS = 4
SCALE = 3.0
CNN, VIT, PLAIN, WIDE_RUN = summary_id("cnn"), summary_id("vit"), summary_id("plain"), summary_id("wide")
WIDE = 72  # more filters than the panel shows at first
PANEL = "#zoom .inside[data-state='drawn']"
LOADED = """nodes => nodes.length > 0 && nodes.every((i) => i.complete && i.naturalWidth > 0)"""


def pictures(count: int, seed: int) -> list[torch.Tensor]:
    """Noise with a bright square that moves from image to image, so the maps differ between samples."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for i in range(count):
        image = 0.3 * torch.rand(3, SIZE, SIZE, generator=generator)
        image[i % 3, 4 + 4 * i:16 + 4 * i, 6:20] = 0.95
        images.append(image)
    return images


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from nets import TinyNet
    from vit_blocks import TinyViT
    from xaiboard.runner import ImageClassificationRunner
    from xaiboard.runner.explainers import AttentionRollout, Gradient

    root = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    cnn = TinyNet(classes=4).eval()
    items = [{"image": image, "labels": [i % 4], "name": f"cnn_{i}.png"} for i, image in enumerate(pictures(3, 0))]
    runner = ImageClassificationRunner(root / "cnn", cnn, items, ["a", "b", "c", "d"], device="cpu", top_k=2)
    runner.register_saliency([Gradient(cnn)])
    runner.register_internals(layers=CNN_LAYERS, top_k=TOP_K)
    runner.run(progress=False).close()

    torch.manual_seed(1)
    vit = TinyViT("fused", classes=5, patch=8, grid=(4, 4), heads=HEADS).eval()
    items = [{"image": image, "labels": [i % 5], "boxes": [(6, 4 + 4 * i, 14, 12)], "name": f"vit_{i}.png"}
             for i, image in enumerate(pictures(3, 1))]
    runner = ImageClassificationRunner(root / "vit", vit, items, ["cat", "dog", "owl", "fox", "elk"], device="cpu")
    runner.register_saliency([Gradient(vit), AttentionRollout(vit)])
    runner.register_internals(layers=["patch_embed"], attention=True, scale=SCALE)
    runner.run(progress=False).close()

    torch.manual_seed(2)
    wide = torch.nn.Sequential(torch.nn.Conv2d(3, WIDE, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(WIDE, 3)).eval()
    items = [{"image": image, "labels": [i % 3]} for i, image in enumerate(pictures(2, 2))]
    runner = ImageClassificationRunner(root / "wide", wide, items, ["x", "y", "z"], device="cpu")
    runner.register_internals(layers=["0"], top_k=3)
    runner.run(progress=False).close()

    write_summary(root / "plain", 3, ["Gradient"], uncertainty=False, seed=0)
    return root


@pytest.fixture(scope="module")
def url(root):
    server, address = start_server(root)
    yield address
    stop_server(server)


def open_inside(page, url, summary, sample=0, state="drawn"):
    page.goto(f"{url}/s/{summary}?zoom={sample}")
    page.wait_for_selector(f"#zoom .inside[data-sample='{sample}'][data-state='{state}']", state="attached")


def inside_json(page, url, summary, sample=0) -> dict:
    return page.evaluate("u => fetch(u).then((r) => r.json())", f"{url}/api/v1/summaries/{summary}/inside/{sample}")


def listed(page, url, summary) -> list[int]:
    """The sample ids in the order the browser lists them (the zoom view's previous/next order)."""
    page.goto(f"{url}/s/{summary}")
    page.wait_for_selector("tr.sample-row")
    return row_ids(page)


def wait_loaded(page, selector):
    page.wait_for_function(f"() => ({LOADED})([...document.querySelectorAll({selector!r})])")


def numbers(text: str) -> list[float]:
    return [float(x.replace("−", "-")) for x in re.findall(r"[−-]?\d+(?:\.\d+)?(?:e[+−-]?\d+)?", text)]


def feature_captions(page) -> list[str]:
    return page.locator("#zoom .inside-feature figcaption").all_inner_texts()


def test_a_cnn_shows_its_top_k_feature_maps_per_layer_and_the_layers_filters(page, url, root):
    open_inside(page, url, CNN)
    assert page.locator("#zoom .inside-panel h3").inner_text() == "Inside the network"
    assert page.locator("#zoom .inside-tab").evaluate_all("tabs => tabs.map((t) => t.dataset.layer)") == CNN_LAYERS
    with Summary.open(root / "cnn") as summary:
        stored = {name: summary.feature_maps(0, name) for name in CNN_LAYERS}
        filters = {name: summary.filters(name) for name in CNN_LAYERS}
    data = inside_json(page, url, CNN)
    for name in CNN_LAYERS:
        if name != CNN_LAYERS[0]:
            page.click(f"#zoom .inside-tab[data-layer='{name}']")
        page.wait_for_selector(f"#zoom .inside-layer[data-layer='{name}']")
        assert page.locator(f"#zoom .inside-tab[data-layer='{name}']").get_attribute("aria-selected") == "true"
        layer = next(entry for entry in data["layers"] if entry["name"] == name)
        maps = stored[name]
        assert layer["kept"] == TOP_K == len(maps.channels) and page.locator("#zoom .inside-feature").count() == TOP_K
        captions = feature_captions(page)
        assert [c.split("\n")[0] for c in captions] == [f"ch {c}" for c in maps.channels.tolist()]
        for caption, low, high, mean in zip(captions, maps.low, maps.high, maps.means):
            assert numbers(caption.split("\n", 1)[1]) == pytest.approx([low, high, mean], rel=0.051)  # 2 digits
        note = page.locator("#zoom .inside-layer p.inside-note").inner_text()
        assert note.startswith(f"top {TOP_K} of {CNN_CHANNELS[name]} channels")
        wait_loaded(page, "#zoom .inside-feature img")
        natural = page.locator("#zoom .inside-feature img").evaluate_all(
            "images => images.map((i) => [i.naturalWidth, i.naturalHeight, i.clientWidth])")
        assert all(w == maps.maps.shape[2] and h == maps.maps.shape[1] and shown > w for w, h, shown in natural), \
            "the tiles are the layer's own grid, enlarged by the browser"
        # the filters: one tile per output channel of the convolution, at its kernel size, enlarged
        assert filters[name] is not None and layer["filters"]["count"] == CNN_CHANNELS[name]
        assert page.locator("#zoom .inside-filter").count() == CNN_CHANNELS[name]
        wait_loaded(page, "#zoom .inside-filter img")
        sizes = page.locator("#zoom .inside-filter img").evaluate_all(
            "images => images.map((i) => [i.naturalHeight, i.naturalWidth])")
        assert sizes == [list(filters[name].display.shape[1:3])] * CNN_CHANNELS[name]
        expected = "rgb" if name == CNN_LAYERS[0] else "mean"
        assert filters[name].mode == expected
        head = page.locator("#zoom [data-block='filters'] .inside-block-head").inner_text()
        assert "as RGB" in head if expected == "rgb" else "mean over the input channels" in head
    # the CNN has no attention: no heads, no rollout, no intervention
    assert page.locator("#zoom .inside-head, #zoom .inside-rollout, #zoom .inside-intervention").count() == 0


def test_the_panel_follows_the_sample_and_keeps_its_layer_when_the_label_or_the_sample_changes(page, url, root):
    first_id, second_id = listed(page, url, CNN)[:2]
    open_inside(page, url, CNN, first_id)
    page.click(f"#zoom .inside-tab[data-layer='{CNN_LAYERS[1]}']")
    page.wait_for_selector(f"#zoom .inside-layer[data-layer='{CNN_LAYERS[1]}']")
    # another label of the same sample (top_k=2 explains two): the same insides, nothing fetched again
    chips = page.locator("#zoom .label-chip")
    assert chips.count() >= 2
    other = chips.nth(1).get_attribute("data-label")
    asked = len([u for u in page.requested if "/inside/" in u])
    chips.nth(1).click()
    page.wait_for_selector(f"#zoom .label-chip.active[data-label='{other}']")
    assert page.locator("#zoom .inside-layer").get_attribute("data-layer") == CNN_LAYERS[1]
    assert len([u for u in page.requested if "/inside/" in u]) == asked == 1
    page.click("#zoom button[title^='next sample']")
    page.wait_for_selector(f"#zoom .inside[data-sample='{second_id}'][data-state='drawn']")
    with Summary.open(root / "cnn") as summary:
        first, second = (summary.feature_maps(i, CNN_LAYERS[1]) for i in (first_id, second_id))
    assert page.locator("#zoom .inside-layer").get_attribute("data-layer") == CNN_LAYERS[1], "the layer follows along"
    assert [c.split("\n")[0] for c in feature_captions(page)] == [f"ch {c}" for c in second.channels.tolist()]
    assert not np.allclose(first.means, second.means), "another sample, other activations"
    wait_loaded(page, "#zoom .inside-feature img")
    assert all(f"/features/{second_id}/" in src for src in page.locator("#zoom .inside-feature img").evaluate_all(
        "images => images.map((i) => i.src)"))


@pytest.fixture
def vit_page(page, url):
    open_inside(page, url, VIT)
    return page


def test_a_vit_shows_its_patch_embedding_with_every_channel_and_its_filters(vit_page, url):
    page = vit_page
    data = inside_json(page, url, VIT)
    assert [layer["name"] for layer in data["layers"]] == VIT_LAYERS
    assert page.locator("#zoom .inside-tab").all_inner_texts() == [
        "patch_embed\n32 maps", f"blocks.0.attn\n{HEADS} heads", f"blocks.1.attn\n{HEADS} heads"]
    embed = data["layers"][0]
    assert embed["kept"] == embed["channels"] == 32 and page.locator("#zoom .inside-feature").count() == 32
    assert [c.split("\n")[0] for c in feature_captions(page)] == [f"ch {m['channel']}" for m in embed["maps"]]
    assert page.locator("#zoom .inside-layer p.inside-note:not(.muted)").count() == 0, "every channel: no top-k note"
    assert page.locator("#zoom .inside-filter").count() == embed["filters"]["count"] == 32
    wait_loaded(page, "#zoom .inside-feature img, #zoom .inside-filter img")
    assert page.locator("#zoom .inside-filter img").first.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [8, 8]


def head_order(page) -> list[int]:
    return page.locator("#zoom .inside-head").evaluate_all("heads => heads.map((h) => Number(h.dataset.head))")


def test_switching_to_an_attention_layer_shows_one_map_per_head_sorted_as_stored(vit_page, url):
    page = vit_page
    data = inside_json(page, url, VIT)
    assert data["has_boxes"]
    for name in VIT_LAYERS[1:]:
        page.click(f"#zoom .inside-tab[data-layer='{name}']")
        page.wait_for_selector(f"#zoom .inside-layer[data-layer='{name}'][data-kind='attention']")
        assert page.locator("#zoom .inside-feature").count() == 0, "the grid changed with the layer"
        heads = next(layer for layer in data["layers"] if layer["name"] == name)["head_list"]
        assert len(heads) == HEADS and page.locator("#zoom .inside-head").count() == HEADS
        if name != VIT_LAYERS[1]:  # the sort chosen on the first layer is kept
            assert page.locator("#zoom select.inside-sort").input_value() == "box"
            assert head_order(page) == [h["head"] for h in sorted(heads, key=lambda h: (-h["box_share"], h["head"]))]
            page.select_option("#zoom select.inside-sort", "head")
        assert head_order(page) == list(range(HEADS))
        wait_loaded(page, "#zoom .inside-head img")
        sources = page.locator("#zoom .inside-head img").evaluate_all("images => images.map((i) => i.src)")
        assert all(f"/attention/0/{h}/{name}" in src for h, src in enumerate(sources))
        captions = page.locator("#zoom .inside-head .inside-caption").all_inner_texts()
        for head, caption in zip(heads, captions):
            lines = caption.split("\n")
            assert lines[0] == f"head {head['head']}"
            assert float(lines[1].removeprefix("entropy ")) == pytest.approx(head["entropy"], abs=0.006)
            assert float(lines[2].removeprefix("box ").removesuffix("%")) == pytest.approx(100 * head["box_share"], abs=0.6)
        options = page.locator("#zoom select.inside-sort option").evaluate_all("o => o.map((x) => x.value)")
        assert options == ["head", "entropy", "box"]
        page.select_option("#zoom select.inside-sort", "entropy")
        assert head_order(page) == [h["head"] for h in sorted(heads, key=lambda h: (h["entropy"], h["head"]))]
        page.select_option("#zoom select.inside-sort", "box")
        assert head_order(page) == [h["head"] for h in sorted(heads, key=lambda h: (-h["box_share"], h["head"]))]


def test_clicking_a_head_shows_it_large(vit_page):
    page = vit_page
    page.click(f"#zoom .inside-tab[data-layer='{VIT_LAYERS[2]}']")
    large = page.locator("#zoom .inside-head-large")
    assert large.get_attribute("data-head") == "0"
    page.select_option("#zoom select.inside-sort", "entropy")  # none picked yet: the large head follows the order
    assert large.get_attribute("data-head") == str(head_order(page)[0])
    page.click("#zoom .inside-head[data-head='2']")
    assert large.get_attribute("data-head") == "2"
    assert large.locator("figcaption strong").inner_text() == "head 2"
    page.select_option("#zoom select.inside-sort", "box")
    assert large.get_attribute("data-head") == "2", "a picked head stays picked whatever the order"
    assert page.locator("#zoom .inside-head[aria-selected='true']").evaluate_all("h => h.map((x) => x.dataset.head)") == ["2"]
    page.wait_for_function("() => { const i = document.querySelector('#zoom .inside-head-large img');"
                           " return i.complete && i.naturalWidth > 0; }")
    img = large.locator("img")
    assert f"/attention/0/2/{VIT_LAYERS[2]}" in img.get_attribute("src")
    assert img.evaluate("i => i.clientWidth") > 2 * page.locator("#zoom .inside-head img").first.evaluate("i => i.clientWidth")


def test_the_layer_sort_and_head_shown_are_in_a_link_that_opens_the_same_view(vit_page, url, context):
    page = vit_page
    page.click(f"#zoom .inside-tab[data-layer='{VIT_LAYERS[2]}']")
    page.select_option("#zoom select.inside-sort", "entropy")
    page.click("#zoom .inside-head[data-head='3']")
    link = page.url
    assert "il=blocks.1.attn" in link and "isort=entropy" in link and "ihead=3" in link
    order = head_order(page)
    other = new_page(context)  # a colleague opening the pasted link
    try:
        other.goto(link)
        other.wait_for_selector(PANEL, state="attached")
        assert other.locator("#zoom .inside-layer").get_attribute("data-layer") == VIT_LAYERS[2]
        assert other.locator("#zoom select.inside-sort").input_value() == "entropy"
        assert head_order(other) == order
        assert other.locator("#zoom .inside-head-large").get_attribute("data-head") == "3"
        assert other.locator("#zoom .inside-head[aria-selected='true']").get_attribute("data-head") == "3"
    finally:
        close_page(other)
    page.click("#zoom button.close")
    # the dialog's close event, which writes the address, comes a task after the dialog shuts
    page.wait_for_function("() => !document.querySelector('#zoom').open && "
                           "!['il=', 'isort=', 'ihead=', 'zoom='].some((key) => location.search.includes(key))")
    page.goto(f"{url}/s/{VIT}?zoom=0&il=no.such.layer&isort=nonsense&ihead=x")
    page.wait_for_selector(PANEL, state="attached")
    assert page.locator("#zoom .inside-layer").get_attribute("data-layer") == VIT_LAYERS[0], "an unknown layer: the first"


def drawn_boxes(page, figure: str) -> list[list[float]]:
    """The boxes over each image of ``figure``, in the image's pixels, measured from where the browser put them."""
    return page.locator(f"{figure} .inside-frame").evaluate_all("""frames => frames.flatMap((frame) => {
        const img = frame.querySelector("img").getBoundingClientRect();
        const scale = img.width / 32;
        return [...frame.querySelectorAll("svg.boxes rect")].map((rect) => { const r = rect.getBoundingClientRect();
            return [(r.x - img.x) / scale, (r.y - img.y) / scale, r.width / scale, r.height / scale]; });
    })""")


def test_the_large_head_and_the_rollout_show_the_samples_boxes_where_they_are(vit_page, url):
    page = vit_page
    boxes = inside_json(page, url, VIT)["boxes"]
    assert [[b["x"], b["y"], b["width"], b["height"]] for b in boxes] == [[6, 4, 14, 12]]
    page.click(f"#zoom .inside-tab[data-layer='{VIT_LAYERS[1]}']")
    for figure in ("#zoom .inside-head-large", "#zoom .inside-rollout"):
        (drawn,) = drawn_boxes(page, figure)
        assert drawn == pytest.approx([6, 4, 14, 12], abs=0.35), figure
    assert page.locator("#zoom .inside-head .boxes").count() == 0, "the small heads stay unmarked"
    open_inside(page, url, CNN)
    assert page.locator("#zoom .inside-panel svg.boxes").count() == 0, "no boxes, nothing drawn"


def test_the_rollout_and_the_intervention_show_what_the_run_stored(vit_page, url, root):
    page = vit_page
    rollout = page.locator("#zoom .inside-rollout")
    assert rollout.count() == 1 and rollout.get_attribute("data-explainer") == "AttentionRollout"
    wait_loaded(page, "#zoom .inside-rollout img")
    assert "/AttentionRollout" in rollout.locator("img").get_attribute("src")
    with Summary.open(root / "vit") as summary:
        before, after = summary.probabilities(0).probs, summary.intervention(0)
        names = summary.label_names()
    data = inside_json(page, url, VIT)["intervention"]
    block = page.locator("#zoom [data-block='intervention']")
    assert f"× {SCALE:g} in every attention layer" in block.locator(".inside-block-head").inner_text()
    rows = block.locator("tbody tr")
    indices = rows.evaluate_all("rows => rows.map((r) => Number(r.dataset.label))")
    assert indices == [label["index"] for label in data["labels"]] and len(indices) == len(names)
    for row, index in zip(rows.all(), indices):
        name, shown_before, shown_after, _ = row.locator("td").all_inner_texts()
        assert name == names[index]
        assert float(shown_before) == pytest.approx(before[index], abs=6e-4)
        assert float(shown_after) == pytest.approx(after[index], abs=6e-4)
    top_before, top_after = int(np.argmax(before)), int(np.argmax(after))
    assert block.locator("tr.top-after").get_attribute("data-label") == str(top_after)
    assert block.locator("tr.top-before").first.get_attribute("data-label") == str(top_before)
    verdict = block.locator(".inside-verdict").inner_text()
    if top_before != top_after:
        assert verdict == f"The top label changes: {names[top_before]} → {names[top_after]}"
    else:
        assert verdict == f"The top label stays {names[top_after]}"


def test_a_summary_without_internals_shows_no_inside_panel(page, url):
    open_inside(page, url, PLAIN, state="empty")
    assert page.locator("#zoom .inside").is_hidden()
    assert page.locator("#zoom .inside-panel, #zoom .inside .alert").count() == 0
    assert page.locator("#zoom .zoom-figure").count() == 2  # the input and its map


def test_a_failed_request_stays_inside_the_panel(page, url):
    first_id, second_id = listed(page, url, VIT)[:2]
    page.route("**/inside/**", lambda route: route.fulfill(status=500, json={"error": "the summary is busy"}))
    open_inside(page, url, VIT, first_id, state="failed")
    alert = page.locator("#zoom .inside .alert-error")
    assert alert.is_visible() and "the summary is busy" in alert.inner_text()
    assert page.locator("#zoom .zoom-figure").count() == 3  # the input and both maps still there
    page.click("#zoom button[title^='next sample']")  # and the view still works
    page.wait_for_selector(f"#zoom .inside[data-sample='{second_id}'][data-state='failed']")
    assert page.locator("#zoom .zoom-head h2").inner_text() == f"vit_{second_id}.png"
    page.console.errors = [e for e in page.console.errors if "status of 500" not in e]


def test_a_wide_layer_shows_the_filters_of_its_kept_channels_first(page, url):
    open_inside(page, url, WIDE_RUN)
    kept = [m["channel"] for m in inside_json(page, url, WIDE_RUN)["layers"][0]["maps"]]
    tiles = page.locator("#zoom .inside-filter")
    assert [int(i) for i in tiles.evaluate_all("nodes => nodes.map((n) => n.dataset.index)")] == kept
    assert "those of the 3 channels above" in page.locator("#zoom [data-block='filters']").inner_text()
    page.click("#zoom .inside-more")
    assert tiles.count() == WIDE and page.locator("#zoom .inside-more").count() == 0
    assert sorted(int(i) for i in page.locator("#zoom .inside-filter.kept").evaluate_all(
        "nodes => nodes.map((n) => n.dataset.index)")) == sorted(kept)
