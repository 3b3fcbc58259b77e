"""Input x Gradient (Shrikumar et al. 2016) through Captum's ``InputXGradient``."""

from __future__ import annotations

from typing import Optional

from captum.attr import InputXGradient as CaptumInputXGradient
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, image_shape_of, sum_over_channels


class InputXGradient(Explainer):
    """input * d output[target] / d input, summed over channels (signed: negative = evidence against).

    Cost per pair: 1 forward + 1 backward pass at any image size.
    """

    reduction = "signed sum over channels"

    def __init__(self, network: nn.Module, *, batch_size: Optional[int] = None, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        image_shape_of(image_shape)
        return Passes(1, 1)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        attributions = CaptumInputXGradient(self.network).attribute(inputs, target=targets)
        return sum_over_channels(attributions), None
