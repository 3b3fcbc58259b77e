"""Integrated Gradients (Sundararajan et al. 2017) through Captum, with a choice of baseline, its delta and, for the
runner, the path diagnostics (:mod:`.ig_path`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

import torch
from captum.attr import IntegratedGradients as CaptumIntegratedGradients
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import Tensor, nn

from ..cost import Passes
from .base import Explainer, image_shape_of, sum_over_channels
from .baselines import Baseline, NormalisedBaseline, check_baseline, make_baseline
from .ig_path import PathDiagnostics, PathRecorder

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


def step_ladder(n_steps: int, search_steps: int) -> list[int]:
    """The step counts a steps search tries: 4, 8, 16, ... up to ``search_steps``, with ``n_steps`` among them."""
    ladder, steps = {n_steps}, 4
    while steps <= search_steps:
        ladder.add(steps)
        steps *= 2
    return sorted(v for v in ladder if v <= max(search_steps, n_steps))


class IntegratedGradients(NormalisedBaseline, Explainer):
    """(x - x') * average gradient along the straight path from the baseline x' to x, summed over channels (signed).

    The map sums to f(x) - f(x') up to the convergence delta, which is stored per map (more ``n_steps``, smaller
    delta). ``baseline``: ``"zero"`` (zero input), ``"black"``/``"white"`` (the darkest/brightest pixel through the
    inputs' ``mean``/``std``; the runner gives its own to an explainer that has none), ``"blur"`` (Gaussian,
    ``blur_sigma`` pixels, default a tenth of the image size), ``"uniform"`` (a seeded noise image between the
    image's min and max), a number or a tensor. ``method``: Captum's integral approximation (``"gausslegendre"`` or
    a Riemann rule). :meth:`with_baselines` makes one instance per baseline, named ``IntegratedGradients[black]``...

    In a run, :meth:`explain_with_path` also keeps what the path shows (:class:`~.ig_path.PathDiagnostics`): the
    target's probability and the mean |gradient| at every alpha, recorded during the integration itself, and the
    output gap F(x) - F(x'). ``search_steps=K`` additionally finds, per pair, the fewest of 4, 8, 16, ... K steps
    whose relative delta is within ``delta_tolerance`` (re-running IG at each count for the pairs not yet within
    it; -1 when none was).

    ``n_steps`` defaults to 32, an affordable cost (Captum's default is 50) made safe by a check: after every call
    the relative delta |delta| / (|F(x) - F(x')| + 1e-3) (:func:`relative_delta`; the 1e-3, in the network's output
    units, keeps pairs whose output barely changes from counting) is compared with ``delta_tolerance`` (default
    5%), and the first time some pairs exceed it one warning per instance names how many and suggests more
    ``n_steps``.

    Cost per pair: ``n_steps`` forward + ``n_steps`` backward passes, plus 2 forward passes (the input and the
    baseline) for the convergence delta; with the defaults 34 forward + 32 backward at any image size. The path
    diagnostics add no pass. A steps search adds at most every other rung of its ladder (the plan counts them all).
    """

    reduction = "signed sum over channels"

    def __init__(self, network: nn.Module, *, n_steps: int = DEFAULT_STEPS, baseline: Baseline = "zero",
                 method: str = "gausslegendre", blur_sigma: Optional[float] = None, seed: int = 0,
                 delta_tolerance: float = DELTA_TOLERANCE, search_steps: Optional[int] = None,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 batch_size: Optional[int] = None, name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if isinstance(delta_tolerance, bool) or not isinstance(delta_tolerance, (int, float)) or delta_tolerance < 0:
            raise ValueError(f"delta_tolerance must be a non-negative number, got {delta_tolerance!r}")
        if search_steps is not None and (isinstance(search_steps, bool) or not isinstance(search_steps, int)
                                         or search_steps < 4):
            raise ValueError(f"search_steps must be an integer of at least 4 or None, got {search_steps!r}")
        check_baseline(baseline)
        self.n_steps, self.baseline, self.method = n_steps, baseline, method
        self.blur_sigma, self.seed = blur_sigma, seed
        self.delta_tolerance = float(delta_tolerance)
        self.search_steps = search_steps
        self._remember(n_steps=n_steps, baseline=baseline, method=method, blur_sigma=blur_sigma, seed=seed,
                       delta_tolerance=self.delta_tolerance, search_steps=search_steps)
        self._set_normalisation(mean, std)
        self._recorder: Optional[PathRecorder] = None

    @classmethod
    def with_baselines(cls, network: nn.Module, baselines: Sequence[str], **options) -> list["IntegratedGradients"]:
        """One explainer per baseline, named ``IntegratedGradients[<baseline>]``, to compare them side by side."""
        return [cls(network, baseline=baseline, name=f"{cls.__name__}[{baseline}]", **options) for baseline in baselines]

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        image_shape_of(image_shape)
        own = Passes(self.n_steps + 2, self.n_steps)
        if self.search_steps is None:
            return own
        others = [steps for steps in step_ladder(self.n_steps, self.search_steps) if steps != self.n_steps]
        return own + Passes(sum(others) + 2 * len(others), sum(others))

    def explain_with_path(self, inputs: Tensor, targets: Tensor, activation: Callable[[Tensor], Tensor],
                          native: bool = False) -> tuple[Tensor, Optional[Tensor], PathDiagnostics]:
        """The maps and deltas of :meth:`explain_with_delta`, plus what the path showed (``activation``: logits ->
        probabilities, as the run uses)."""
        self._recorder = PathRecorder(self.network, activation)
        try:
            maps, delta = self.explain_with_delta(inputs, targets, native=native)
            probabilities, gradients = self._recorder.collected() if self._recorder.chunks else (
                inputs.new_zeros((0, self.n_steps)), inputs.new_zeros((0, self.n_steps)))
        finally:
            self._recorder = None
        alphas = torch.as_tensor(approximation_parameters(self.method)[1](self.n_steps), dtype=torch.float32)
        order = torch.argsort(alphas)
        assert delta is not None
        gap = maps.flatten(1).double().sum(dim=1).float() - delta
        relative = relative_delta(maps, delta)
        diagnostics = PathDiagnostics(alphas[order], probabilities[:, order.to(probabilities.device)],
                                      gradients[:, order.to(gradients.device)], gap, relative)
        if self.search_steps is not None:
            diagnostics.steps_needed = self._steps_needed(inputs, targets, relative)
        return maps, delta, diagnostics

    def _steps_needed(self, inputs: Tensor, targets: Tensor, relative: Tensor) -> Tensor:
        """Per pair, the fewest steps of the ladder whose relative delta is within the tolerance (-1: none)."""
        assert self.search_steps is not None
        needed = torch.full((inputs.shape[0],), -1, dtype=torch.long)
        pending = torch.ones(inputs.shape[0], dtype=torch.bool)
        for steps in step_ladder(self.n_steps, self.search_steps):
            if steps == self.n_steps:
                within = relative.cpu() <= self.delta_tolerance
            else:
                index = pending.nonzero()[:, 0]
                twin = type(self)(self.network, **{**self._parameters, "n_steps": steps, "search_steps": None},
                                  batch_size=self.given_batch_size)
                twin._warned = {"delta"}
                device_index = index.to(inputs.device)
                chosen = inputs.detach()[device_index]
                maps, delta = twin.explain_with_delta(chosen, targets[device_index])
                assert delta is not None
                within = torch.zeros_like(pending)
                within[index] = relative_delta(maps, delta).cpu() <= self.delta_tolerance
            hit = pending & within
            needed[hit] = steps
            pending &= ~hit
            if not bool(pending.any()):
                break
        return needed

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
        baselines = make_baseline(self.baseline, inputs, self.blur_sigma, self.seed, self.mean, self.std)
        recorder = self._recorder
        method = CaptumIntegratedGradients(self.network if recorder is None else recorder.forward)
        if recorder is not None:
            method.gradient_func = recorder.gradient
        attributions, delta = method.attribute(
            inputs, baselines=baselines, target=targets, n_steps=self.n_steps, method=self.method,
            internal_batch_size=self.batch_size, return_convergence_delta=True,
        )
        if recorder is not None:
            recorder.end_chunk(inputs.shape[0], self.n_steps)
        return sum_over_channels(attributions), delta
