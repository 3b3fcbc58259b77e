"""Guided backpropagation (Springenberg et al. 2015) through Captum's ``GuidedBackprop``."""

from __future__ import annotations

from typing import Optional

from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, image_shape_of, max_abs_over_channels
from .relu_rule import ReluRuleCheck


class GuidedBackprop(ReluRuleCheck, Explainer):
    """The gradient with only positive signals passed back through ReLUs, as max |a| over channels.

    Captum guides only ``torch.nn.ReLU`` modules: functional ``F.relu``/``torch.relu`` calls and other activation
    modules (``nn.ReLU6``, ``nn.GELU``, ``nn.SiLU``, ...) keep their plain gradient. ``check`` (or the first call)
    traces one forward pass and warns once per instance when the network has such activations (see
    :mod:`.relu_rule` for what the trace can and cannot see). Hooks are removed after every call.

    Cost per pair: 1 forward + 1 backward pass at any image size.
    """

    reduction = "max |attribution| over channels"
    relu_rule = "guided backpropagation"

    def __init__(self, network: nn.Module, *, batch_size: Optional[int] = None, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        image_shape_of(image_shape)
        return Passes(1, 1)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        attributions = CaptumGuidedBackprop(self.network).attribute(inputs, target=targets)
        return max_abs_over_channels(attributions), None
