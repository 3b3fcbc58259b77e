"""Tiny networks for the tests that need torch (runner, explainers): seconds on a CPU, real conv layers."""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
from torch import nn


class TinyNet(nn.Module):
    """Two conv layers (``features.conv1``/``features.conv2``), optional BatchNorm and dropout, a linear head."""

    def __init__(self, channels: int = 3, classes: int = 4, batchnorm: bool = True,
                 dropout: Optional[float] = 0.25) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = [("conv1", nn.Conv2d(channels, 6, 3, padding=1))]
        if batchnorm:
            layers.append(("bn1", nn.BatchNorm2d(6)))
        layers += [("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)), ("conv2", nn.Conv2d(6, 8, 3, padding=1)),
                   ("relu2", nn.ReLU())]
        self.features = nn.Sequential(OrderedDict(layers))
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.dropout = nn.Dropout(dropout) if dropout is not None else nn.Identity()
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(self.features(x)).flatten(1)))
