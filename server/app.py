"""The Flask app factory: ``create_app(base_dir)`` wires the registry, the API, the pages and the security hooks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

from flask import Flask, Response, request

import xaiboard.frontend
from xaiboard import __version__

from . import auth, compression, security, urls
from .api import api
from .diagnostics_api import diagnostics_api
from .inside_api import inside_api
from .pages import pages, plotly_url
from .registry import Registry
from .cache import LruCache

FRONTEND = Path(xaiboard.frontend.__file__).parent


def _asset_versions(static: Path) -> dict[str, str]:
    """A short content hash per static file, appended to its URL so browsers refetch it after an upgrade."""
    versions = {}
    for path in static.rglob("*"):
        if path.is_file():
            versions[path.relative_to(static).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return versions


def create_app(
    base_dir: str | Path,
    reload_interval: float = 5.0,
    *,
    trusted_hosts: Optional[Sequence[str]] = None,
    cache_bytes: int = 64 * 1024 * 1024,
    token: Optional[str] = None,
    base_url: Optional[str] = None,
) -> Flask:
    """A dashboard over every summary directory below ``base_dir``, opened read-only.

    The directory is scanned once now and then every ``reload_interval`` seconds in a background thread
    (0 disables re-scanning). ``trusted_hosts`` restricts the ``Host`` header (e.g. to ``localhost`` names, so a
    DNS-rebinding page cannot read a dashboard bound to the loopback address). ``token`` requires that token on
    every page and API route (:mod:`.auth`); ``base_url`` (e.g. ``"/xai/"``) serves everything below that path,
    for a reverse proxy that forwards it unchanged (:mod:`.urls`).
    """
    app = Flask("xaiboard.server", template_folder=str(FRONTEND / "templates"),
                static_folder=str(FRONTEND / "static"), static_url_path="/static")
    app.config.update(
        JSON_SORT_KEYS=False,
        SEND_FILE_MAX_AGE_DEFAULT=0,
        MAX_CONTENT_LENGTH=64 * 1024,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    if trusted_hosts:
        app.config["TRUSTED_HOSTS"] = list(trusted_hosts)
    urls.install(app, base_url)  # first, so that a bad base URL or token fails before the registry starts
    auth.install(app, token)

    registry = Registry(base_dir, reload_interval=reload_interval)
    registry.scan()
    registry.start()
    app.extensions["xaiboard.registry"] = registry
    app.extensions["xaiboard.png_cache"] = LruCache(cache_bytes)
    app.extensions["xaiboard.json_cache"] = LruCache(cache_bytes // 4)

    versions = _asset_versions(FRONTEND / "static")

    def asset(path: str) -> str:
        return f"{request.script_root}/static/{path}?v={versions.get(path, __version__)}"

    app.jinja_env.globals.update(asset=asset, version=__version__, base_dir_name=registry.base_dir.name,
                                 plotly_url=lambda: request.script_root + plotly_url())
    security.install(app)
    compression.install(app)

    @app.after_request
    def cache_versioned_assets(response: Response) -> Response:
        # asset() URLs carry the file's content hash: a browser may keep them until the hash changes
        if request.endpoint == "static" and request.args.get("v") == versions.get(request.view_args.get("filename", "")):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    app.register_blueprint(api)
    app.register_blueprint(diagnostics_api)
    app.register_blueprint(inside_api)
    app.register_blueprint(pages)
    return app
