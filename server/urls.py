"""Serving the dashboard under a path prefix (``--base-url /xai/``) for a reverse proxy that forwards ``/xai/...``
unchanged.

A WSGI middleware moves the prefix from ``PATH_INFO`` to ``SCRIPT_NAME``, so Flask routes see the paths they
declare and ``request.script_root`` is the prefix. Templates build links from ``root``, the JS from the page's
``<meta name="xaiboard-root">``, and API responses from :func:`api_prefix`.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl

from flask import Flask, request

_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=@-]+$")  # a path segment's characters, but ':' and escapes


class BaseUrlError(ValueError):
    """A ``base_url`` that is not a plain absolute path."""


def normalize_base_url(base_url: str | None) -> str:
    """``"/xai/"``, ``"xai"`` and ``"/xai"`` all become ``"/xai"``; ``None``, ``""`` and ``"/"`` become ``""``."""
    text = (base_url or "").strip()
    segments = [segment for segment in text.split("/") if segment]
    for segment in segments:
        if segment in (".", "..") or not _SEGMENT.match(segment):
            raise BaseUrlError(f"base URL must be a path such as /xai/, got {base_url!r}")
    return "".join(f"/{segment}" for segment in segments)


def root() -> str:
    """The dashboard's root path in this request: ``"/"``, or the prefix with a trailing slash (``"/xai/"``)."""
    return request.script_root + "/"


def api_prefix() -> str:
    """The JSON API's path in this request (``"/api/v1"`` or ``"/xai/api/v1"``): the start of every URL that an
    API response hands out."""
    return request.script_root + "/api/v1"


def _names_a_token(query: str) -> bool:
    from .auth import TOKEN_PARAM  # auth builds its addresses from this module

    return any(key == TOKEN_PARAM for key, _ in parse_qsl(query, keep_blank_values=True))


class PrefixMiddleware:
    """Answer only below ``prefix``: ``/xai/s/1`` reaches the app as ``SCRIPT_NAME=/xai``, ``PATH_INFO=/s/1``;
    ``/xai`` redirects to ``/xai/`` (or is answered as ``/xai/`` when it carries a token); any other path is a 404
    that names the prefix."""

    def __init__(self, app: Callable[..., Iterable[bytes]], prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if path == self.prefix:
            query = environ.get("QUERY_STRING", "")
            if not _names_a_token(query):
                location = environ.get("SCRIPT_NAME", "") + self.prefix + "/" + (f"?{query}" if query else "")
                start_response("308 Permanent Redirect", [("Location", location), ("Content-Length", "0")])
                return [b""]
            # a ?token= link: a redirect would repeat the token in its Location header, so the root answers in
            # place (and the token check sends the browser on to the address without it)
            path = self.prefix + "/"
        if not path.startswith(self.prefix + "/"):
            body = f"not found: this dashboard is served under {self.prefix}/\n".encode()
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(body))),
                                             ("X-Content-Type-Options", "nosniff")])
            return [body]
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.prefix
        environ["PATH_INFO"] = path[len(self.prefix):]
        return self.app(environ, start_response)


def install(app: Flask, base_url: str | None) -> str:
    """Serve ``app`` under ``base_url`` (nothing to do for ``""`` or ``"/"``) and give templates ``root``;
    returns the normalised prefix."""
    prefix = normalize_base_url(base_url)
    if prefix:
        app.wsgi_app = PrefixMiddleware(app.wsgi_app, prefix)  # type: ignore[method-assign]
    app.config["XAIBOARD_BASE_URL"] = prefix

    @app.context_processor
    def add_root() -> dict[str, str]:
        return {"root": root()}

    return prefix
