"""API routes of the zoom view's "Inside" panel: the JSON of a sample's feature maps, filters, attention heads and
intervention, and the tiles drawn from those stored arrays."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request

from . import inside, render
from .api import entry_of, png_response, reading, row_id
from .diagnostics_api import explainer_configs
from .security import ApiError
from .urls import api_prefix

inside_api = Blueprint("inside_api", __name__, url_prefix="/api/v1")

#: explainer classes whose maps the panel shows beside the heads (class-agnostic, so any label's map will do)
ROLLOUT_CLASSES = frozenset({"AttentionRollout"})


@inside_api.get("/summaries/<summary_id>/inside/<int:sample_id>")
def sample_inside(summary_id: str, sample_id: int) -> Response:
    entry = entry_of(summary_id)
    row_id(sample_id, "sample")
    prefix = f"{api_prefix()}/summaries/{entry.id}"

    def url(kind: str, layer: str, *numbers: int) -> str:
        path = "/".join(str(n) for n in numbers)
        return f"{prefix}/inside-images/{kind}/{path}/{quote(layer, safe='')}?v={entry.token}"

    with reading(entry) as summary:
        try:
            body = inside.inside_json(summary, sample_id, url)
        except inside.InsideError as error:
            raise ApiError(404, str(error)) from None
        configs = explainer_configs(entry, summary)
        sample = summary.sample(sample_id)
        explained = [label for label in sample.labels if label.explainers]
        body["rollout"] = [
            {"explainer": name, "url": f"{prefix}/saliency/{sample_id}/{explained[0].label_index}/"
                                       f"{quote(name, safe='')}?v={entry.token}"}
            for name, config in configs.items()
            if config.get("class") in ROLLOUT_CLASSES and explained and name in explained[0].explainers]
    return jsonify(body)


def _size() -> Any:
    try:
        return render.RenderOptions.parse({"size": request.args.get("size", "")}).size
    except render.RenderError as error:
        raise ApiError(400, str(error)) from None


def _tile(entry: Any, key: tuple, draw: Any) -> Response:
    def guarded() -> bytes:
        with reading(entry) as summary:
            try:
                return draw(summary)
            except inside.InsideError as error:
                raise ApiError(404, str(error)) from None

    return png_response(key, entry, guarded)


@inside_api.get("/summaries/<summary_id>/inside-images/features/<int:sample_id>/<int:channel>/<path:layer>")
def feature_image(summary_id: str, sample_id: int, channel: int, layer: str) -> Response:
    entry = entry_of(summary_id)
    row_id(sample_id, "sample")
    return _tile(entry, ("features", sample_id, layer, channel),
                 lambda summary: inside.feature_tile(summary, sample_id, layer, channel))


@inside_api.get("/summaries/<summary_id>/inside-images/filters/<int:index>/<path:layer>")
def filter_image(summary_id: str, index: int, layer: str) -> Response:
    entry = entry_of(summary_id)
    return _tile(entry, ("filters", layer, index), lambda summary: inside.filter_tile(summary.filters(layer), index))


@inside_api.get("/summaries/<summary_id>/inside-images/attention/<int:sample_id>/<int:head>/<path:layer>")
def attention_image(summary_id: str, sample_id: int, head: int, layer: str) -> Response:
    entry = entry_of(summary_id)
    row_id(sample_id, "sample")
    size = _size()
    return _tile(entry, ("attention", sample_id, layer, head, size),
                 lambda summary: inside.attention_tile(summary, sample_id, layer, head, size))
