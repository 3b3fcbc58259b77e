"""The zoom view's "Inside" panel: the JSON of what the network computed inside for a sample, and the tiles drawn
from the stored arrays (feature maps, filters, per-head attention over the image).

Heads are described by two numbers the panel sorts by:

* ``entropy``: of the head's attention over the patches, normalised to sum to 1, divided by log(patches): 0 when
  it looks at one patch, 1 when it looks everywhere alike;
* ``box_share``: the share of that attention that falls inside the sample's ground-truth boxes (each patch
  weighted by how much of it a box covers); None without boxes.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

from xaiboard.store import Summary
from xaiboard.store.views import BoxView, FilterView

from . import colormaps
from .render import RenderOptions, encode_tile, render_saliency

#: how many labels the intervention's prediction change lists
CHANGE_LABELS = 5
FEATURE_CMAP = "viridis"


class InsideError(ValueError):
    """What was asked for is not stored (the API answers 404 with the message)."""


def entropy(head: np.ndarray) -> Optional[float]:
    """Normalised entropy (0..1) of one head's attention over the patches; None when it holds no attention."""
    values = np.clip(np.asarray(head, dtype=np.float64).reshape(-1), 0.0, None)
    total = values.sum()
    if total <= 0 or values.size < 2:
        return None
    p = values[values > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(values.size))


def box_coverage(boxes: list[BoxView], image_size: tuple[int, int], grid: tuple[int, int]) -> Optional[np.ndarray]:
    """The share of each patch (rows x columns) that the boxes cover; None without boxes."""
    if not boxes:
        return None
    height, width = image_size
    mask = np.zeros((height, width), dtype=np.float64)
    for box in boxes:
        top, left = max(0, int(round(box.y))), max(0, int(round(box.x)))
        mask[top:top + max(1, int(round(box.height))), left:left + max(1, int(round(box.width)))] = 1.0
    rows, columns = grid
    row_edges = np.linspace(0, height, rows + 1).round().astype(int)
    column_edges = np.linspace(0, width, columns + 1).round().astype(int)
    coverage = np.zeros(grid)
    for r in range(rows):
        for c in range(columns):
            cell = mask[row_edges[r]:row_edges[r + 1], column_edges[c]:column_edges[c + 1]]
            coverage[r, c] = cell.mean() if cell.size else 0.0
    return coverage


def box_share(head: np.ndarray, coverage: Optional[np.ndarray]) -> Optional[float]:
    """The share of a head's patch attention inside the boxes."""
    values = np.clip(np.asarray(head, dtype=np.float64), 0.0, None)
    if coverage is None or values.sum() <= 0:
        return None
    return float((values * coverage).sum() / values.sum())


def _number(value: Any) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None


