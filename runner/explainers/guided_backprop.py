"""Guided backpropagation (Springenberg et al. 2015) through Captum's ``GuidedBackprop``."""

from __future__ import annotations

from typing import Optional

from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from torch import Tensor, nn

from .base import DEFAULT_BATCH_SIZE, Explainer, max_abs_over_channels


class GuidedBackprop(Explainer):
    """The gradient with only positive signals passed back through ReLUs, as max |a| over channels.

    The network's ReLUs must be ``torch.nn.ReLU`` modules (functional ``F.relu`` calls are not guided). Hooks are
    removed after every call.
    """

    reduction = "max |attribution| over channels"

    def __init__(self, network: nn.Module, *, batch_size: int = DEFAULT_BATCH_SIZE, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        attributions = CaptumGuidedBackprop(self.network).attribute(inputs, target=targets)
        return max_abs_over_channels(attributions), None
