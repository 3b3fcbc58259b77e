"""The samples of a report file: chosen with the saliency browser's filters, drawn with the server's renderer.

A report is read away from any server, so every picture is inlined as a ``data:`` URI: the display image at the
report's size (in its stored format, WebP for photos) and each explainer's overlay, rendered by
:func:`xaiboard.server.render.render_saliency` exactly as the dashboard's tiles are. Filters use the browser's URL
parameters with the API's meaning, so the query of a browser link (or the whole link) selects the same samples.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import parse_qsl, urlsplit

from xaiboard.store import QueryError, Summary, codec
from xaiboard.store.views import PredictionView, SampleView

from . import params, render
from .security import ApiError

FILTER_KEYS = ("labels", "types", "truth", "unconverged", "sort", "explainers", "overlay", "alpha", "cmap", "sign")
# Browser state that only pages or opens views: accepted in a pasted link and ignored.
VIEW_KEYS = ("offset", "limit", "rl", "zoom", "zl", "lsort", "lall")
DEFAULT_SORT = "-prob"  # the saliency browser's, so a link without ``sort`` selects what its first page shows
TYPE_ORDER = ("TP", "FN", "FP", "TN")


class ExportError(ValueError):
    """A filter, explainer or option of a report is not valid for the summary (the message says which)."""


def parse_filters(texts: Sequence[str]) -> dict[str, str]:
    """``key=value&...`` queries (or whole browser links) merged into one mapping; later values win."""
    merged: dict[str, str] = {}
    for text in texts:
        query = urlsplit(text).query if "?" in text else text
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key in VIEW_KEYS:
                continue
            if key not in FILTER_KEYS:
                raise ExportError(f"unknown filter {key!r} (filters are {', '.join(FILTER_KEYS)})")
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Selection:
    """Which samples a report shows and how their maps are drawn."""

    labels: list[int]
    types: list[str]
    truth: list[int]
    unconverged: bool
    sort: str
    explainers: list[str]
    render: render.RenderOptions
    size: int

    def describe(self, names: Mapping[int, str]) -> list[str]:
        """The filters in words, for the report's header."""
        parts = []
        if self.labels:
            parts.append("labels " + ", ".join(names.get(i, str(i)) for i in self.labels))
        if self.types:
            parts.append("types " + ", ".join(self.types))
        if self.truth:
            parts.append("ground truth " + ", ".join(names.get(i, str(i)) for i in self.truth))
        if self.unconverged:
            parts.append("Integrated Gradients not converged")
        return parts

    def sort_text(self) -> str:
        """The order in words: "probability, highest first", "GradCAM's InsertionAUC, lowest first"..."""
        descending = self.sort.startswith("-")
        key = self.sort.lstrip("-")
        words = {"prob": "probability", "uncertainty": "uncertainty (sd)", "name": "name", "id": "id",
                 "delta": "Integrated Gradients' relative delta"}
        if key.startswith("score:"):
            _, explainer, metric = (key.split(":") + ["", ""])[:3]
            text = f"{explainer}'s {metric}"
        else:
            text = words.get(key, key)
        if key in ("name", "id"):
            return f"{text}, {'descending' if descending else 'ascending'}"
        return f"{text}, {'highest' if descending else 'lowest'} first"


def selection(summary: Summary, filters: Mapping[str, str], explainers: Optional[Sequence[str]] = None,
              size: int = 160) -> Selection:
    """Validate ``filters`` (the browser's URL parameters) against the summary, as the API does."""
    known = [e.name for e in summary.explainers()]
    names = summary.label_names()
    try:
        labels = params.labels(filters, names)
        truth = params.labels(filters, names, "truth")
        types = params.items(filters, "types")
        unconverged = params.flag(filters, "unconverged")
        chosen = params.choices({"explainers": ",".join(explainers)} if explainers is not None else filters,
                                "explainers", known, "explainer")
    except ApiError as error:
        raise ExportError(error.message) from None
    if explainers is None and not filters.get("explainers", "").strip():
        chosen = known
    options = {key: filters[key] for key in ("overlay", "alpha", "cmap", "sign") if key in filters}
    options.setdefault("overlay", "1")  # the browser's default: maps over the image
    options["size"] = str(size)
    try:
        drawing = render.RenderOptions.parse(options)
    except render.RenderError as error:
        raise ExportError(str(error)) from None
    return Selection(labels, types, truth, unconverged, filters.get("sort", "").strip() or DEFAULT_SORT, chosen,
                     drawing, size)


def select_samples(summary: Summary, chosen: Selection, limit: int) -> tuple[int, list[SampleView]]:
    """(how many samples match, the first ``limit`` of them in display order)."""
    index = summary.sample_index()
    try:
        total, ids = index.query(chosen.labels, chosen.types, chosen.sort, 0, limit, chosen.truth, chosen.unconverged)
    except QueryError as error:
        raise ExportError(str(error)) from None
    return total, index.views(ids)


def data_uri(data: bytes) -> str:
    return f"data:{codec.image_mimetype(data)};base64,{base64.b64encode(data).decode('ascii')}"


def shown_labels(sample: SampleView, chosen: Selection, rows: int) -> list[PredictionView]:
    """The labels that get a row of maps: first the one the browser opens a row with (the first label matching
    the filters, or the ground truth filtered for), then the others by type (TP, FN, FP, TN) and probability."""
    def matches(label: PredictionView) -> bool:
        return (not chosen.labels or label.label_index in chosen.labels) and (
            not chosen.types or label.type in chosen.types)

    candidates = [label for label in sample.labels if matches(label)]
    first = None
    if not chosen.labels and chosen.truth:
        first = next((label for label in candidates if label.label_index in chosen.truth), None)
    first = first or (candidates[0] if candidates else (sample.labels[0] if sample.labels else None))
    rest = sorted((label for label in sample.labels if label is not first),
                  key=lambda label: (not matches(label), TYPE_ORDER.index(label.type) if label.type in TYPE_ORDER
                                     else len(TYPE_ORDER), -label.prob))
    return ([first] if first is not None else []) + rest[:max(0, rows - 1)]


@dataclass
class Card:
    """One sample of the gallery, ready for the template (every image a ``data:`` URI)."""

    id: int
    name: str
    width: int
    height: int
    image: str
    labels: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    boxes: list[dict[str, Any]] = field(default_factory=list)
    bytes: int = 0


def card(summary: Summary, sample: SampleView, chosen: Selection, rows: int) -> Card:
    """Render one sample's image and the maps of its shown labels."""
    picture = summary.image_data(sample.id)
    if picture is None:
        raise ExportError(f"sample {sample.id} has no image")
    image = render.render_image(picture, chosen.size)
    spent = len(image)
    map_rows = []
    for label in shown_labels(sample, chosen, rows):
        tiles = []
        for explainer in chosen.explainers:
            if explainer not in label.explainers:
                tiles.append({"explainer": explainer, "src": None})
                continue
            relevance = summary.saliency_map(sample.id, label.label_index, explainer, full_size=True)
            tile = render.render_saliency(relevance, picture, chosen.render)
            spent += len(tile)
            tiles.append({"explainer": explainer, "src": data_uri(tile)})
        map_rows.append({"label": label, "tiles": tiles})
    boxes = [{"label_index": b.label_index, "x": b.x, "y": b.y, "width": b.width, "height": b.height}
             for b in sample.boxes]
    return Card(sample.id, sample.name, sample.width, sample.height, data_uri(image), list(sample.labels), map_rows,
                boxes, spent)
