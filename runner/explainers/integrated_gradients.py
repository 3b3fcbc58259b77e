"""Integrated Gradients (Sundararajan et al. 2017) through Captum, with a choice of baseline and its delta."""

from __future__ import annotations

from typing import Optional

import torch
from captum.attr import IntegratedGradients as CaptumIntegratedGradients
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, image_shape_of, sum_over_channels
from .baselines import Baseline, check_baseline, make_baseline

METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
DEFAULT_STEPS = 32
DELTA_TOLERANCE = 0.05
DELTA_EPS = 1e-3  # output units: a gap below about this is too small to judge the integral by


def relative_delta(maps: Tensor, delta: Tensor, eps: float = DELTA_EPS) -> Tensor:
    """|delta| / (|F(x) - F(x')| + eps) per pair, from the maps and the convergence delta IG returns.

    Captum's delta is sum(attributions) - (F(x) - F(x')) and an IG map sums the attributions over channels, so the
    output gap is ``maps.sum() - delta``: no extra forward pass is needed.
    """
    totals = maps.flatten(1).double().sum(dim=1)
    delta = delta.double().reshape(-1)
    return (delta.abs() / ((totals - delta).abs() + eps)).float()


class IntegratedGradients(Explainer):
    """(x - x') * average gradient along the straight path from the baseline x' to x, summed over channels (signed).

    The map sums to f(x) - f(x') up to the convergence delta, which is stored per map (more ``n_steps``, smaller
    delta). ``baseline``: ``"zero"``, ``"blur"`` (Gaussian, ``blur_sigma`` pixels, default a tenth of the image
    size), ``"uniform"`` (noise between the image's min and max, seeded), a number or a tensor. ``method``: Captum's
    integral approximation (``"gausslegendre"`` or a Riemann rule).

    ``n_steps`` defaults to 32, an affordable cost (Captum's default is 50) made safe by a check: after every call
    the relative delta |delta| / (|F(x) - F(x')| + 1e-3) (:func:`relative_delta`; the 1e-3, in the network's output
    units, keeps pairs whose output barely changes from counting) is compared with ``delta_tolerance`` (default
    5%), and the first time some pairs exceed it one warning per instance names how many and suggests more
    ``n_steps``.

    Cost per pair: ``n_steps`` forward + ``n_steps`` backward passes, plus 2 forward passes (the input and the
    baseline) for the convergence delta; with the defaults 34 forward + 32 backward at any image size.
    """

    reduction = "signed sum over channels"

    def __init__(self, network: nn.Module, *, n_steps: int = DEFAULT_STEPS, baseline: Baseline = "zero",
                 method: str = "gausslegendre", blur_sigma: Optional[float] = None, seed: int = 0,
                 delta_tolerance: float = DELTA_TOLERANCE, batch_size: Optional[int] = None,
                 name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if isinstance(delta_tolerance, bool) or not isinstance(delta_tolerance, (int, float)) or delta_tolerance < 0:
            raise ValueError(f"delta_tolerance must be a non-negative number, got {delta_tolerance!r}")
        check_baseline(baseline)
        self.n_steps, self.baseline, self.method = n_steps, baseline, method
        self.blur_sigma, self.seed = blur_sigma, seed
        self.delta_tolerance = float(delta_tolerance)
        self._remember(n_steps=n_steps, baseline=baseline, method=method, blur_sigma=blur_sigma, seed=seed,
                       delta_tolerance=self.delta_tolerance)

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        image_shape_of(image_shape)
        return Passes(self.n_steps + 2, self.n_steps)

    def explain_with_delta(self, inputs: Tensor, targets: Tensor,
                           native: bool = False) -> tuple[Tensor, Optional[Tensor]]:
        maps, delta = super().explain_with_delta(inputs, targets, native=native)
        if delta is not None and delta.numel():
            self._check_delta(maps, delta)
        return maps, delta

    def _check_delta(self, maps: Tensor, delta: Tensor) -> None:
        relative = relative_delta(maps, delta)
        finite = relative[torch.isfinite(relative)]
        over = int((finite > self.delta_tolerance).sum())
        if over:
            self._warn_once("delta", (
                f"{self.name}: the convergence delta exceeds {self.delta_tolerance:.0%} of |F(x) - F(baseline)| "
                f"for {over} of {relative.numel()} pairs (worst {float(finite.max()):.0%}) with n_steps="
                f"{self.n_steps}; the maps do not sum to the output difference there: raise n_steps (e.g. "
                f"{self.n_steps * 2}) for a closer integral"))

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        baselines = make_baseline(self.baseline, inputs, self.blur_sigma, self.seed)
        attributions, delta = CaptumIntegratedGradients(self.network).attribute(
            inputs, baselines=baselines, target=targets, n_steps=self.n_steps, method=self.method,
            internal_batch_size=self.batch_size, return_convergence_delta=True,
        )
        return sum_over_channels(attributions), delta
