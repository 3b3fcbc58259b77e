"""Gradient (vanilla saliency, Simonyan et al. 2014) through Captum's ``Saliency``."""

from __future__ import annotations

from typing import Optional

from captum.attr import Saliency
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, image_shape_of, max_abs_over_channels


class Gradient(Explainer):
    """|d output[target] / d input|, reduced to the largest magnitude over channels.

    Cost per pair: 1 forward + 1 backward pass at any image size. Known as ``Saliency`` in Captum and ``Gradient``
    in MindSpore XAI.
    """

    reduction = "max |gradient| over channels"

    def __init__(self, network: nn.Module, *, batch_size: Optional[int] = None, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        image_shape_of(image_shape)
        return Passes(1, 1)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        attributions = Saliency(self.network).attribute(inputs, target=targets, abs=True)
        return max_abs_over_channels(attributions), None