def intervention_json(summary: Summary, sample_id: int, config: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The prediction with and without the run's attention intervention: the labels most likely in either."""
    after = summary.intervention(sample_id)
    stored = summary.probabilities(sample_id)
    if after is None or stored is None:
        return None
    before = np.nan_to_num(stored.probs, nan=-1.0)
    names = summary.label_names()
    order = list(dict.fromkeys(np.argsort(-before, kind="stable")[:CHANGE_LABELS].tolist()
                               + np.argsort(-after, kind="stable")[:CHANGE_LABELS].tolist()))
    order.sort(key=lambda i: -max(before[i], after[i]))
    top_before, top_after = int(np.argmax(before)), int(np.argmax(after))
    return {
        "scale": config.get("scale"),
        "layers": config.get("scale_layers"),
        "top_before": names.get(top_before), "top_after": names.get(top_after),
        "changed": top_before != top_after,
        "labels": [{"index": int(i), "name": names.get(int(i)), "before": _number(stored.probs[i]),
                    "after": _number(after[i])} for i in order[:CHANGE_LABELS]],
    }


def inside_json(summary: Summary, sample_id: int, url: Callable[..., str]) -> dict[str, Any]:
    """Every stored layer of the sample: feature maps with their channels' scale, filters, heads with entropy and
    box share. ``url(kind, layer, *numbers)`` builds the tile URLs."""
    sample = summary.sample(sample_id)
    if sample is None:
        raise InsideError(f"unknown sample {sample_id}")
    config = (summary.run().config or {}).get("internals") or {}
    attention = summary.attention_maps(sample_id)
    layers = []
    for layer in summary.internal_layers():
        if layer.kind == "features":
            maps = summary.feature_maps(sample_id, layer.name)
            if maps is None:
                continue
            filters = summary.filters(layer.name)
            layers.append({
                "name": layer.name, "kind": "features", "channels": layer.channels, "height": layer.height,
                "width": layer.width, "kept": int(maps.channels.size), "encoding": maps.encoding,
                "top_k": config.get("top_k"),
                "maps": [{"channel": int(c), "low": _number(lo), "high": _number(hi), "mean": _number(m),
                          "url": url("features", layer.name, sample_id, int(c))}
                         for c, lo, hi, m in zip(maps.channels, maps.low, maps.high, maps.means)],
                "filters": None if filters is None else {
                    "mode": filters.mode, "count": int(filters.display.shape[0]), "low": filters.low,
                    "high": filters.high, "size": list(filters.display.shape[1:3]),
                    "urls": [url("filters", layer.name, i) for i in range(filters.display.shape[0])]},
            })
        elif layer.name in attention:
            heads = attention[layer.name]
            coverage = box_coverage(list(sample.boxes), (sample.height, sample.width),
                                    (layer.height, layer.width))
            layers.append({
                "name": layer.name, "kind": "attention", "heads": int(heads.shape[0]), "rows": layer.height,
                "columns": layer.width, "tokens": layer.tokens,
                "head_list": [{"head": h, "entropy": entropy(heads[h]), "box_share": box_share(heads[h], coverage),
                               "url": url("attention", layer.name, sample_id, h)} for h in range(heads.shape[0])],
            })
    change = intervention_json(summary, sample_id, config)
    return {"sample_id": sample_id, "stored": bool(layers) or change is not None, "layers": layers,
            "has_boxes": bool(sample.boxes), "intervention": change, "width": sample.width, "height": sample.height,
            "boxes": [{"x": b.x, "y": b.y, "width": b.width, "height": b.height, "label_index": b.label_index}
                      for b in sample.boxes]}


def _scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    span = high - low
    return np.full(values.shape, 0.5) if span <= 0 else np.clip((values - low) / span, 0.0, 1.0)


def feature_tile(summary: Summary, sample_id: int, layer: str, channel: int) -> bytes:
    """One channel's map at its own grid, coloured between that channel's min and max (browsers enlarge it)."""
    maps = summary.feature_maps(sample_id, layer)
    if maps is None:
        raise InsideError(f"no feature maps of layer {layer[:80]!r} for sample {sample_id}")
    where = np.nonzero(maps.channels == channel)[0]
    if where.size == 0:
        raise InsideError(f"channel {channel} of layer {layer[:80]!r} is not stored for sample {sample_id}")
    i = int(where[0])
    values = _scaled(maps.maps[i], float(maps.low[i]), float(maps.high[i]))
    return encode_tile(Image.fromarray(colormaps.apply(FEATURE_CMAP, values)), lossy=False)


def filter_tile(filters: Optional[FilterView], index: int) -> bytes:
    """One filter at its kernel size: the RGB filter, or the mean over its inputs with the diverging colormap
    (zero in the middle); every filter of a layer on one common scale."""
    if filters is None:
        raise InsideError("this layer has no stored filters")
    if not 0 <= index < filters.display.shape[0]:
        raise InsideError(f"filter {index} does not exist (the layer has {filters.display.shape[0]})")
    picture = filters.display[index]
    if filters.mode == "rgb":
        values = _scaled(picture, filters.low, filters.high)
        pixels = np.rint(values * 255).astype(np.uint8)
    else:
        scale = max(abs(filters.low), abs(filters.high)) or 1.0
        pixels = colormaps.apply(colormaps.DIVERGING, 0.5 + 0.5 * picture / scale)
    return encode_tile(Image.fromarray(pixels), lossy=False)


def attention_tile(summary: Summary, sample_id: int, layer: str, head: int, size: Optional[int]) -> bytes:
    """One head's patch attention over the display image (upsampled bilinearly, inferno)."""
    heads = summary.attention_maps(sample_id).get(layer)
    if heads is None:
        raise InsideError(f"no attention of layer {layer[:80]!r} for sample {sample_id}")
    if not 0 <= head < heads.shape[0]:
        raise InsideError(f"head {head} does not exist (layer {layer[:80]!r} has {heads.shape[0]})")
    image = summary.image_data(sample_id)
    options = RenderOptions(overlay=True, alpha=0.6, cmap="inferno", sign="positive", size=size)
    return render_saliency(heads[head], image, options)
