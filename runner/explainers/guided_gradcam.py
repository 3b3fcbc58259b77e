"""Guided Grad-CAM (Selvaraju et al. 2017) through Captum's ``GuidedGradCam``."""

from __future__ import annotations

from typing import Optional

from captum.attr import GuidedGradCam as CaptumGuidedGradCam
from torch import Tensor, nn

from .base import DEFAULT_BATCH_SIZE, Explainer, max_abs_over_channels, resolve_layer
from .gradcam import check_spatial_layer


class GuidedGradCAM(Explainer):
    """Guided backpropagation multiplied element-wise by the Grad-CAM map of ``layer`` upsampled (bilinear) to the
    input size, reduced to max |a| over channels. Needs ``torch.nn.ReLU`` modules like :class:`GuidedBackprop`."""

    reduction = "max |attribution| over channels"

    def __init__(self, network: nn.Module, layer: str | nn.Module, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        self.layer_name, self.layer = resolve_layer(network, layer)
        self._remember(layer=self.layer_name)

    def check(self, inputs: Tensor) -> None:
        check_spatial_layer(self, self.layer, self.layer_name, inputs)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        attributions = CaptumGuidedGradCam(self.network, self.layer).attribute(
            inputs, target=targets, interpolate_mode="bilinear"
        )
        return max_abs_over_channels(attributions), None
