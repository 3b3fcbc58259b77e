"""Small CNNs for the demo and the benchmarks, and a deterministic training loop that fits them in seconds on a CPU.

Every non-linearity is its own ``nn.ReLU`` module (never reused, never functional) so that DeepLift, guided
backpropagation and deconvolution see each of them; each network has dropout before its classifier so MC-dropout
uncertainty works.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional

import torch
from torch import Tensor, nn


def _block(prefix: str, channels_in: int, channels_out: int, pool: bool) -> list[tuple[str, nn.Module]]:
    layers = [
        (f"conv{prefix}", nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)),
        (f"bn{prefix}", nn.BatchNorm2d(channels_out)),
        (f"relu{prefix}", nn.ReLU()),
    ]
    if pool:
        layers.append((f"pool{prefix}", nn.MaxPool2d(2)))
    return layers


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks (BatchNorm, ReLU; max-pooling after the first two), global average pooling, dropout
    and a linear classifier. Grad-CAM's natural layer is ``features.conv3``."""

    gradcam_layer = "features.conv3"

    def __init__(self, num_classes: int, channels: int = 1, width: int = 16, dropout: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            _block("1", channels, width, pool=True)
            + _block("2", width, 2 * width, pool=True)
            + _block("3", 2 * width, 4 * width, pool=False)
        ))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.pool(self.features(x)).flatten(1)))


class BasicBlock(nn.Module):
    """A ResNet basic block (two 3x3 convs with BatchNorm and a shortcut), with its own ReLU modules."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(channels_out))
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class ResNetLike(nn.Module):
    """A small ResNet (a stem and four stages of basic blocks, 64x64 inputs in mind); Grad-CAM layer ``layer4``."""

    gradcam_layer = "layer4"

    def __init__(self, num_classes: int, channels: int = 3, width: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.layer3 = BasicBlock(2 * width, 4 * width, stride=2)
        self.layer4 = BasicBlock(4 * width, 8 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.dropout(self.pool(x).flatten(1)))


def train_classifier(
    network: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    epochs: int,
    loss: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> nn.Module:
    """Adam with a one-cycle schedule over shuffled mini-batches; the shuffling is seeded, so a seed gives the
    same weights (on the same device and thread count). Leaves the network in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    loss = loss or nn.functional.cross_entropy
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    steps = epochs * ((len(inputs) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    network.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), batch_size):
            index = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss(network(inputs[index]), targets[index]).backward()
            optimizer.step()
            schedule.step()
    return network.eval()
