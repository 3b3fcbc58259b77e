"""Reference inputs for path methods (IntegratedGradients, DeepLift): zero, black, white, blurred, uniform noise or a
tensor.

``"zero"`` is zero in the network's input space (the mean colour when the inputs are normalised); ``"black"`` and
``"white"`` are the darkest and brightest pixel, placed in the input space with the inputs' normalisation
``mean``/``std`` (0 and 1 without one); ``"uniform"`` is one fixed noise image per seed (numpy's generator, so the
dashboard draws the same image), scaled between each input's min and max.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

BASELINES = ("zero", "black", "white", "blur", "uniform")
#: baselines whose value depends on the inputs' normalisation
NORMALISED_BASELINES = ("black", "white")
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


def uniform_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The ``"uniform"`` baseline's noise image in [0, 1) for a seed (the same for every input of that shape)."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def make_baseline(baseline: Baseline, inputs: Tensor, blur_sigma: Optional[float], seed: int,
                  mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> Tensor | float:
    """The baseline for a chunk of inputs: 0, black or white (through ``mean``/``std`` when given), a blurred copy
    (sigma in pixels, default a tenth of the image size), uniform noise between each image's min and max (seeded),
    or a given C x H x W / N x C x H x W tensor."""
    if isinstance(baseline, Tensor):
        value = baseline.to(device=inputs.device, dtype=inputs.dtype)
        if value.dim() == 3:
            value = value.unsqueeze(0)
        return value.expand_as(inputs) if value.shape[0] == 1 else value
    if isinstance(baseline, (int, float)):
        return float(baseline)
    if baseline == "zero":
        return 0.0
    if baseline in NORMALISED_BASELINES:
        pixel = 0.0 if baseline == "black" else 1.0
        if mean is None or std is None:
            return pixel
        channels = inputs.shape[1]
        shift = torch.as_tensor(mean, dtype=inputs.dtype, device=inputs.device).reshape(-1)
        scale = torch.as_tensor(std, dtype=inputs.dtype, device=inputs.device).reshape(-1)
        value = ((pixel - shift) / scale).expand(channels) if shift.numel() == 1 else (pixel - shift) / scale
        return value.view(1, channels, 1, 1).expand_as(inputs)
    if baseline == "blur":
        sigma = blur_sigma if blur_sigma is not None else max(inputs.shape[-2:]) / 10
        return gaussian_blur(inputs, sigma)
    noise = torch.from_numpy(uniform_noise(seed, tuple(inputs.shape[1:]))).to(inputs.device, inputs.dtype)
    low = inputs.flatten(1).amin(1).view(-1, 1, 1, 1)
    high = inputs.flatten(1).amax(1).view(-1, 1, 1, 1)
    return low + noise * (high - low)


class NormalisedBaseline:
    """For explainers with a baseline: the inputs' normalisation that places ``"black"`` and ``"white"``."""

    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None

    def _set_normalisation(self, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]) -> None:
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std (the inputs' normalisation) or neither")
        self.mean = None if mean is None else [float(v) for v in torch.as_tensor(mean).reshape(-1)]
        self.std = None if std is None else [float(v) for v in torch.as_tensor(std).reshape(-1)]
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {std!r}")
        self._remember(mean=self.mean, std=self.std)  # type: ignore[attr-defined]  # Explainer's

    def use_normalisation(self, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]) -> None:
        """Take a run's normalisation when none was given (the runner calls it when registering the explainer)."""
        if self.mean is None and mean is not None and std is not None:
            self._set_normalisation(mean, std)
