"""The JSON API under ``/api/v1``: summaries, samples, images, saliency overlays, scores, figures, comparisons.

Summaries are addressed by the registry's ids, never by a path, so no request parameter can name a file. Every bad
parameter is a 400 naming it, every unknown id or sample a 404, and every error a JSON ``{"error": ...}``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Optional
from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from xaiboard.store import QueryError, Summary, SummaryError, codec
from xaiboard.store.models import PREDICTION_TYPES
from xaiboard.store.views import SampleView

from . import confusion as confusion_counts
from . import comparison, figures, palette, params, render, scoring
from .cache import LruCache
from .registry import Entry, Registry
from .security import ApiError
from .urls import api_prefix

api = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_PAGE = 200
MAX_LIST = 1000
MAX_OFFSET = 10**12
MAX_ROW_ID = 2**63 - 1
MAX_COMPARE = 8
MAX_SHARED = 500
LONG_CACHE = "public, max-age=31536000, immutable"


def registry() -> Registry:
    return current_app.extensions["xaiboard.registry"]


def png_cache() -> LruCache:
    return current_app.extensions["xaiboard.png_cache"]


def json_cache() -> LruCache:
    return current_app.extensions["xaiboard.json_cache"]


def entry_of(summary_id: str) -> Entry:
    """The registry entry of an id; 404 when unknown, 409 when the summary cannot be read."""
    entry = registry().get(summary_id)
    if entry is None:
        raise ApiError(404, f"unknown summary {summary_id[:80]!r}")
    entry.refresh()
    if entry.summary is None:
        raise ApiError(409, f"summary {entry.path!r} cannot be read: {entry.error}")
    return entry


@contextmanager
def reading(entry: Entry) -> Iterator[Summary]:
    """Turn store errors into API errors: a bad query is a 400, an unreadable database a 503."""
    summary = entry.summary
    if summary is None:
        raise ApiError(409, f"summary {entry.path!r} cannot be read: {entry.error}")
    try:
        yield summary
    except QueryError as error:
        raise ApiError(400, str(error)) from None
    except (SQLAlchemyError, sqlite3.Error, SummaryError) as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
        raise ApiError(503, f"summary {entry.path!r} could not be read just now ({reason})") from None


def row_id(value: int, what: str) -> int:
    if value > MAX_ROW_ID:
        raise ApiError(404, f"unknown {what} {value}")
    return value


@lru_cache(maxsize=4096)
def _quoted(name: str) -> str:
    return quote(name, safe="")


def explainer_names(entry: Entry, summary: Summary) -> list[str]:
    return entry.memo("explainer_names", lambda: [e.name for e in summary.explainers()])


def sample_json(entry: Entry, sample: SampleView, explainers: Optional[list[str]], token: str) -> dict[str, Any]:
    """A sample with its labels and, per label, the URL of each selected explainer's map. URLs carry the
    summary's ``token``, so browsers may cache the images for good."""
    prefix = f"{api_prefix()}/summaries/{entry.id}"

    def saliency_url(label_index: int, explainer: str) -> str:
        return f"{prefix}/saliency/{sample.id}/{label_index}/{_quoted(explainer)}?v={token}"

    labels = []
    for label in sample.labels:
        names = label.explainers if explainers is None else [e for e in explainers if e in label.explainers]
        labels.append({
            "index": label.label_index,
            "name": label.name,
            "prob": label.prob,
            "type": label.type,
            "ground_truth": label.ground_truth,
            "sd": label.sd,
            "interval": [label.lower, label.upper] if label.lower is not None and label.upper is not None else None,
            "saliency": [{"explainer": name, "url": saliency_url(label.label_index, name)} for name in names],
        })
    return {
        "id": sample.id,
        "name": sample.name,
        "width": sample.width,
        "height": sample.height,
        "image_url": f"{prefix}/images/{sample.id}?v={token}",
        "labels": labels,
        "boxes": [{"label_index": b.label_index, "x": b.x, "y": b.y, "width": b.width, "height": b.height}
                  for b in sample.boxes],
    }


