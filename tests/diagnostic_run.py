"""A small real run with everything the diagnostics views show: two Integrated Gradients baselines (one with too
few steps to converge on some pairs, one searching for its steps), Gradient, and the curve benchmarks."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from xaiboard.runner import ImageClassificationRunner
from xaiboard.runner.benchmarks import Faithfulness
from xaiboard.runner.explainers import Gradient, IntegratedGradients

CLASSES = ["ring", "bar", "dot"]
SIZE = 32
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(4), nn.Conv2d(6, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, len(CLASSES)))


def items(count: int) -> list[dict]:
    """Normalised images of a bright square on a coloured noise background, with the square's box."""
    generator = torch.Generator().manual_seed(0)
    result = []
    for index in range(count):
        image = torch.rand(3, SIZE, SIZE, generator=generator) * 0.4
        x, y = 4 + (index * 7) % 16, 4 + (index * 5) % 16
        image[:, y:y + 10, x:x + 10] = torch.tensor([1.0, 0.8, 0.2])[:, None, None]
        normalised = (image - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        label = index % len(CLASSES)
        result.append({"image": normalised, "labels": [label], "boxes": [(float(x), float(y), 10.0, 10.0)],
                       "name": f"square_{index:02d}"})
    return result


def write_diagnostic_run(directory: Path, count: int = 6) -> Path:
    """Run the runner into ``directory`` and return it."""
    net = network()
    runner = ImageClassificationRunner(directory, network=net, data=items(count), classes=CLASSES, device="cpu",
                                       mean=MEAN, std=STD)
    explainers = [
        IntegratedGradients(net, n_steps=16, baseline="black", search_steps=64, name="IntegratedGradients[black]"),
        IntegratedGradients(net, n_steps=2, baseline="white", method="riemann_left", delta_tolerance=0.5,
                            name="IntegratedGradients[white]"),
        Gradient(net),
    ]
    runner.register_saliency(explainers, [Faithfulness("InsertionAUC", steps=12), Faithfulness("DeletionAUC"),
                                          Faithfulness("NaiveFaithfulness", steps=8)])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*convergence delta exceeds", category=UserWarning)
        runner.run(progress=False).close()
    return directory
