"""The HTML pages: the summary list, the saliency browser, the evaluation page and the comparison page.

Pages are thin Jinja shells; their ES modules fetch everything from the JSON API, so a page's full state lives in
its URL query and the same link shows a colleague the same view.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from flask import Blueprint, Response, abort, render_template, request

from . import compression
from .api import entry_of

pages = Blueprint("pages", __name__)


@pages.get("/")
def summary_list() -> str:
    return render_template("index.html", page="list")


@pages.get("/s/<summary_id>")
def browser(summary_id: str) -> str:
    entry = entry_of(summary_id)
    return render_template("browser.html", page="browser", entry=entry, row=entry.row())


@pages.get("/s/<summary_id>/scores")
def scores(summary_id: str) -> str:
    entry = entry_of(summary_id)
    return render_template("scores.html", page="scores", entry=entry, row=entry.row())


@pages.get("/compare")
def compare() -> str:
    return render_template("compare.html", page="compare")


def plotly_js_path() -> Path | None:
    """plotly.js as bundled in the installed ``plotly`` Python package (found without importing plotly)."""
    spec = importlib.util.find_spec("plotly")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "package_data" / "plotly.min.js"
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=1)
def plotly_version() -> str:
    """The installed plotly's version (from its metadata, without importing it): the bundle's cache-busting tag."""
    try:
        return metadata.version("plotly")
    except metadata.PackageNotFoundError:
        return "missing"


def plotly_url() -> str:
    return f"/vendor/plotly.min.js?v={plotly_version()}"


@pages.get("/vendor/plotly.min.js")
def plotly_js() -> Response:
    """The bundle, compressed once; cached for good under its versioned URL (:func:`plotly_url`)."""
    path = plotly_js_path()
    if path is None:
        abort(404, "plotly.min.js is not installed (pip install plotly)")
    response = compression.precompressed(path, request, "text/javascript")
    etag = f"plotly-{plotly_version()}-{response.headers.get('Content-Encoding', 'identity')}"
    response.set_etag(etag)
    if request.args.get("v") == plotly_version():
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        response.headers["Cache-Control"] = "public, max-age=3600"
    return response.make_conditional(request)
