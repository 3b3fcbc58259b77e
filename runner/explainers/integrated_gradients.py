"""Integrated Gradients (Sundararajan et al. 2017) through Captum, with a choice of baseline and its delta."""

from __future__ import annotations

from typing import Optional

from captum.attr import IntegratedGradients as CaptumIntegratedGradients
from torch import Tensor, nn

from .base import DEFAULT_BATCH_SIZE, Explainer, sum_over_channels
from .baselines import Baseline, check_baseline, make_baseline

METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


class IntegratedGradients(Explainer):
    """(x - x') * average gradient along the straight path from the baseline x' to x, summed over channels (signed).

    The map sums to f(x) - f(x') up to the convergence delta, which is stored per map (more ``n_steps``, smaller
    delta). ``baseline``: ``"zero"``, ``"blur"`` (Gaussian, ``blur_sigma`` pixels, default a tenth of the image
    size), ``"uniform"`` (noise between the image's min and max, seeded), a number or a tensor. ``method``: Captum's
    integral approximation (``"gausslegendre"`` or a Riemann rule).
    """

    reduction = "signed sum over channels"

    def __init__(self, network: nn.Module, *, n_steps: int = 50, baseline: Baseline = "zero",
                 method: str = "gausslegendre", blur_sigma: Optional[float] = None, seed: int = 0,
                 batch_size: int = DEFAULT_BATCH_SIZE, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        check_baseline(baseline)
        self.n_steps, self.baseline, self.method = n_steps, baseline, method
        self.blur_sigma, self.seed = blur_sigma, seed
        self._remember(n_steps=n_steps, baseline=baseline, method=method, blur_sigma=blur_sigma, seed=seed)

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        baselines = make_baseline(self.baseline, inputs, self.blur_sigma, self.seed)
        attributions, delta = CaptumIntegratedGradients(self.network).attribute(
            inputs, baselines=baselines, target=targets, n_steps=self.n_steps, method=self.method,
            internal_batch_size=self.batch_size, return_convergence_delta=True,
        )
        return sum_over_channels(attributions), delta
