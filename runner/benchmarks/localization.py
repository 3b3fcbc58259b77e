"""Localization: does the map point at the object the ground-truth mask or box marks?"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from ..cost import ZERO, Passes
from .base import ActivationFn, Benchmark, finite_rows, image_shape_of

METRICS = ("PointingGame", "IoSR")


class Localization(Benchmark):
    """Agreement of a relevance map with the ground-truth region of its label: ``PointingGame`` or ``IoSR``.

    Scored only on (image, ground-truth label) pairs that have a mask or box: ``masks`` (N x H x W bool) is required.
    Pixel coordinates follow the stored boxes: x is the column, y is the row.

    **PointingGame** (Zhang et al. 2016, as in TorchRay). The point is the argmax of the map; when several pixels share
    the maximum, the first in row-major order (smallest row, then smallest column) is taken. Score 1 (hit) if some mask
    pixel lies at a Euclidean distance strictly less than ``tolerance`` pixels from the point, else 0 (miss). NaN —
    not a trial — when the mask is empty or the map is constant (it points nowhere) or holds a non-finite value.
    Aggregation "macro": the hit rate of each class, then the mean over classes. Higher is better; range [0, 1].

    **IoSR** (intersection over the salient region). The salient region is {r > threshold * max r};
    score = |mask ∩ salient| / |salient|. NaN if max r ≤ 0 (no salient region), the mask is empty or the map holds a
    non-finite value. Higher is better; range [0, 1].

    Known bugs avoided: MindSpore XAI's pointing game transposes x and y (wrong on non-square images); Quantus'
    PointingGame counts an empty mask as a hit.

    Cost per pair: no network pass (the map and the mask only).

    Args:
        metric: "PointingGame" or "IoSR".
        tolerance: PointingGame's distance in pixels (strictly less counts); default 15. Must be positive.
        threshold: IoSR's fraction of the map's maximum defining the salient region; default 0.5, in [0, 1).
    """

    requires_masks = True

    def __init__(self, metric: str, tolerance: Optional[float] = None, threshold: Optional[float] = None) -> None:
        if metric not in METRICS:
            raise ValueError(f"Localization metric must be one of {METRICS}, got {metric!r}")
        if metric == "PointingGame":
            if threshold is not None:
                raise ValueError("PointingGame has no threshold (it is IoSR's parameter); use tolerance=")
            tolerance = 15.0 if tolerance is None else tolerance
            if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
                raise ValueError(f"PointingGame: tolerance must be a positive number of pixels, got {tolerance!r}")
            self.tolerance: Optional[float] = float(tolerance)
            self.threshold: Optional[float] = None
            self.aggregation = "macro"
        else:
            if tolerance is not None:
                raise ValueError("IoSR has no tolerance (it is PointingGame's parameter); use threshold=")
            threshold = 0.5 if threshold is None else threshold
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
                raise ValueError(f"IoSR: threshold must be in [0, 1), got {threshold!r}")
            self.tolerance = None
            self.threshold = float(threshold)
            self.aggregation = "mean"
        self.name = metric
        self.higher_is_better = True
        self.range = (0.0, 1.0)

    def _params(self) -> dict[str, Any]:
        if self.name == "PointingGame":
            return {"tolerance": self.tolerance}
        return {"threshold": self.threshold}

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
        assert masks is not None
        if self.name == "PointingGame":
            return self._pointing_game(saliency, masks)
        return self._iosr(saliency, masks)

    def _pointing_game(self, saliency: Tensor, masks: Tensor) -> Tensor:
        n, height, width = saliency.shape
        flat = saliency.flatten(1)
        point = flat.argmax(dim=1)  # first maximum in row-major order
        row = torch.div(point, width, rounding_mode="floor")
        column = point % width
        rows = torch.arange(height, device=saliency.device).view(1, height, 1)
        columns = torch.arange(width, device=saliency.device).view(1, 1, width)
        distance2 = (rows - row.view(n, 1, 1)) ** 2 + (columns - column.view(n, 1, 1)) ** 2
        assert self.tolerance is not None
        hit = (masks & (distance2.double() < self.tolerance**2)).flatten(1).any(dim=1)
        scores = hit.double()
        undefined = ~masks.flatten(1).any(dim=1) | ~finite_rows(saliency)
        undefined |= flat.amax(dim=1) == flat.amin(dim=1)
        return torch.where(undefined, torch.full_like(scores, math.nan), scores)

    def _iosr(self, saliency: Tensor, masks: Tensor) -> Tensor:
        flat = saliency.flatten(1).double()
        peak = flat.amax(dim=1, keepdim=True)
        assert self.threshold is not None
        salient = flat > self.threshold * peak
        inside = (salient & masks.flatten(1)).sum(dim=1).double()
        scores = inside / salient.sum(dim=1).clamp_min(1).double()
        undefined = (peak[:, 0] <= 0) | ~masks.flatten(1).any(dim=1) | ~finite_rows(saliency)
        return torch.where(undefined, torch.full_like(scores, math.nan), scores)
