"""Class sensitivity: maps for different classes of the same image should differ."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from ..cost import Passes
from .base import ActivationFn, Benchmark, explain_maps, explainer_passes, pearson


class ClassSensitivity(Benchmark):
    """How much the maps of the most and the least likely class of an image differ.

    For each pair the network's probabilities (``activation_fn``, default softmax) give the most likely class (argmax)
    and the least likely class (argmin; ties: the lowest class index); the explainer explains the image for both and
    the score is (1 − ρ(S_top, S_bottom)) / 2 with ρ the Pearson correlation of the two maps over the pixels. 1: the
    maps are opposite, 0.5: unrelated, 0: identical up to scale (the explainer ignores the class). Higher is better;
    range [0, 1]. NaN if either map is constant or holds a non-finite value (the correlation is undefined).

    The score depends on the image only, not on the label being scored: every label of an image gets the same value.
    The map passed to ``evaluate`` is not used. Identical images in a call are explained once; all images are
    explained in one explainer call (``explain_batch_size`` splits it when given).

    Known bug avoided: MindSpore XAI picks the two classes with argmax/argmin over the whole output tensor (no class
    axis), which is right only for one image per call, so it refuses batches; here the classes are chosen per image
    and the whole batch is explained at once. A constant map gives NaN rather than a number.

    Cost per pair: 1 forward pass (the probabilities) and two runs of the explainer (the most and the least likely
    class), paid once per distinct image and shared by its labels, so this is the most a pair costs.

    Args:
        explain_batch_size: largest number of maps per explainer call, or None (default) for one call.
    """

    name = "ClassSensitivity"
    higher_is_better = True
    range = (0.0, 1.0)
    requires_explainer = True

    def __init__(self, explain_batch_size: Optional[int] = None) -> None:
        if explain_batch_size is not None and (not isinstance(explain_batch_size, int) or explain_batch_size < 1):
            raise ValueError(
                f"ClassSensitivity: explain_batch_size must be a positive integer or None, got {explain_batch_size!r}"
            )
        self.explain_batch_size = explain_batch_size

    def _params(self) -> dict[str, Any]:
        return {"explain_batch_size": self.explain_batch_size}

    def passes(self, image_shape: tuple[int, int, int], explainer: Any = None) -> Passes:
        return Passes(1) + explainer_passes(explainer, image_shape, self.name) * 2

    def _evaluate(
        self,
        network: torch.nn.Module,
        inputs: Tensor,
        targets: Tensor,
        saliency: Tensor,
        masks: Optional[Tensor],
        explainer: Any,
        activation: ActivationFn,
    ) -> Tensor:
        images, pair_image = torch.unique(inputs.flatten(1), dim=0, return_inverse=True)
        images = images.view(-1, *inputs.shape[1:])
        with torch.no_grad():
            probabilities = activation(network(images))
        if probabilities.dim() != 2 or probabilities.shape[0] != images.shape[0]:
            raise ValueError(
                f"{self.name}: the network (after activation) must return N x classes, got {tuple(probabilities.shape)}"
            )
        top = probabilities.argmax(dim=1)
        bottom = probabilities.argmin(dim=1)
        count = images.shape[0]
        maps = explain_maps(
            explainer, torch.cat([images, images]), torch.cat([top, bottom]), self.explain_batch_size, self.name
        ).flatten(1)
        rho = pearson(maps[:count], maps[count:])
        return ((1 - rho) / 2)[pair_image.to(rho.device)]
