"""Security headers on every response and error responses that never show a stack trace.

Whether or not a token guards it (:mod:`.auth`), the dashboard must not be framed, must not run inline script, and
must not leak what it serves (or its token) to other sites. Errors under ``/api`` are JSON ``{"error": "..."}``;
page errors are a small HTML page.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError, SecurityError

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    # plotly.js sets styles on the SVG it draws; styles cannot run code.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class ApiError(Exception):
    """An error the API answers with ``{"error": message}`` and an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def error_response(status: int, message: str) -> Response:
    response = None
    if not _wants_json():
        try:
            response = Response(render_template("error.html", status=status, message=message), mimetype="text/html")
        except Exception:  # noqa: BLE001 - fall back to JSON rather than fail while reporting a failure
            log.exception("cannot render the error page")
    if response is None:
        response = jsonify(error=message)
    response.status_code = status
    return response


def install(app: Flask) -> None:
    """Register the header hook and the error handlers on ``app``."""

    @app.after_request
    def add_headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if response.mimetype == "application/json" and "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-cache"
        return response

    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return error_response(error.status, error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        if isinstance(error, InternalServerError):
            return error_response(500, "internal error (the server log has the details)")
        message = error.description or error.name
        if isinstance(error, SecurityError) and "trusted" in message:
            message += (" The dashboard listens on the loopback address and only answers to localhost names (so that "
                        "other web pages cannot read it); open it as http://localhost:PORT/ or serve it with "
                        "--host 0.0.0.0, which then requires a token.")
        response = error_response(error.code or 500, message)
        if error.code == 405 and error.response is None:
            allowed = getattr(error, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s", request.path)
        return error_response(500, "internal error (the server log has the details)")
