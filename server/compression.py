"""Compressed text responses: JSON, HTML, CSS and JS go out with zstd, brotli or gzip (Flask-Compress picks what
the browser accepts), and plotly.js (4.8 MB) is compressed once per process at a high level and kept in memory, so
the evaluation page does not pay for compressing it on every visit."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import brotli
from flask import Flask, Request, Response
from flask_compress import Compress

_lock = threading.Lock()
_compressed: dict[tuple[Path, str], bytes] = {}


def install(app: Flask) -> None:
    """Compress every text response above 500 bytes (images, already compressed, are left alone)."""
    app.config.setdefault("COMPRESS_MIN_SIZE", 500)
    Compress(app)


def _encoding(request: Request) -> str | None:
    accepted = request.headers.get("Accept-Encoding", "").lower()
    names = {part.split(";")[0].strip() for part in accepted.split(",")}
    return "br" if "br" in names else "gzip" if "gzip" in names else None


def precompressed(path: Path, request: Request, mimetype: str) -> Response:
    """The file's bytes, brotli- or gzip-compressed once (or as they are when the browser accepts neither)."""
    encoding = _encoding(request)
    key = (path, encoding or "identity")
    with _lock:
        body = _compressed.get(key)
        if body is None:
            data = path.read_bytes()
            if encoding == "br":
                body = brotli.compress(data, quality=9)  # 0.6 s once; 11 would take 10 s for 10% less
            elif encoding == "gzip":
                body = gzip.compress(data, 9)
            else:
                body = data
            _compressed[key] = body
    response = Response(body, mimetype=mimetype)
    if encoding:
        response.headers["Content-Encoding"] = encoding
    response.headers["Vary"] = "Accept-Encoding"
    return response
