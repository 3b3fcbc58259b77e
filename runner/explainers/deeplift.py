"""DeepLIFT (Shrikumar et al. 2017, Rescale rule) through Captum's ``DeepLift``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from captum.attr import DeepLift as CaptumDeepLift
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, image_shape_of, sum_over_channels
from .baselines import Baseline, NormalisedBaseline, check_baseline, make_baseline


class DeepLift(NormalisedBaseline, Explainer):
    """Contributions of each input relative to a baseline (Rescale rule), summed over channels (signed); the
    summation-to-delta gap is stored as the convergence delta. Each non-linearity must be its own module
    (``torch.nn.ReLU`` instances, not reused and not functional calls), as Captum requires. ``baseline`` as for
    :class:`IntegratedGradients`.

    Cost per pair: 4 forward + 2 backward passes at any image size. Captum runs the input and its baseline as one
    batch of two through the network and back (2 forward + 2 backward), then runs both again, without autograd, for
    the convergence delta (2 forward).
    """

    reduction = "signed sum over channels"

    def __init__(self, network: nn.Module, *, baseline: Baseline = "zero", blur_sigma: Optional[float] = None,
                 seed: int = 0, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 batch_size: Optional[int] = None, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        check_baseline(baseline)
        self.baseline, self.blur_sigma, self.seed = baseline, blur_sigma, seed
        self._remember(baseline=baseline, blur_sigma=blur_sigma, seed=seed)
        self._set_normalisation(mean, std)

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        image_shape_of(image_shape)
        return Passes(4, 2)

    def _chunk_size(self) -> int:
        # DeepLift runs the inputs and the baselines together: half a chunk each keeps batch_size images per pass.
        return max(1, self.batch_size // 2)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        baselines = make_baseline(self.baseline, inputs, self.blur_sigma, self.seed, self.mean, self.std)
        attributions, delta = CaptumDeepLift(self.network).attribute(
            inputs, baselines=baselines, target=targets, return_convergence_delta=True
        )
        return sum_over_channels(attributions), delta
