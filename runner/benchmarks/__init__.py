"""Benchmarks that score saliency maps: faithfulness, localization, robustness, class sensitivity, sparseness and
model parameter randomisation. Each one works on tensors on its own (``bench.evaluate(...)``) and inside the runner."""

from .base import Benchmark
from .class_sensitivity import ClassSensitivity
from .faithfulness import Faithfulness
from .localization import Localization
from .randomization import Randomization
from .robustness import Robustness
from .sparseness import Sparseness

__all__ = [
    "Benchmark",
    "Faithfulness",
    "Localization",
    "Robustness",
    "ClassSensitivity",
    "Sparseness",
    "Randomization",
]
