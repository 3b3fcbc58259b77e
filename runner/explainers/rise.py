"""RISE (Petsiuk et al. 2018): randomized input sampling, batched and seeded (Captum has no RISE)."""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import DEFAULT_BATCH_SIZE, Explainer

ACTIVATIONS = ("softmax", "sigmoid", "none")
MASK_BLOCK = 32


class RISE(Explainer):
    """sum_i P(target | x * M_i) * M_i / (n_masks * p) over ``n_masks`` random masks M_i: ``grid`` x ``grid``
    Bernoulli(``p``) cells upsampled bilinearly with a random sub-cell shift, as in the paper. Masked pixels become 0
    (the mean for normalised inputs).

    ``activation`` turns logits into the probabilities that weight the masks: ``"softmax"`` (single-label),
    ``"sigmoid"`` (multi-label), ``"none"`` (the raw output) or a callable. Masks come in fixed blocks, each drawn
    from a generator seeded by ``seed`` and the block index, so maps are the same for a seed whatever the batching.
    Cost: ``n_masks`` forward passes per pair, ``batch_size`` images at a time.
    """

    reduction = "one channel (masks are shared across channels)"

    def __init__(self, network: nn.Module, *, n_masks: int = 2000, p: float = 0.5, grid: int = 7,
                 activation: Union[str, Callable[[Tensor], Tensor]] = "softmax", seed: int = 0,
                 batch_size: int = DEFAULT_BATCH_SIZE, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        if not isinstance(n_masks, int) or n_masks < 1:
            raise ValueError(f"n_masks must be a positive integer, got {n_masks!r}")
        if not 0 < p <= 1:
            raise ValueError(f"p must be in (0, 1], got {p!r}")
        if not isinstance(grid, int) or grid < 1:
            raise ValueError(f"grid must be a positive integer, got {grid!r}")
        if isinstance(activation, str) and activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} or a callable, got {activation!r}")
        if not isinstance(activation, str) and not callable(activation):
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} or a callable")
        self.n_masks, self.p, self.grid, self.activation, self.seed = n_masks, float(p), grid, activation, seed
        self._remember(n_masks=n_masks, p=self.p, grid=grid, activation=activation, seed=seed)

    def check(self, inputs: Tensor) -> None:
        height, width = inputs.shape[-2:]
        if self.grid > min(height, width):
            raise ValueError(f"{self.name}: grid {self.grid} is finer than the {height}x{width} images")

    def masks(self, block: int, height: int, width: int, device: torch.device) -> Tensor:
        """Masks ``block * MASK_BLOCK`` onwards (at most MASK_BLOCK of them) as count x H x W floats in [0, 1]."""
        count = min(MASK_BLOCK, self.n_masks - block * MASK_BLOCK)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + block)
        cell_h, cell_w = math.ceil(height / self.grid), math.ceil(width / self.grid)
        cells = (torch.rand((count, 1, self.grid, self.grid), generator=generator) < self.p).float()
        up = F.interpolate(cells, size=((self.grid + 1) * cell_h, (self.grid + 1) * cell_w), mode="bilinear",
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
        saliency = inputs.new_zeros((count, height, width))
        pairs_per_pass = max(1, self.batch_size // MASK_BLOCK)
        with torch.no_grad():
            for block in range(math.ceil(self.n_masks / MASK_BLOCK)):
                masks = self.masks(block, height, width, inputs.device).to(inputs.dtype)
                for start in range(0, count, pairs_per_pass):
                    x = inputs[start:start + pairs_per_pass]
                    masked = (x[:, None] * masks[None, :, None]).flatten(0, 1)
                    probs = self._probabilities(self.network(masked))
                    target = targets[start:start + pairs_per_pass].repeat_interleave(masks.shape[0])
                    weights = probs.gather(1, target[:, None]).view(x.shape[0], masks.shape[0])
                    saliency[start:start + pairs_per_pass] += torch.einsum("nm,mhw->nhw", weights, masks)
        return saliency / (self.n_masks * self.p), None