def png_response(data_key: tuple, entry: Entry, render_png) -> Response:
    """An image with an ETag (answering 304 when it matches) from the cache or ``render_png()``: PNG, or the
    format a stored photo has (WebP/JPEG), served with its content type."""
    etag = hashlib.sha256(repr((render.RENDER_VERSION, entry.id, entry.token, data_key)).encode()).hexdigest()[:32]
    immutable = request.args.get("v") == entry.token
    if etag in request.if_none_match:
        response = Response(status=304)
    else:
        key = (entry.id, entry.token, data_key)
        data = png_cache().get(key)
        if data is None:
            data = render_png()
            png_cache().put(key, data)
        response = Response(data, mimetype=codec.image_mimetype(data))
    response.set_etag(etag)
    response.headers["Cache-Control"] = LONG_CACHE if immutable else "no-cache"
    return response


# -- summaries ---------------------------------------------------------------------------------------------------


@api.get("")
@api.get("/")
def index() -> Response:
    """What the API offers (handy with curl)."""
    return jsonify(endpoints=[api_prefix() + endpoint for endpoint in [
        "/summaries?q=&offset=&limit=",
        "/summaries/<id>",
        "/summaries/<id>/samples?labels=&types=&truth=&unconverged=&explainers=&sort=&offset=&limit=",
        "/summaries/<id>/samples/<sample_id>",
        "/summaries/<id>/images/<sample_id>?size=",
        "/summaries/<id>/saliency/<sample_id>/<label_index>/<explainer>?overlay=&alpha=&cmap=&sign=&size=",
        "/summaries/<id>/scores?format=json|csv&weights=&download=",
        "/summaries/<id>/figures/<name>?explainer=&metric=&sort=&order=&offset=&limit=",
        "/summaries/<id>/confusion?limit=",
        "/summaries/<id>/diagnostics/<sample_id>/<label_index>",
        "/summaries/<id>/path-images/<sample_id>/<explainer>?alpha=&size=",
        "/summaries/<id>/inside/<sample_id>",
        "/summaries/<id>/inside-images/features|filters|attention/...?size=",
        "/compare?ids=&metric=&explainer=",
        "/colormaps/<name>",
    ]])


@api.get("/summaries")
def list_summaries() -> Response:
    query = request.args.get("q", "").strip().lower()
    offset = params.integer(request.args, "offset", 0, MAX_OFFSET)
    limit = params.integer(request.args, "limit", 100, MAX_LIST)
    rows = [entry.row() for entry in registry().entries()]
    if query:
        rows = [row for row in rows if query in row["name"].lower() or query in row["path"].lower()]
    return jsonify(total=len(rows), summaries=rows[offset:offset + limit], scanned_at=registry().scanned_at)


@api.get("/summaries/<summary_id>")
def summary_detail(summary_id: str) -> Response:
    entry = entry_of(summary_id)
    with reading(entry) as summary:
        detail = entry.memo("detail", lambda: _detail(entry, summary))
    return jsonify(detail)


def _detail(entry: Entry, summary: Summary) -> dict[str, Any]:
    run = summary.run()
    counts = summary.label_counts()
    timings = summary.explainer_timings()
    explainers = summary.explainers()
    colors = palette.explainer_colors([e.name for e in explainers])
    row = entry.row()
    return {
        **row,
        "task": run.task,
        "activation": run.activation,
        "threshold": run.threshold,
        "top_k": run.top_k,
        "uncertainty": run.uncertainty,
        "image_size": [run.image_height, run.image_width],
        "model": {"class": run.model_class, "num_parameters": run.num_parameters, "device": run.device},
        "versions": run.versions,
        "config": run.config,
        "labels": [{"index": label.index, "name": label.name,
                    "counts": counts.get(label.index, {t: 0 for t in PREDICTION_TYPES})}
                   for label in summary.labels()],
        "explainers": [{"name": e.name, "config": e.config, "color": colors[e.name],
                        **timings.get(e.name, {"seconds": None, "delta": None, "count": 0})}
                       for e in explainers],
        "metrics": [{"name": m.name, "higher_is_better": m.higher_is_better, "range": list(m.range),
                     "aggregation": m.aggregation, "config": m.config} for m in summary.metrics()],
        "types": list(PREDICTION_TYPES),
        "counts": summary.counts(),
        "failures": [{"sample_id": f.sample_id, "stage": f.stage, "message": f.message}
                     for f in summary.failures(limit=50)],
    }


