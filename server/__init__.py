"""The dashboard server: Flask app factory, JSON API, pages and overlay rendering. Never imports torch.

``create_app`` is imported on first use so that ``xaiboard ls`` does not pay for Flask.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
