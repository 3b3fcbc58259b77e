"""Reference inputs for path methods (IntegratedGradients, DeepLift): zero, blurred, uniform noise or a tensor."""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

BASELINES = ("zero", "blur", "uniform")
Baseline = Union[str, float, Tensor]


def check_baseline(baseline: Baseline) -> None:
    if isinstance(baseline, str) and baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, a number or a tensor, got {baseline!r}")
    if not isinstance(baseline, (str, int, float, Tensor)):
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, a number or a tensor, "
                         f"got {type(baseline).__name__}")


def gaussian_blur(inputs: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of N x C x H x W inputs (reflect padding), per channel."""
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, inputs.shape[-1] - 1, inputs.shape[-2] - 1) if min(inputs.shape[-2:]) > 1 else 0
    if radius == 0:
        return inputs.clone()
    offsets = torch.arange(-radius, radius + 1, dtype=inputs.dtype, device=inputs.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = inputs.shape[1]
    padded = F.pad(inputs, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def make_baseline(baseline: Baseline, inputs: Tensor, blur_sigma: Optional[float], seed: int) -> Tensor | float:
    """The baseline for a chunk of inputs: 0, a blurred copy (sigma in pixels, default a tenth of the image size),
    uniform noise between each image's min and max (seeded), or a given C x H x W / N x C x H x W tensor."""
    if isinstance(baseline, Tensor):
        value = baseline.to(device=inputs.device, dtype=inputs.dtype)
        if value.dim() == 3:
            value = value.unsqueeze(0)
        return value.expand_as(inputs) if value.shape[0] == 1 else value
    if isinstance(baseline, (int, float)):
        return float(baseline)
    if baseline == "zero":
        return 0.0
    if baseline == "blur":
        sigma = blur_sigma if blur_sigma is not None else max(inputs.shape[-2:]) / 10
        return gaussian_blur(inputs, sigma)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(inputs.shape, generator=generator, dtype=inputs.dtype).to(inputs.device)
    low = inputs.flatten(1).amin(1).view(-1, 1, 1, 1)
    high = inputs.flatten(1).amax(1).view(-1, 1, 1, 1)
    return low + noise * (high - low)
