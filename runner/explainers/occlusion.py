"""Occlusion (Zeiler & Fergus 2014) through Captum's ``Occlusion``."""

from __future__ import annotations

from typing import Optional, Union

from captum.attr import Occlusion as CaptumOcclusion
from torch import Tensor, nn

from .base import DEFAULT_BATCH_SIZE, Explainer

Size = Union[int, tuple[int, int]]


def _pair(value: Size, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{what} must be a positive integer or a (height, width) pair, got {value!r}")
    return pair  # type: ignore[return-value]


class Occlusion(Explainer):
    """How much the target's output drops when a ``window`` (pixels, all channels) is replaced by ``baseline``,
    slid with ``stride``; each pixel gets the mean drop of the windows covering it (positive = evidence).

    Costs one forward pass per window position and pair, batched ``batch_size`` images at a time.
    """

    reduction = "mean over channels (equal per channel: the window spans them all)"

    def __init__(self, network: nn.Module, *, window: Size = 8, stride: Size = 4, baseline: float = 0.0,
                 batch_size: int = DEFAULT_BATCH_SIZE, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        self.window, self.stride = _pair(window, "window"), _pair(stride, "stride")
        self.baseline = float(baseline)
        self._remember(window=list(self.window), stride=list(self.stride), baseline=self.baseline)

    def check(self, inputs: Tensor) -> None:
        height, width = inputs.shape[-2:]
        if self.window[0] > height or self.window[1] > width:
            raise ValueError(f"{self.name}: window {self.window} is larger than the {height}x{width} images")

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        self.check(inputs)
        channels = inputs.shape[1]
        attributions = CaptumOcclusion(self.network).attribute(
            inputs, sliding_window_shapes=(channels, *self.window), strides=(channels, *self.stride),
            baselines=self.baseline, target=targets, perturbations_per_eval=max(1, self.batch_size // inputs.shape[0]),
        )
        return attributions.mean(dim=1), None
