"""Deconvolution (Zeiler & Fergus 2014) through Captum's ``Deconvolution``."""

from __future__ import annotations

from typing import Optional

from captum.attr import Deconvolution as CaptumDeconvolution
from torch import Tensor, nn

from .base import DEFAULT_BATCH_SIZE, Explainer, max_abs_over_channels


class Deconvolution(Explainer):
    """The backward signal with ReLUs applied to the gradient instead of the forward activations, as max |a| over
    channels. Like :class:`GuidedBackprop` it needs ``torch.nn.ReLU`` modules."""

    reduction = "max |attribution| over channels"

    def __init__(self, network: nn.Module, *, batch_size: int = DEFAULT_BATCH_SIZE, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        attributions = CaptumDeconvolution(self.network).attribute(inputs, target=targets)
        return max_abs_over_channels(attributions), None
