"""API routes of a pair's diagnostics: the JSON behind the zoom view's Integrated Gradients and Faithfulness curves
panels, and the images along Integrated Gradients' path."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request

from xaiboard.store import QueryError, Summary

from . import diagnostics, palette, path_images, render
from .api import entry_of, png_response, reading, row_id
from .registry import Entry
from .security import ApiError
from .urls import api_prefix

diagnostics_api = Blueprint("diagnostics_api", __name__, url_prefix="/api/v1")


def explainer_configs(entry: Entry, summary: Summary) -> dict[str, dict[str, Any]]:
    """Each explainer's stored configuration by name, read once per version of the database file."""
    return entry.memo("explainer_configs", lambda: {e.name: e.config for e in summary.explainers()})


@diagnostics_api.get("/summaries/<summary_id>/diagnostics/<int:sample_id>/<int:label_index>")
def pair_diagnostics(summary_id: str, sample_id: int, label_index: int) -> Response:
    entry = entry_of(summary_id)
    row_id(sample_id, "sample")
    row_id(label_index, "label")
    prefix = f"{api_prefix()}/summaries/{entry.id}/path-images/{sample_id}"

    def image_url(explainer: str, alpha: float) -> str:
        return f"{prefix}/{quote(explainer, safe='')}?alpha={alpha:g}&size=128&v={entry.token}"

    with reading(entry) as summary:
        if summary.sample(sample_id) is None:
            raise ApiError(404, f"unknown sample {sample_id} in summary {entry.path!r}")
        configs = explainer_configs(entry, summary)
        colors = entry.memo("explainer_colors", lambda: palette.explainer_colors(list(configs)))
        body = {
            "sample_id": sample_id,
            "label_index": label_index,
            "label": summary.label_names().get(label_index),
            "stored": summary.has_diagnostics,
            "integrated_gradients": diagnostics.path_json(summary, sample_id, label_index, configs, colors,
                                                          image_url),
            "curves": diagnostics.curves_json(summary, sample_id, label_index, configs, colors),
        }
    return jsonify(body)


@diagnostics_api.get("/summaries/<summary_id>/path-images/<int:sample_id>/<path:explainer>")
def path_image(summary_id: str, sample_id: int, explainer: str) -> Response:
    entry = entry_of(summary_id)
    row_id(sample_id, "sample")
    try:
        alpha = float(request.args.get("alpha", ""))
    except ValueError:
        raise ApiError(400, "alpha must be a number from 0 to 1") from None
    if not 0.0 <= alpha <= 1.0:
        raise ApiError(400, "alpha must be a number from 0 to 1")
    try:
        size = render.RenderOptions.parse({"size": request.args.get("size", "")}).size
    except render.RenderError as error:
        raise ApiError(400, str(error)) from None

    def draw() -> bytes:
        with reading(entry) as summary:
            configs = explainer_configs(entry, summary)
            if explainer not in configs:
                raise QueryError(f"unknown explainer {explainer[:60]!r}")
            data = summary.image_data(sample_id)
            run_config = summary.run().config
        if data is None:
            raise ApiError(404, f"unknown sample {sample_id} in summary {entry.path!r}")
        try:
            return path_images.render_path_image(data, alpha, configs[explainer], run_config, size)
        except path_images.PathImageError as error:
            raise ApiError(404, str(error)) from None

    return png_response(("path", sample_id, explainer, alpha, size), entry, draw)
