"""The runner: explain a PyTorch image classifier over a dataset into a summary directory.

``from xaiboard.runner import ImageClassificationRunner``; explainers live in :mod:`xaiboard.runner.explainers`,
benchmarks in :mod:`xaiboard.runner.benchmarks`. Importing this package imports torch (the store and the server
never do).
"""

from .data import InvalidInputError
from .runner import ImageClassificationRunner

__all__ = ["ImageClassificationRunner", "InvalidInputError"]
