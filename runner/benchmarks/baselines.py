"""The reference images Faithfulness perturbs towards: zero, a Gaussian blur of the image, its mean, or a tensor."""

from __future__ import annotations

from typing import Any, Union

import torch
from torch import Tensor

BaselineSpec = Union[str, Tensor]

BASELINE_NAMES = ("zero", "blur", "mean")


def gaussian_blur(images: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """Separable Gaussian blur of N x C x H x W images, each channel on its own, edges replicated."""
    radius = kernel_size // 2
    offsets = torch.arange(kernel_size, dtype=torch.float64, device=images.device) - radius
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(images.dtype)
    channels = images.shape[1]
    padded = torch.nn.functional.pad(images, (radius, radius, radius, radius), mode="replicate")
    rows = torch.nn.functional.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return torch.nn.functional.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def make_baseline(
    spec: BaselineSpec, inputs: Tensor, name: str, blur_kernel_size: int = 11, blur_sigma: float = 5.0
) -> Tensor:
    """The reference images for ``inputs``: "zero" (all zeros in input space), "blur" (Gaussian blur of each image),
    "mean" (each image's per-channel mean everywhere) or a tensor broadcastable to N x C x H x W."""
    if isinstance(spec, Tensor):
        try:
            return torch.broadcast_to(spec.to(device=inputs.device, dtype=inputs.dtype), inputs.shape)
        except RuntimeError:
            raise ValueError(
                f"{name}: the baseline tensor of shape {tuple(spec.shape)} does not broadcast to the inputs' "
                f"shape {tuple(inputs.shape)}"
            ) from None
    with torch.no_grad():
        if spec == "zero":
            return torch.zeros_like(inputs)
        if spec == "blur":
            return gaussian_blur(inputs, blur_kernel_size, blur_sigma)
        if spec == "mean":
            return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    raise ValueError(f"{name}: baseline must be one of {BASELINE_NAMES} or a tensor, got {spec!r}")


def check_baseline(spec: Any, name: str) -> None:
    """Raise early for a baseline that ``make_baseline`` would reject."""
    if isinstance(spec, Tensor):
        if not spec.is_floating_point():
            raise TypeError(f"{name}: a baseline tensor must be floating point, got {spec.dtype}")
        return
    if spec not in BASELINE_NAMES:
        raise ValueError(f"{name}: baseline must be one of {BASELINE_NAMES} or a tensor, got {spec!r}")


def baseline_config(spec: BaselineSpec) -> Any:
    """A JSON-able description of a baseline: its name, or the shape and mean of a baseline tensor."""
    if isinstance(spec, Tensor):
        return {"tensor_shape": list(spec.shape), "tensor_mean": float(spec.float().mean())}
    return spec
