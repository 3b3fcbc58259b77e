"""Faithfulness: does perturbing the pixels a map calls relevant change the model's output as the map says?"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import torch
from torch import Tensor

from ..cost import Passes
from .base import (
    ActivationFn,
    BaselineSpec,
    BatchEvaluator,
    Benchmark,
    changed_prefix,
    baseline_config,
    check_baseline,
    eval_mode,
    finite_rows,
    image_shape_of,
    make_baseline,
    model_device,
    pearson,
    perturbed_probabilities,
    relevance_rank,
    resolve_activation,
    step_counts,
    trapezoid_auc,
    validate_pairs,
)

METRICS = ("InsertionAUC", "DeletionAUC", "NaiveFaithfulness")
CPU_BATCH_SIZE = 32  # keeps a small CNN's activations in cache; larger batches are slower on the CPU
ACCELERATOR_BATCH_SIZE = 256


class Faithfulness(Benchmark):
    """Perturbation faithfulness of a relevance map: ``InsertionAUC``, ``DeletionAUC`` or ``NaiveFaithfulness``.

    Common to the three metrics: the pixels of each map are ranked by relevance, most relevant first; ties are broken
    by pixel index in row-major order (smaller row first, then smaller column), which makes the ranking — and the
    score — deterministic for maps with flat regions. A perturbed pixel takes the baseline's value in every channel.
    ``activation_fn`` (default softmax over the classes) turns the logits into the probability of the target class.
    A pair whose map holds a non-finite value scores NaN.

    **InsertionAUC** (Petsiuk et al. 2018, RISE). Start from the baseline image (default ``"blur"``: a Gaussian blur
    of the image, RISE's kernel of 11 px and sigma 5) and reveal the original pixels cumulatively, most relevant
    first, in ``steps`` equal increments over *all* pixels: after step k, round(k * H * W / steps) pixels are revealed,
    so the curve has ``steps + 1`` points from 0% (the baseline) to 100% (the image). The score is the trapezoid area
    under the target probability curve over [0, 1]. Higher is better; range [0, 1].

    **DeletionAUC** (same paper). Start from the image and replace the pixels cumulatively with the baseline (default
    ``"zero"``: zeros in the network's input space), most relevant first, in the same ``steps + 1`` points from 0%
    (the image) to 100% (the baseline); trapezoid area over [0, 1]. Lower is better; range [0, 1].

    **NaiveFaithfulness** (MindSpore XAI's correlation form). Split the ranked pixels into ``min(steps, H * W)``
    non-overlapping bands of equal size (the same rounded boundaries as above), replace one band at a time with the
    baseline (default ``"zero"``), and take the Pearson correlation over bands between the band's mean relevance and
    the probability drop p(image) - p(image with the band replaced). Higher is better; range [-1, 1]; NaN when the
    correlation is undefined (all bands with the same mean relevance — e.g. a constant map — or the same drop).

    Known bugs avoided: MindSpore XAI's DeletionAUC is inverted (a better map scores lower on its "higher is better"
    scale) and its AUC is not a trapezoid over [0, 1]; its NaiveFaithfulness skips a rank when banding and scores a
    uniform map 0 instead of undefined — here the bands cover every ranked pixel exactly once and a uniform map gives
    NaN. Quantus-style loops run one forward pass per step and image; here all steps of all pairs are built from
    the rank on the model's device and evaluated in forward batches of ``eval_batch_size`` without autograd. Images
    known to be equal are run once: the endpoints (the image, the baseline) once per distinct image, and a step that
    only takes pixels already equal to the baseline (e.g. a black background deleted to zeros) reuses the step
    before — the scores are those of the full definition.

    Cost per pair, no backward: InsertionAUC and DeletionAUC at most ``steps + 1`` forward passes (51 with the
    default ``steps=50``, at any image size; fewer when the endpoints or steps repeat an image, as above);
    NaiveFaithfulness ``min(steps, H * W) + 1``. With ``channels_last="auto"`` on the CPU the first batch of a call
    is run twice to choose the memory layout (once per call, not per pair).

    Args:
        metric: "InsertionAUC", "DeletionAUC" or "NaiveFaithfulness".
        steps: number of equal increments (Insertion/Deletion) or bands (NaiveFaithfulness); default 50.
        baseline: "zero", "blur", "mean" (each image's per-channel mean) or a tensor broadcastable to N x C x H x W,
            in the network's input space; default "blur" for InsertionAUC, "zero" otherwise.
        eval_batch_size: number of perturbed images per forward pass; default None: 32 on the CPU, 256 on an
            accelerator.
        blur_kernel_size: Gaussian kernel size of the "blur" baseline; default 11.
        blur_sigma: Gaussian sigma of the "blur" baseline in pixels; default 5.0.
        channels_last: memory layout of the perturbed batches: "auto" (default) uses channels-last on the CPU,
            where oneDNN convolutions are faster, once the first batch showed the network gives the same outputs
            with it; True or False force it.
    """

    def __init__(
        self,
        metric: str,
        steps: int = 50,
        baseline: Optional[BaselineSpec] = None,
        eval_batch_size: Optional[int] = None,
        blur_kernel_size: int = 11,
        blur_sigma: float = 5.0,
        channels_last: Union[bool, str] = "auto",
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"Faithfulness metric must be one of {METRICS}, got {metric!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"{metric}: steps must be a positive integer, got {steps!r}")
        if metric == "NaiveFaithfulness" and steps < 3:
            raise ValueError(f"{metric}: steps (the number of bands) must be at least 3 to correlate, got {steps}")
        if eval_batch_size is not None and (
            isinstance(eval_batch_size, bool) or not isinstance(eval_batch_size, int) or eval_batch_size < 1
        ):
            raise ValueError(f"{metric}: eval_batch_size must be a positive integer or None, got {eval_batch_size!r}")
        if channels_last not in (True, False, "auto"):
            raise ValueError(f"{metric}: channels_last must be True, False or 'auto', got {channels_last!r}")
        if not isinstance(blur_kernel_size, int) or blur_kernel_size < 1 or blur_kernel_size % 2 == 0:
            raise ValueError(f"{metric}: blur_kernel_size must be a positive odd integer, got {blur_kernel_size!r}")
        if not blur_sigma > 0:
            raise ValueError(f"{metric}: blur_sigma must be positive, got {blur_sigma!r}")
        if baseline is None:
            baseline = "blur" if metric == "InsertionAUC" else "zero"
        check_baseline(baseline, metric)
        self.name = metric
        self.higher_is_better = metric != "DeletionAUC"
        self.range = (-1.0, 1.0) if metric == "NaiveFaithfulness" else (0.0, 1.0)
        self.steps = steps
        self.baseline = baseline
        self.eval_batch_size = eval_batch_size
        self.blur_kernel_size = blur_kernel_size
        self.blur_sigma = float(blur_sigma)
        self.channels_last = channels_last

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "steps": self.steps,
            "baseline": baseline_config(self.baseline),
            "eval_batch_size": self.eval_batch_size,
            "channels_last": self.channels_last,
        }
        if isinstance(self.baseline, str) and self.baseline == "blur":
            params["blur_kernel_size"] = self.blur_kernel_size
            params["blur_sigma"] = self.blur_sigma
        return params

    def passes(self, image_shape: tuple[int, int, int], explainer: Any = None) -> Passes:
        _, height, width = image_shape_of(image_shape)
        if self.name == "NaiveFaithfulness":
            return Passes(min(self.steps, height * width) + 1)
        return Passes(self.steps + 1)

    def _batch_size(self, inputs: Tensor) -> int:
        if self.eval_batch_size is not None:
            return self.eval_batch_size
        return CPU_BATCH_SIZE if inputs.device.type == "cpu" else ACCELERATOR_BATCH_SIZE

    def _evaluator(self, network: torch.nn.Module, activation: ActivationFn, inputs: Tensor) -> BatchEvaluator:
        return BatchEvaluator(network, activation, self.name, self.channels_last)

    def _baseline(self, inputs: Tensor) -> Tensor:
        return make_baseline(self.baseline, inputs, self.name, self.blur_kernel_size, self.blur_sigma)

    def curves(
        self,
        network: torch.nn.Module,
        inputs: Tensor,
        targets: Tensor,
        saliency: Tensor,
        activation_fn: Any = None,
    ) -> Tensor:
        """The insertion or deletion curves themselves: N x (steps + 1) target probabilities on the CPU, from 0% to
        100% of the pixels inserted or deleted (what the AUC integrates; useful to plot). NaN rows for maps with a
        non-finite value."""
        if self.name == "NaiveFaithfulness":
            raise ValueError("NaiveFaithfulness has no insertion/deletion curve")
        device = model_device(network, inputs)
        inputs, targets, saliency = validate_pairs(self.name, inputs, targets, saliency, device)
        activation = resolve_activation(activation_fn)
        curves = torch.full((inputs.shape[0], self.steps + 1), math.nan)
        valid = finite_rows(saliency)
        if bool(valid.any()):
            with eval_mode(network):
                curves[valid.cpu()] = self._curves(
                    network, inputs[valid], targets[valid], saliency[valid], activation
                ).cpu()
        return curves

    def _curves(
        self, network: torch.nn.Module, inputs: Tensor, targets: Tensor, saliency: Tensor, activation: ActivationFn
    ) -> Tensor:
        n, _, height, width = inputs.shape
        pixels = height * width
        device = inputs.device
        baseline = self._baseline(inputs)
        start, end = (baseline, inputs) if self.name == "InsertionAUC" else (inputs, baseline)
        points = self.steps + 1
        rank = relevance_rank(saliency)
        counts = step_counts(pixels, self.steps, device)
        # the image after step k is fixed by how many pixels that differ between start and end it has taken:
        # steps that take only pixels equal in both show the same image as the step before and are not re-run
        changed = changed_prefix(start, end, rank)
        key = changed[:, counts]
        first = torch.ones_like(key, dtype=torch.bool)
        first[:, 1:] = key[:, 1:] != key[:, :-1]
        first = first.flatten()
        pair = torch.arange(n, device=device).repeat_interleave(points)[first]
        high = counts.repeat(n)[first]
        high = torch.where(key.flatten()[first] == changed[pair, -1], torch.full_like(high, pixels), high)
        probabilities = perturbed_probabilities(
            self._evaluator(network, activation, inputs), start, end, rank, targets, pair, torch.zeros_like(high),
            high, self._batch_size(inputs),
        )
        return probabilities[first.long().cumsum(0) - 1].view(n, points)

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
        return self._evaluate_with_curves(network, inputs, targets, saliency, masks, explainer, activation)[0]

    def _evaluate_with_curves(
        self,
        network: torch.nn.Module,
        inputs: Tensor,
        targets: Tensor,
        saliency: Tensor,
        masks: Optional[Tensor],
        explainer: Any,
        activation: ActivationFn,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Scores and curves: Insertion/Deletion the ``steps + 1`` probabilities they integrate; NaiveFaithfulness
        the probability of the image (point 0), then of the image with each band replaced."""
        n, _, height, width = inputs.shape
        points = min(self.steps, height * width) + 1 if self.name == "NaiveFaithfulness" else self.steps + 1
        scores = torch.full((n,), math.nan, dtype=torch.float64, device=inputs.device)
        curves = torch.full((n, points), math.nan, dtype=torch.float32, device=inputs.device)
        valid = finite_rows(saliency)
        if bool(valid.any()):
            if self.name == "NaiveFaithfulness":
                chosen_scores, chosen_curves = self._naive(
                    network, inputs[valid], targets[valid], saliency[valid], activation)
            else:
                chosen_curves = self._curves(network, inputs[valid], targets[valid], saliency[valid], activation)
                chosen_scores = trapezoid_auc(chosen_curves)
            scores[valid] = chosen_scores.to(scores.dtype)
            curves[valid] = chosen_curves.to(curves.dtype)
        return scores, curves

    def _naive(
        self, network: torch.nn.Module, inputs: Tensor, targets: Tensor, saliency: Tensor, activation: ActivationFn
    ) -> tuple[Tensor, Tensor]:
        """The correlations and the probabilities they come from (the image's, then each band's)."""
        n, _, height, width = inputs.shape
        device = inputs.device
        pixels = height * width
        bands = min(self.steps, pixels)
        bounds = step_counts(pixels, bands, device)
        # job 0 of each pair: the unperturbed image (empty band); jobs 1..bands: one band replaced each
        low = torch.cat([bounds[:1], bounds[:-1]]).repeat(n)
        high = torch.cat([bounds[:1], bounds[1:]]).repeat(n)
        pair = torch.arange(n, device=device).repeat_interleave(bands + 1)
        rank = relevance_rank(saliency)
        baseline = self._baseline(inputs)
        # a band whose pixels all equal the baseline leaves the image as it is: evaluated with the image itself
        changed = changed_prefix(inputs, baseline, rank)
        high = torch.where(changed[pair, high] == changed[pair, low], low, high)
        probabilities = perturbed_probabilities(
            self._evaluator(network, activation, inputs), inputs, baseline, rank, targets, pair, low, high,
            self._batch_size(inputs),
        ).view(n, bands + 1)
        drop = probabilities[:, :1] - probabilities[:, 1:]
        ordered = torch.sort(saliency.flatten(1).double(), dim=1, descending=True, stable=True).values
        band_of = torch.bucketize(torch.arange(pixels, device=device), bounds[1:], right=True)
        band_sum = torch.zeros(n, bands, dtype=torch.float64, device=device).index_add_(1, band_of, ordered)
        band_mean = band_sum / (bounds[1:] - bounds[:-1]).double()
        return pearson(band_mean, drop), probabilities