# -- samples -----------------------------------------------------------------------------------------------------


@api.get("/summaries/<summary_id>/samples")
def list_samples(summary_id: str) -> Response:
    entry = entry_of(summary_id)
    with reading(entry) as summary:
        labels = params.labels(request.args, summary.label_names())
        truth = params.labels(request.args, summary.label_names(), "truth")
        types = params.items(request.args, "types")
        explainers = params.choices(request.args, "explainers", explainer_names(entry, summary), "explainer")
        if "explainers" not in request.args:
            explainers = None
        sort = request.args.get("sort", "id").strip() or "id"
        offset = params.integer(request.args, "offset", 0, MAX_OFFSET)
        limit = params.integer(request.args, "limit", 20, MAX_PAGE)
        unconverged = params.flag(request.args, "unconverged")
        index = summary.sample_index()
        total, ids = index.query(labels, types, sort, offset, limit, truth, unconverged)
        token = entry.token
        # A sample's JSON is the same in every page it appears in (for one version of the file and one choice
        # of explainers), so pages re-use it: paging, re-sorting and polling only assemble text.
        shown = None if explainers is None else tuple(explainers)
        cache = json_cache()
        keys = [(entry.id, token, index.version, shown, sample_id) for sample_id in ids]
        parts = [cache.get(key) for key in keys]
        missing = [sample_id for sample_id, part in zip(ids, parts) if part is None]
        if missing:
            made = {view.id: json.dumps(sample_json(entry, view, explainers, token), ensure_ascii=False,
                                        separators=(",", ":"))
                    for view in index.views(missing)}
            for i, (key, sample_id) in enumerate(zip(keys, ids)):
                if parts[i] is None:
                    parts[i] = made[sample_id]
                    cache.put(key, parts[i])
    body = f'{{"total":{total},"offset":{offset},"limit":{limit},"samples":[{",".join(parts)}]}}\n'
    return Response(body, mimetype="application/json")


@api.get("/summaries/<summary_id>/samples/<int:sample_id>")
def one_sample(summary_id: str, sample_id: int) -> Response:
    entry = entry_of(summary_id)
    row_id(sample_id, "sample")
    with reading(entry) as summary:
        explainers = None
        if "explainers" in request.args:
            explainers = params.choices(request.args, "explainers", explainer_names(entry, summary), "explainer")
        sample = summary.sample(sample_id)
        if sample is None:
            raise ApiError(404, f"unknown sample {sample_id} in summary {entry.path!r}")
        return jsonify(sample_json(entry, sample, explainers, entry.token))


@api.get("/summaries/<summary_id>/images/<int:sample_id>")
def image(summary_id: str, sample_id: int) -> Response:
    entry = entry_of(summary_id)
    row_id(sample_id, "sample")
    size_args = {"size": request.args.get("size", "")}
    try:
        size = render.RenderOptions.parse(size_args).size
    except render.RenderError as error:
        raise ApiError(400, str(error)) from None

    def draw() -> bytes:
        with reading(entry) as summary:
            data = summary.image_data(sample_id)
        if data is None:
            raise ApiError(404, f"unknown sample {sample_id} in summary {entry.path!r}")
        return render.render_image(data, size)

    return png_response(("image", sample_id, size), entry, draw)


@api.get("/summaries/<summary_id>/saliency/<int:sample_id>/<int:label_index>/<path:explainer>")
def saliency(summary_id: str, sample_id: int, label_index: int, explainer: str) -> Response:
    entry = entry_of(summary_id)
    row_id(sample_id, "sample")
    row_id(label_index, "label")
    try:
        options = render.RenderOptions.parse(request.args)
    except render.RenderError as error:
        raise ApiError(400, str(error)) from None

    def draw() -> bytes:
        with reading(entry) as summary:
            try:
                # At the image's size (a Grad-CAM map is stored at its layer's grid): as it was scored, and as
                # overlays and heatmaps are shown.
                relevance = summary.saliency_map(sample_id, label_index, explainer, full_size=True)
            except QueryError:
                raise ApiError(404, f"unknown explainer {explainer[:60]!r} in summary {entry.path!r}") from None
            if relevance is None:
                raise ApiError(404, f"no {explainer[:60]} map for sample {sample_id}, label {label_index}")
            picture = summary.image_data(sample_id)  # the overlay's base, and its kind of encoding
        return render.render_saliency(relevance, picture, options)

    return png_response(("saliency", sample_id, label_index, explainer, options.key()), entry, draw)


