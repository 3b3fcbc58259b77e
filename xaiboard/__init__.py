"""xaiboard: explanations and benchmark scores for PyTorch image classifiers, browsed in a web dashboard."""

__version__ = "0.1.0"
