"""RISE (Petsiuk et al. 2018): randomized input sampling, batched and seeded (Captum has no RISE)."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, image_shape_of

ACTIVATIONS = ("softmax", "sigmoid", "none")
MASK_BLOCK = 32
#: (largest image side up to, masks) for ``n_masks=None``; larger images get the last count
MASKS_BY_SIDE = ((64, 2000), (128, 1000), (None, 500))
DEFAULT_GRID = 7


def default_masks(height: int, width: int) -> int:
    """``n_masks=None``: 2000 masks up to 64 px a side, 1000 up to 128, 500 above (500 at 224)."""
    side = max(height, width)
    return next(count for limit, count in MASKS_BY_SIDE if limit is None or side <= limit)


def default_grid(height: int, width: int) -> int:
    """``grid=None``: 7 cells a side (the paper's ImageNet setting, 32 px cells at 224), fewer for images under
    7 px a side."""
    return max(1, min(DEFAULT_GRID, height, width))


class RISE(Explainer):
    """sum_i P(target | x * M_i) * M_i / (n_masks * p) over ``n_masks`` random masks M_i: ``grid`` x ``grid``
    Bernoulli(``p``) cells upsampled bilinearly with a random sub-cell shift, as in the paper. Masked pixels become 0
    (the mean for normalised inputs).

    ``activation`` turns logits into the probabilities that weight the masks: ``"softmax"`` (single-label),
    ``"sigmoid"`` (multi-label), ``"none"`` (the raw output) or a callable. Masks come in fixed blocks, each drawn
    from a generator seeded by ``seed`` and the block index, so maps are the same for a seed whatever the batching.

    Defaults for the resolution, resolved from the image size at ``check`` and at every call (:meth:`config` shows
    those of the last size seen): ``grid=None`` is 7 (the paper's ImageNet grid, cells of 32 px at 224; 7 as
    before at 32). ``n_masks=None`` is 2000 for images up to 64 px a side (the earlier default, cheap there),
    1000 up to 128 px and 500 above. The map is a Monte Carlo estimate whose noise falls as 1/sqrt(n_masks): 500
    masks at 224 have twice the noise of 2000 at a quarter of the cost (the paper used thousands on ImageNet; pass
    ``n_masks=`` for that). Values given are used as given.

    Cost per pair: ``n_masks`` forward passes, ``batch_size`` images at a time, no backward: with the defaults
    500 at 224 x 224 and 2000 at 32 x 32.
    """

    reduction = "one channel (masks are shared across channels)"

    def __init__(self, network: nn.Module, *, n_masks: Optional[int] = None, p: float = 0.5, grid: Optional[int] = None,
                 activation: Union[str, Callable[[Tensor], Tensor]] = "softmax", seed: int = 0,
                 batch_size: Optional[int] = None, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        if n_masks is not None and (not isinstance(n_masks, int) or n_masks < 1):
            raise ValueError(f"n_masks must be a positive integer or None for the default, got {n_masks!r}")
        if not 0 < p <= 1:
            raise ValueError(f"p must be in (0, 1], got {p!r}")
        if grid is not None and (not isinstance(grid, int) or grid < 1):
            raise ValueError(f"grid must be a positive integer or None for the default, got {grid!r}")
        if isinstance(activation, str) and activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} or a callable, got {activation!r}")
        if not isinstance(activation, str) and not callable(activation):
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} or a callable")
        self.n_masks, self.p, self.grid, self.activation, self.seed = n_masks, float(p), grid, activation, seed
        self._resolved: Optional[tuple[int, int]] = None
        self._remember(n_masks=n_masks, p=self.p, grid=grid, activation=activation, seed=seed)

    def resolve(self, height: int, width: int) -> tuple[int, int]:
        """(n_masks, grid) for images of ``height`` x ``width``: the given values or the defaults."""
        return (self.n_masks or default_masks(height, width), self.grid or default_grid(height, width))

    def config(self) -> dict[str, Any]:
        config = super().config()
        if self._resolved is not None:
            config["n_masks"], config["grid"] = self._resolved
        else:
            config["n_masks"] = self.n_masks or "auto"
            config["grid"] = self.grid or "auto"
        if self.n_masks is None or self.grid is None:
            config["defaults"] = "grid 7; masks 2000 up to 64 px a side, 1000 up to 128, 500 above"
        return config

    def check(self, inputs: Tensor) -> None:
        height, width = inputs.shape[-2:]
        _, grid = self._resolved = self.resolve(height, width)
        if grid > min(height, width):
            raise ValueError(f"{self.name}: grid {grid} is finer than the {height}x{width} images")

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        _, height, width = image_shape_of(image_shape)
        return Passes(self.resolve(height, width)[0])

    def masks(self, block: int, height: int, width: int, device: torch.device) -> Tensor:
        """Masks ``block * MASK_BLOCK`` onwards (at most MASK_BLOCK of them) as count x H x W floats in [0, 1]."""
        n_masks, grid = self.resolve(height, width)
        count = min(MASK_BLOCK, n_masks - block * MASK_BLOCK)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + block)
        cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
        cells = (torch.rand((count, 1, grid, grid), generator=generator) < self.p).float()
        up = F.interpolate(cells, size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear",
                           align_corners=False)
        shifts_y = torch.randint(0, cell_h, (count,), generator=generator)
        shifts_x = torch.randint(0, cell_w, (count,), generator=generator)
        rows = (shifts_y[:, None] + torch.arange(height)[None, :])  # count x H
        cols = (shifts_x[:, None] + torch.arange(width)[None, :])  # count x W
        index = torch.arange(count)[:, None, None]
        masks = up[:, 0][index, rows[:, :, None], cols[:, None, :]].clamp_(0, 1)
        return masks.to(device)

    def _probabilities(self, logits: Tensor) -> Tensor:
        if callable(self.activation):
            return self.activation(logits)
        if self.activation == "softmax":
            return logits.softmax(dim=1)
        if self.activation == "sigmoid":
            return logits.sigmoid()
        return logits

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        self.check(inputs)
        count, _, height, width = inputs.shape
        n_masks, _ = self.resolve(height, width)
        saliency = inputs.new_zeros((count, height, width))
        pairs_per_pass = max(1, self.batch_size // MASK_BLOCK)
        masks_per_pass = max(1, min(MASK_BLOCK, self.batch_size))  # batch_size bounds the images per pass
        with torch.no_grad():
            for block in range(math.ceil(n_masks / MASK_BLOCK)):
                block_masks = self.masks(block, height, width, inputs.device).to(inputs.dtype)
                for first in range(0, block_masks.shape[0], masks_per_pass):
                    masks = block_masks[first:first + masks_per_pass]
                    for start in range(0, count, pairs_per_pass):
                        x = inputs[start:start + pairs_per_pass]
                        masked = (x[:, None] * masks[None, :, None]).flatten(0, 1)
                        probs = self._probabilities(self.network(masked))
                        target = targets[start:start + pairs_per_pass].repeat_interleave(masks.shape[0])
                        weights = probs.gather(1, target[:, None]).view(x.shape[0], masks.shape[0])
                        saliency[start:start + pairs_per_pass] += torch.einsum("nm,mhw->nhw", weights, masks)
        return saliency / (n_masks * self.p), None
