"""A random map: the reference every method should beat (its insertion and deletion curves are those of a random
pixel order)."""

from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, image_shape_of


class RandomMap(Explainer):
    """Uniform noise in [0, 1) per pixel, no network pass: a reference, not an explanation.

    Scored like any explainer, it gives every benchmark's chance level (a random ranking of the pixels for
    InsertionAUC/DeletionAUC; the dashboard draws its curves as the dashed reference line). Each pair's map is drawn
    from a generator seeded by ``seed``, the target and the input's bytes, so it is the same in every batch, run
    and resumed run. Default name ``Random``.

    Cost per pair: no network pass.
    """

    reduction = "uniform noise (no network pass)"

    def __init__(self, network: nn.Module, *, seed: int = 0, batch_size: Optional[int] = None,
                 name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name or "Random")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self._remember(seed=seed)

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        image_shape_of(image_shape)
        return Passes(0, 0)

    def _pair_seed(self, image: Tensor, target: int) -> int:
        digest = hashlib.blake2b(image.detach().float().cpu().numpy().tobytes(), digest_size=8)
        digest.update(f"{self.seed}:{target}".encode())
        return int.from_bytes(digest.digest(), "big")

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        height, width = inputs.shape[2:]
        maps = [np.random.default_rng(self._pair_seed(image, int(target))).random((height, width), dtype=np.float32)
                for image, target in zip(inputs, targets.tolist())]
        return torch.from_numpy(np.stack(maps)).to(inputs.device), None
