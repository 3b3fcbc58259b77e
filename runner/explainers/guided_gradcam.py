"""Guided Grad-CAM (Selvaraju et al. 2017) through Captum's ``GuidedGradCam``."""

from __future__ import annotations

from typing import Optional

from captum.attr import GuidedGradCam as CaptumGuidedGradCam
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, image_shape_of, max_abs_over_channels, resolve_layer
from .gradcam import check_spatial_layer
from .relu_rule import ReluRuleCheck


class GuidedGradCAM(ReluRuleCheck, Explainer):
    """Guided backpropagation multiplied element-wise by the Grad-CAM map of ``layer`` upsampled (bilinear) to the
    input size, reduced to max |a| over channels. The guided part reaches only ``torch.nn.ReLU`` modules, like
    :class:`GuidedBackprop`; ``check`` (or the first call) warns once when the network has other activations.

    Cost per pair: GradCAM + GuidedBackprop = 2 forward + 2 backward passes at any image size.
    """

    reduction = "max |attribution| over channels"
    relu_rule = "guided backpropagation"

    def __init__(self, network: nn.Module, layer: str | nn.Module, *, batch_size: Optional[int] = None,
                 name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        self.layer_name, self.layer = resolve_layer(network, layer)
        self._remember(layer=self.layer_name)

    def check(self, inputs: Tensor) -> None:
        check_spatial_layer(self, self.layer, self.layer_name, inputs)
        super().check(inputs)

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        image_shape_of(image_shape)
        return Passes(2, 2)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        attributions = CaptumGuidedGradCam(self.network, self.layer).attribute(
            inputs, target=targets, interpolate_mode="bilinear"
        )
        return max_abs_over_channels(attributions), None
