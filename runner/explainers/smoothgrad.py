"""SmoothGrad (Smilkov et al. 2017): Captum's ``NoiseTunnel`` over ``Saliency``."""

from __future__ import annotations

from typing import Optional

import torch
from captum.attr import NoiseTunnel, Saliency
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, image_shape_of, max_abs_over_channels


class SmoothGrad(Explainer):
    """The gradient averaged over ``n_samples`` copies of the input with Gaussian noise of standard deviation
    ``stdev`` (in input units: the paper recommends 10-20% of the input range), then max |a| over channels.

    The noise is drawn from a generator seeded with ``seed`` at every call, so the same batch gives the same maps.

    Defaults: ``n_samples=25`` (half the paper's 50, for cost), ``stdev=0.15``. Cost
    per pair: ``n_samples`` forward + ``n_samples`` backward passes; with the defaults 25 + 25 at any image size.
    """

    reduction = "max |mean gradient| over channels"

    def __init__(self, network: nn.Module, *, n_samples: int = 25, stdev: float = 0.15, seed: int = 0,
                 batch_size: Optional[int] = None, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        if not stdev > 0:
            raise ValueError(f"stdev must be positive, got {stdev!r}")
        self.n_samples, self.stdev, self.seed = n_samples, float(stdev), seed
        self._remember(n_samples=n_samples, stdev=self.stdev, seed=seed)

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        image_shape_of(image_shape)
        return Passes(self.n_samples, self.n_samples)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        per_pass = max(1, self.batch_size // inputs.shape[0])
        devices = [inputs.device.index or 0] if inputs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            attributions = NoiseTunnel(Saliency(self.network)).attribute(
                inputs, nt_type="smoothgrad", nt_samples=self.n_samples, nt_samples_batch_size=per_pass,
                stdevs=self.stdev, target=targets, abs=False,
            )
        return max_abs_over_channels(attributions), None
