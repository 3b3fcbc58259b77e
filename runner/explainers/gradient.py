"""Gradient (vanilla saliency, Simonyan et al. 2014) through Captum's ``Saliency``."""

from __future__ import annotations

from typing import Optional

from captum.attr import Saliency
from torch import Tensor, nn

from .base import DEFAULT_BATCH_SIZE, Explainer, max_abs_over_channels


class Gradient(Explainer):
    """|d output[target] / d input|, reduced to the largest magnitude over channels.

    One forward and one backward pass per pair. Known as ``Saliency`` in Captum and ``Gradient`` in MindSpore XAI.
    """

    reduction = "max |gradient| over channels"

    def __init__(self, network: nn.Module, *, batch_size: int = DEFAULT_BATCH_SIZE, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        attributions = Saliency(self.network).attribute(inputs, target=targets, abs=True)
        return max_abs_over_channels(attributions), None
