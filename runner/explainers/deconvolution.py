"""Deconvolution (Zeiler & Fergus 2014) through Captum's ``Deconvolution``."""

from __future__ import annotations

from typing import Optional

from captum.attr import Deconvolution as CaptumDeconvolution
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, image_shape_of, max_abs_over_channels
from .relu_rule import ReluRuleCheck


class Deconvolution(ReluRuleCheck, Explainer):
    """The backward signal with ReLUs applied to the gradient instead of the forward activations, as max |a| over
    channels. Like :class:`GuidedBackprop` the rule reaches only ``torch.nn.ReLU`` modules, and ``check`` (or the
    first call) warns once when the network has other activations (functional or other modules).

    Cost per pair: 1 forward + 1 backward pass at any image size.
    """

    reduction = "max |attribution| over channels"
    relu_rule = "deconvolution"

    def __init__(self, network: nn.Module, *, batch_size: Optional[int] = None, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        image_shape_of(image_shape)
        return Passes(1, 1)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        attributions = CaptumDeconvolution(self.network).attribute(inputs, target=targets)
        return max_abs_over_channels(attributions), None
