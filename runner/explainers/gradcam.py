"""Grad-CAM (Selvaraju et al. 2017) through Captum's ``LayerGradCam``, at the layer's grid or upsampled."""

from __future__ import annotations

from typing import Optional

import torch
from captum.attr import LayerGradCam
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, eval_mode, image_shape_of, resolve_layer


def check_spatial_layer(explainer: Explainer, layer: nn.Module, layer_name: str, inputs: Tensor) -> None:
    """Raise a ValueError unless ``layer`` outputs N x C x h x w feature maps for inputs like ``inputs``."""
    shapes: list[tuple[int, ...]] = []
    handle = layer.register_forward_hook(lambda _m, _i, output: shapes.append(tuple(output.shape))
                                         if isinstance(output, Tensor) else shapes.append(()))
    try:
        with eval_mode(explainer.network), torch.no_grad():
            explainer.network(inputs)
    finally:
        handle.remove()
    if not shapes:
        raise ValueError(f"{explainer.name}: layer {layer_name!r} is not used by the network's forward pass")
    if len(shapes[0]) != 4:
        raise ValueError(f"{explainer.name}: layer {layer_name!r} must output N x C x h x w feature maps, "
                         f"it outputs shape {shapes[0]}; pick a convolutional layer")


class GradCAM(Explainer):
    """ReLU(sum_k alpha_k A_k) on ``layer``'s feature maps A (alpha_k = mean gradient of the target over map k),
    upsampled bilinearly (``align_corners=False``, :func:`~.base.to_input_size`) to the input size. With
    ``explain_with_delta(..., native=True)`` the maps stay at the layer's h x w grid (7 x 7 for ResNet's layer4 at
    224), which is all the information they hold. ``layer`` is a dotted module name (``"layer4"``) or a module; it
    is stored by name. ``relu=False`` keeps the negative evidence.

    Cost per pair: 1 forward + 1 backward pass (the backward stops at ``layer``) at any image size.
    """

    reduction = "one channel; bilinear upsampling to the input size"

    def __init__(self, network: nn.Module, layer: str | nn.Module, *, relu: bool = True,
                 batch_size: Optional[int] = None, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        self.layer_name, self.layer = resolve_layer(network, layer)
        self.relu = bool(relu)
        self._remember(layer=self.layer_name, relu=self.relu)

    def check(self, inputs: Tensor) -> None:
        check_spatial_layer(self, self.layer, self.layer_name, inputs)

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        image_shape_of(image_shape)
        return Passes(1, 1)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        cam = LayerGradCam(self.network, self.layer).attribute(inputs, target=targets, relu_attributions=self.relu)
        if cam.dim() != 4:
            raise ValueError(f"layer {self.layer_name!r} must output N x C x h x w feature maps, "
                             f"Grad-CAM got shape {tuple(cam.shape)}")
        return cam[:, 0], None  # the layer's grid; explain_with_delta upsamples unless native=True
