"""The runner: explain a PyTorch image classifier over a dataset into a summary directory.

``from xaiboard.runner import ImageClassificationRunner``; explainers live in :mod:`xaiboard.runner.explainers`,
benchmarks in :mod:`xaiboard.runner.benchmarks`. The names are imported on first use, so that an application (the
demo, the benchmark script) can configure the process before torch loads.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ImageClassificationRunner", "InvalidInputError"]


def __getattr__(name: str) -> Any:
    if name == "ImageClassificationRunner":
        from .runner import ImageClassificationRunner

        return ImageClassificationRunner
    if name == "InvalidInputError":
        from .data import InvalidInputError

        return InvalidInputError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
