"""Occlusion (Zeiler & Fergus 2014) through Captum's ``Occlusion``, with a window that scales with the image."""

from __future__ import annotations

import math
from typing import Any, Optional, Union

from captum.attr import Occlusion as CaptumOcclusion
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, image_shape_of

Size = Union[int, tuple[int, int]]

#: the default window is this fraction of each image side (rounded half up, at least 1 px)
WINDOW_FRACTION = 1 / 8


def _pair(value: Optional[Size], what: str) -> Optional[tuple[int, int]]:
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"{what} must be a positive integer or a (height, width) pair of pixels (or None for "
                         f"the default), got {value!r}")
    return pair  # type: ignore[return-value]


def default_window(height: int, width: int) -> tuple[int, int]:
    """The window for ``window=None``: 1/8 of each side, rounded half up, at least 1 pixel (28 x 28 at 224)."""
    return (max(1, math.floor(height * WINDOW_FRACTION + 0.5)), max(1, math.floor(width * WINDOW_FRACTION + 0.5)))


def default_stride(window: tuple[int, int]) -> tuple[int, int]:
    """The stride for ``stride=None``: half the window, at least 1 pixel (windows overlap by half)."""
    return (max(1, window[0] // 2), max(1, window[1] // 2))


def positions(side: int, window: int, stride: int) -> int:
    """Window positions along one side as Captum slides them: ceil((side - window) / stride) + 1 (the last one
    may stick out past the edge and is cut there, so every pixel is covered)."""
    return -(-(side - window) // stride) + 1 if window <= side else 0


class Occlusion(Explainer):
    """How much the target's output drops when a ``window`` (pixels, all channels) is replaced by ``baseline``,
    slid with ``stride``; each pixel gets the mean drop of the windows covering it (positive = evidence).

    Defaults scale with the image: ``window=None`` is 1/8 of each side (rounded half up; 28 x 28 at 224, 4 x 4 at
    32) and ``stride=None`` half the window (14 at 224, 2 at 32), so a pair costs about the same at any resolution.
    Windows and strides given in pixels are used as given. The values are resolved from the image size at
    ``check`` and at every call; :meth:`config` shows those of the last size seen (``"auto"`` before any).

    Cost per pair, no backward: one forward pass per window position plus one for the unoccluded image,
    (ceil((H - wh) / sh) + 1) * (ceil((W - ww) / sw) + 1) + 1, batched ``batch_size`` images at a time. With the
    defaults 15 * 15 + 1 = 226 forward passes at 224 x 224 and at 32 x 32 (the former 8/4 px: 3026 at 224).
    """

    reduction = "mean over channels (equal per channel: the window spans them all)"

    def __init__(self, network: nn.Module, *, window: Optional[Size] = None, stride: Optional[Size] = None,
                 baseline: float = 0.0, batch_size: Optional[int] = None, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        self.window, self.stride = _pair(window, "window"), _pair(stride, "stride")
        self.baseline = float(baseline)
        self._resolved: Optional[tuple[tuple[int, int], tuple[int, int]]] = None
        self._remember(window=list(self.window) if self.window else None,
                       stride=list(self.stride) if self.stride else None, baseline=self.baseline)

    def resolve(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(window, stride) in pixels for images of ``height`` x ``width``: the given values or the defaults."""
        window = self.window or default_window(height, width)
        return window, self.stride or default_stride(window)

    def config(self) -> dict[str, Any]:
        config = super().config()
        if self._resolved is not None:
            config["window"], config["stride"] = list(self._resolved[0]), list(self._resolved[1])
        else:
            config["window"] = list(self.window) if self.window else "auto"
            config["stride"] = list(self.stride) if self.stride else "auto"
        if self.window is None or self.stride is None:
            config["defaults"] = "window 1/8 of each image side, stride half the window"
        return config

    def check(self, inputs: Tensor) -> None:
        height, width = inputs.shape[-2:]
        window, stride = self._resolved = self.resolve(height, width)
        if window[0] > height or window[1] > width:
            raise ValueError(f"{self.name}: window {window} is larger than the {height}x{width} images")
        if (stride[0] > window[0] and window[0] < height) or (stride[1] > window[1] and window[1] < width):
            raise ValueError(f"{self.name}: stride {stride} is larger than the window {window}: pixels between "
                             "the windows would never be occluded")

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        _, height, width = image_shape_of(image_shape)
        window, stride = self.resolve(height, width)
        return Passes(positions(height, window[0], stride[0]) * positions(width, window[1], stride[1]) + 1)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        self.check(inputs)
        window, stride = self.resolve(*inputs.shape[-2:])
        channels = inputs.shape[1]
        attributions = CaptumOcclusion(self.network).attribute(
            inputs, sliding_window_shapes=(channels, *window), strides=(channels, *stride),
            baselines=self.baseline, target=targets, perturbations_per_eval=max(1, self.batch_size // inputs.shape[0]),
        )
        return attributions.mean(dim=1), None
