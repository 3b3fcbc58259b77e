"""Sparseness: is the relevance concentrated on few pixels?"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from ..cost import ZERO, Passes
from .base import ActivationFn, Benchmark, finite_rows, image_shape_of


class Sparseness(Benchmark):
    """Gini index of the absolute relevance |r| over the pixels (Chalasani et al. 2020, as Quantus' Sparseness).

    With a_1 ≤ … ≤ a_n the sorted |r| of the n = H * W pixels:
    G = Σ_i (2i − n − 1) a_i / (n Σ_i a_i). A uniform map scores 0, a one-hot map 1 − 1/n (the maximum for n
    pixels). Higher = more concentrated (higher is better); range [0, 1]. NaN for an all-zero map (no relevance to
    distribute) or a map holding a non-finite value. Needs neither the network nor an explainer; no parameters.
    Cost per pair: no network pass.

    Known bug avoided: Quantus adds 1e-7 to every value before the Gini, so an all-zero map scores 0 ("perfectly
    uniform") instead of undefined and small maps are biased towards 0; here the values are used as they are, so a
    one-hot map scores exactly 1 − 1/n and a zero map is NaN.
    """

    name = "Sparseness"
    higher_is_better = True
    range = (0.0, 1.0)

    def passes(self, image_shape: tuple[int, int, int], explainer: Any = None) -> Passes:
        image_shape_of(image_shape)
        return ZERO

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
        return gini(saliency.flatten(1).abs())


def gini(values: Tensor) -> Tensor:
    """Gini index of each row of non-negative values (N x n -> N, float64); NaN for an all-zero or non-finite row."""
    values = values.double()
    n = values.shape[1]
    ordered = torch.sort(values, dim=1).values
    weights = 2 * torch.arange(1, n + 1, dtype=torch.float64, device=values.device) - n - 1
    total = ordered.sum(dim=1)
    scores = (ordered * weights).sum(dim=1) / (n * total)
    undefined = (total == 0) | ~finite_rows(values)
    return torch.where(undefined, torch.full_like(scores, math.nan), scores)