@api.get("/colormaps/<name>")
def colormap(name: str) -> Response:
    try:
        data = render.colorbar(name)
    except render.RenderError as error:
        raise ApiError(404, str(error)) from None
    response = Response(data, mimetype="image/png")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


# -- scores, figures, comparison ---------------------------------------------------------------------------------


def _table(entry: Entry, summary: Summary) -> dict[str, Any]:
    return entry.memo("scores", lambda: scoring.score_table(summary))


@api.get("/summaries/<summary_id>/scores")
def scores(summary_id: str) -> Response:
    entry = entry_of(summary_id)
    with reading(entry) as summary:
        table = _table(entry, summary)
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiError(400, f"format must be json or csv, got {fmt[:20]!r}")
    weights = params.weights(request.args, [m["name"] for m in table["metrics"]])
    download = request.args.get("download", "0") in ("1", "true", "yes")
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in entry.row()["name"])[:80] or "summary"
    if fmt == "csv":
        response = Response(scoring.table_csv(table, weights), mimetype="text/csv")
        response.headers["Content-Disposition"] = f'attachment; filename="{stem}-scores.csv"'
        return response
    response = jsonify({**table, "comprehensive": scoring.comprehensive_scores(table, weights)})
    if download:
        response.headers["Content-Disposition"] = f'attachment; filename="{stem}-scores.json"'
    return response


@api.get("/summaries/<summary_id>/figures/<name>")
def figure(summary_id: str, name: str) -> Response:
    entry = entry_of(summary_id)
    if name not in figures.NAMES:
        raise ApiError(404, f"unknown figure {name[:60]!r} (figures are {', '.join(figures.NAMES)})")
    with reading(entry) as summary:
        table = _table(entry, summary)
    key = ("figure", *figures.cache_key(name, request.args))
    return jsonify(entry.memo(key, lambda: figures.build(name, table, request.args)))


@api.get("/summaries/<summary_id>/confusion")
def confusion(summary_id: str) -> Response:
    """Ground truth against top-1 predictions (single-label runs); ``limit`` caps the matrix's classes."""
    entry = entry_of(summary_id)
    limit = params.integer(request.args, "limit", confusion_counts.DEFAULT_CLASSES, confusion_counts.MAX_CLASSES)
    with reading(entry) as summary:
        detail = entry.memo("detail", lambda: _detail(entry, summary))
        data = entry.memo(("confusion", limit),
                          lambda: confusion_counts.confusion(summary, detail["task"], max(1, limit)))
    return jsonify(data)


@api.get("/compare")
def compare() -> Response:
    """Runs side by side: their differences, jointly normalised scores, matched classes and shared samples
    (``metric=`` and ``explainer=`` choose the per-class rows)."""
    ids = params.items(request.args, "ids")
    if not ids:
        raise ApiError(400, "ids must list at least one summary id, e.g. ?ids=a,b")
    if len(ids) > MAX_COMPARE:
        raise ApiError(400, f"compare at most {MAX_COMPARE} summaries at once, got {len(ids)}")
    entries = [entry_of(summary_id) for summary_id in ids]
    runs = []
    for entry in entries:
        with reading(entry) as summary:
            table = _table(entry, summary)
            names = entry.memo("sample_names", summary.sample_names)
            runs.append(entry.memo(("compare", "run"), lambda: comparison.read_run(entry.row(), table, names,
                                                                                   summary)))
    return jsonify(comparison.compare(runs, request.args.get("metric"), request.args.get("explainer"),
                                      max_shared=MAX_SHARED))
