"""The ``Benchmark`` base class and the tensor helpers the benchmarks share.

Every benchmark scores (image, label, relevance map) triples: ``evaluate`` takes a batch of N pairs and returns N
scores as a float tensor on the CPU, NaN where the score is undefined for a pair. The base class validates the
arguments once (shapes, dtypes, required masks or explainer) so the metric code only deals with clean tensors on the
model's device.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor

from ..cost import Passes
from ..explainers.base import eval_mode, image_shape_of
from .baselines import BASELINE_NAMES, BaselineSpec, baseline_config, check_baseline, gaussian_blur, make_baseline
from .statistics import average_ranks, finite_rows, pearson, spearman, trapezoid_auc

__all__ = [
    "ActivationFn", "BASELINE_NAMES", "BaselineSpec", "BatchEvaluator", "Benchmark", "average_ranks",
    "baseline_config", "changed_prefix", "check_baseline", "eval_mode", "explain_maps", "explainer_passes",
    "finite_rows", "gaussian_blur", "image_shape_of", "make_baseline", "model_device", "pearson",
    "perturbed_probabilities", "pick_targets", "relevance_rank", "resolve_activation", "spearman", "step_counts",
    "trapezoid_auc", "validate_masks", "validate_pairs",
]

ActivationFn = Callable[[Tensor], Tensor]


class Benchmark:
    """Base class of the benchmarks.

    Subclasses set the class attributes below, store their parameters as attributes, list them in ``_params()`` and
    implement ``_evaluate`` on validated tensors. ``evaluate`` is the public entry point.

    Subclasses also implement :meth:`passes` (their cost per pair). One that does not raises NotImplementedError
    there; the runner's plan (``xaiboard.runner.plan.passes_of``) shows such a benchmark, or an object without a
    ``passes`` method, as "unknown" cost and runs it all the same.
    """

    name: str = ""
    higher_is_better: bool = True
    range: tuple[float, Optional[float]] = (0.0, 1.0)
    aggregation: str = "mean"
    requires_masks: bool = False
    requires_explainer: bool = False

    def _params(self) -> dict[str, Any]:
        """The benchmark's own parameters (JSON-able)."""
        return {}

    def config(self) -> dict[str, Any]:
        """The JSON-able configuration stored with the scores: class, metric name and every parameter."""
        return {"class": type(self).__name__, "name": self.name, **self._params()}

    def passes(self, image_shape: tuple[int, int, int], explainer: Any = None) -> Passes:
        """Network passes per (image, label) pair for images of ``image_shape`` (C, H, W), counting the explainer
        runs it makes with ``explainer`` (the one that made the maps) and not the maps it is given."""
        raise NotImplementedError(
            f"{type(self).__name__} does not state its cost: define passes(image_shape, explainer) -> Passes "
            "(forward and backward passes per (image, label) pair); until then the run plan shows it as unknown"
        )

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self._params().items())
        return f"{type(self).__name__}({self.name!r}{', ' if params else ''}{params})"

    def evaluate(
        self,
        network: torch.nn.Module,
        inputs: Tensor,
        targets: Tensor,
        saliency: Tensor,
        masks: Optional[Tensor] = None,
        explainer: Any = None,
        activation_fn: Union[ActivationFn, str, None] = None,
    ) -> Tensor:
        """Score N (image, target, map) pairs.

        Args:
            network: the classifier; it is switched to eval mode for the call and its modes are restored after.
            inputs: N x C x H x W images, as the network takes them.
            targets: N class indices (the label each map explains).
            saliency: N x H x W relevance maps (N x 1 x H x W is accepted), higher = more evidence for the target.
            masks: N x H x W bool ground-truth regions; required by the localization benchmarks.
            explainer: the explainer that made the maps; required by benchmarks that explain again.
            activation_fn: logits -> probabilities; a callable, or "softmax" (default, over dim 1), "sigmoid",
                "identity".

        Returns:
            N float32 scores on the CPU; NaN where the score is undefined for that pair.
        """
        return self.evaluate_with_curves(network, inputs, targets, saliency, masks, explainer, activation_fn)[0]

    def evaluate_with_curves(
        self,
        network: torch.nn.Module,
        inputs: Tensor,
        targets: Tensor,
        saliency: Tensor,
        masks: Optional[Tensor] = None,
        explainer: Any = None,
        activation_fn: Union[ActivationFn, str, None] = None,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """:meth:`evaluate`, plus the curve each score summarises (N x points target probabilities on the CPU, NaN
        rows where the score is NaN) for benchmarks that have one (Insertion, Deletion, NaiveFaithfulness); None
        for the others. The curves come from the same passes as the scores."""
        if not isinstance(network, torch.nn.Module):
            raise TypeError(f"{self.name}: network must be a torch.nn.Module, got {type(network).__name__}")
        device = model_device(network, inputs)
        inputs, targets, saliency = validate_pairs(self.name, inputs, targets, saliency, device)
        if masks is not None:
            masks = validate_masks(self.name, masks, saliency.shape, device)
        if self.requires_masks and masks is None:
            raise ValueError(f"{self.name} needs ground-truth masks: pass masks= as an N x H x W bool tensor")
        if self.requires_explainer and explainer is None:
            raise ValueError(
                f"{self.name} explains again and needs the explainer that made the maps: pass explainer="
            )
        if self.requires_explainer and not callable(getattr(explainer, "explain", None)):
            raise TypeError(f"{self.name}: explainer must have an explain(inputs, targets) method")
        activation = resolve_activation(activation_fn)
        if inputs.shape[0] == 0:
            return torch.empty(0, dtype=torch.float32), None
        with eval_mode(network):
            scores, curves = self._evaluate_with_curves(network, inputs, targets, saliency, masks, explainer,
                                                        activation)
        return (scores.detach().to(device="cpu", dtype=torch.float32),
                None if curves is None else curves.detach().to(device="cpu", dtype=torch.float32))

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
        """Scores and curves on validated tensors; benchmarks without curves return None beside their scores."""
        return self._evaluate(network, inputs, targets, saliency, masks, explainer, activation), None

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
        raise NotImplementedError


# -- validation ----------------------------------------------------------------------------------------------------


def model_device(network: torch.nn.Module, inputs: Any = None) -> torch.device:
    """The device of the network's first parameter or buffer; the inputs' device for a network without any."""
    for tensor in network.parameters():
        return tensor.device
    for tensor in network.buffers():
        return tensor.device
    if isinstance(inputs, Tensor):
        return inputs.device
    return torch.device("cpu")


def validate_pairs(name: str, inputs: Any, targets: Any, saliency: Any, device: torch.device) -> tuple[Tensor, ...]:
    """Check and move the images, targets and maps of N pairs; raise a one-line error naming the bad argument."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"{name}: inputs must be a tensor, got {type(inputs).__name__}")
    if inputs.dim() != 4:
        raise ValueError(f"{name}: inputs must be N x C x H x W, got shape {tuple(inputs.shape)}")
    if not inputs.is_floating_point():
        raise TypeError(f"{name}: inputs must be a floating point tensor, got {inputs.dtype}")
    n, _, height, width = inputs.shape
    targets = torch.as_tensor(targets)
    if targets.dim() == 0:
        targets = targets.reshape(1)
    if targets.dim() != 1 or targets.shape[0] != n:
        raise ValueError(f"{name}: targets must hold N = {n} class indices, got shape {tuple(targets.shape)}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"{name}: targets must be integer class indices, got {targets.dtype}")
    if n and int(targets.min()) < 0:
        raise ValueError(f"{name}: targets must be non-negative class indices, got {int(targets.min())}")
    if not isinstance(saliency, Tensor):
        raise TypeError(f"{name}: saliency must be a tensor, got {type(saliency).__name__}")
    if saliency.dim() == 4 and saliency.shape[1] == 1:
        saliency = saliency[:, 0]
    if tuple(saliency.shape) != (n, height, width):
        raise ValueError(
            f"{name}: saliency must be N x H x W = {(n, height, width)} to match the inputs, "
            f"got {tuple(saliency.shape)}"
        )
    return (
        inputs.detach().to(device),
        targets.to(device=device, dtype=torch.long),
        saliency.detach().to(device=device, dtype=torch.float32),
    )


def validate_masks(name: str, masks: Any, shape: torch.Size, device: torch.device) -> Tensor:
    """Check N x H x W masks; non-bool masks count every non-zero pixel as inside."""
    if not isinstance(masks, Tensor):
        raise TypeError(f"{name}: masks must be a tensor, got {type(masks).__name__}")
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if tuple(masks.shape) != tuple(shape):
        raise ValueError(f"{name}: masks must be N x H x W = {tuple(shape)} like the maps, got {tuple(masks.shape)}")
    return (masks != 0).to(device)


def resolve_activation(activation_fn: Union[ActivationFn, str, None]) -> ActivationFn:
    """Turn ``None``/"softmax"/"sigmoid"/"identity" or a callable into a logits -> probabilities function."""
    if activation_fn is None or activation_fn == "softmax":
        return lambda logits: torch.softmax(logits, dim=1)
    if activation_fn == "sigmoid":
        return torch.sigmoid
    if activation_fn == "identity":
        return lambda logits: logits
    if isinstance(activation_fn, str):
        raise ValueError(f"activation_fn must be 'softmax', 'sigmoid', 'identity' or a callable, got {activation_fn!r}")
    if not callable(activation_fn):
        raise TypeError(f"activation_fn must be callable, got {type(activation_fn).__name__}")
    return activation_fn


# -- model evaluation ----------------------------------------------------------------------------------------------


class BatchEvaluator:
    """Runs the network on batches of images without autograd and returns the activated outputs.

    ``channels_last`` picks the memory layout of the batches: on the CPU oneDNN convolutions run several times
    faster on channels-last images, and batches built by the benchmarks are only read by the network, so
    ``"auto"`` (the default) uses it on the CPU — after checking on the first batch that the network gives the
    same outputs (to 1e-5) as on contiguous images and raises no error; otherwise it keeps contiguous images.
    ``True`` always converts, ``False`` never.
    """

    def __init__(
        self, network: torch.nn.Module, activation: ActivationFn, name: str, channels_last: Union[bool, str] = "auto"
    ) -> None:
        self.network = network
        self.activation = activation
        self.name = name
        self.channels_last: Optional[bool] = None if channels_last == "auto" else bool(channels_last)

    def _run(self, batch: Tensor) -> Tensor:
        with torch.no_grad():
            outputs = self.activation(self.network(batch))
        if outputs.dim() != 2 or outputs.shape[0] != batch.shape[0]:
            raise ValueError(
                f"{self.name}: the network (after activation) must return N x classes, got {tuple(outputs.shape)}"
            )
        return outputs

    def probabilities(self, batch: Tensor) -> Tensor:
        """The activated outputs of a batch of N x C x H x W images: N x classes."""
        if self.channels_last is None:
            reference = self._run(batch)
            self.channels_last = False
            if batch.device.type == "cpu":
                try:
                    converted = self._run(batch.contiguous(memory_format=torch.channels_last))
                except Exception:  # e.g. .view() on activations that are not contiguous
                    return reference
                self.channels_last = bool(torch.allclose(converted, reference, rtol=1e-5, atol=1e-5))
            return reference
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self._run(batch)

    def target_probabilities(self, batch: Tensor, targets: Tensor) -> Tensor:
        """The activated output of each image of ``batch`` at its target class."""
        outputs = self.probabilities(batch)
        return pick_targets(outputs, targets, self.name)


def pick_targets(outputs: Tensor, targets: Tensor, name: str) -> Tensor:
    """``outputs[i, targets[i]]`` as float32, with a clear error for a target beyond the network's outputs."""
    if targets.numel() and int(targets.max()) >= outputs.shape[1]:
        raise ValueError(
            f"{name}: target {int(targets.max())} is out of range for a network with {outputs.shape[1]} outputs"
        )
    return outputs.gather(1, targets[:, None])[:, 0].float()


def relevance_rank(saliency: Tensor) -> Tensor:
    """Each pixel's position when the pixels of its map are sorted by descending relevance (0 = most relevant).

    Ties are broken by pixel index in row-major order (the pixel with the smaller row, then the smaller column,
    comes first): a stable sort of the descending values. Returns N x (H * W) long.
    """
    flat = saliency.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def step_counts(pixels: int, steps: int, device: Optional[torch.device] = None) -> Tensor:
    """Number of pixels perturbed after each of ``steps`` equal increments: round(k * pixels / steps), k = 0..steps.

    Rounding is half-up in integer arithmetic, so the counts are exact for any image size and end at ``pixels``.
    """
    k = torch.arange(steps + 1, device=device, dtype=torch.long)
    return torch.div(2 * k * pixels + steps, 2 * steps, rounding_mode="floor")


def changed_prefix(start: Tensor, end: Tensor, rank: Tensor) -> Tensor:
    """How many of the first c pixels in relevance order differ between ``start`` and ``end`` (in any channel):
    N x (H * W + 1), column c for the c most relevant pixels. Two perturbed images that took the same number of
    differing pixels in rank order are equal."""
    differs = (start != end).any(dim=1).flatten(1).long()
    by_rank = torch.zeros_like(differs).scatter_(1, rank, differs)
    return torch.cat([torch.zeros_like(by_rank[:, :1]), by_rank.cumsum(dim=1)], dim=1)


def perturbed_probabilities(
    evaluator: BatchEvaluator,
    start: Tensor,
    end: Tensor,
    rank: Tensor,
    targets: Tensor,
    pair: Tensor,
    low: Tensor,
    high: Tensor,
    eval_batch_size: int,
) -> Tensor:
    """Target probabilities of many perturbed images, built and evaluated chunk by chunk.

    Job j shows image ``pair[j]`` taken from ``end`` at the pixels whose relevance rank lies in
    ``[low[j], high[j])`` and from ``start`` everywhere else (all channels of a pixel together). Jobs that show an
    unperturbed ``start`` or ``end`` image (0% and 100% of a curve) are evaluated once per distinct image; the
    others in forward batches of ``eval_batch_size`` built on the fly, on the model's device.
    """
    n_jobs = pair.shape[0]
    pixels = rank.shape[1]
    height, width = start.shape[2:]
    out = torch.empty(n_jobs, dtype=torch.float32, device=start.device)
    shows_start = high <= low
    shows_end = (low <= 0) & (high >= pixels) & ~shows_start
    whole = shows_start | shows_end
    if bool(whole.any()):
        jobs = whole.nonzero()[:, 0]
        source = pair[jobs] + start.shape[0] * shows_end[jobs].long()  # index into cat([start, end])
        used, source_inverse = torch.unique(source, return_inverse=True)
        candidates = torch.cat([start, end])[used]
        images, image_inverse = torch.unique(candidates.flatten(1), dim=0, return_inverse=True)
        images = images.view(-1, *start.shape[1:])
        outputs = torch.cat([
            evaluator.probabilities(images[begin : begin + eval_batch_size])
            for begin in range(0, images.shape[0], eval_batch_size)
        ])
        out[jobs] = pick_targets(outputs[image_inverse[source_inverse]], targets[pair[jobs]], evaluator.name)
    mixed = (~whole).nonzero()[:, 0]
    for begin in range(0, mixed.shape[0], eval_batch_size):
        jobs = mixed[begin : begin + eval_batch_size]
        index = pair[jobs]
        pixel_rank = rank[index]
        chosen = (pixel_rank >= low[jobs, None]) & (pixel_rank < high[jobs, None])
        batch = torch.where(chosen.view(-1, 1, height, width), end[index], start[index])
        out[jobs] = evaluator.target_probabilities(batch, targets[index])
    return out


def explainer_passes(explainer: Any, image_shape: tuple[int, int, int], name: str) -> Passes:
    """One run of ``explainer`` per pair, for the benchmarks that explain again. An explainer that does not state
    its cost (no ``passes``, or NotImplementedError) makes the benchmark's cost unknown: NotImplementedError."""
    image_shape_of(image_shape)
    passes = getattr(explainer, "passes", None)
    if not callable(passes):
        label = getattr(explainer, "name", type(explainer).__name__)
        raise NotImplementedError(f"{name} explains again, and the explainer {label!r} does not state its cost "
                                  "(no passes(image_shape) method)")
    result = passes(image_shape)
    if not isinstance(result, Passes):
        raise TypeError(f"{name}: the explainer's passes() returned {type(result).__name__}, not Passes")
    return result


def explain_maps(explainer: Any, inputs: Tensor, targets: Tensor, batch_size: Optional[int], name: str) -> Tensor:
    """Explain (inputs, targets) with ``explainer`` — one call, or calls of ``batch_size`` pairs — and check that
    it returns one H x W map per pair (a singleton channel dimension is dropped)."""
    count, _, height, width = inputs.shape
    chunk = batch_size or max(count, 1)
    maps = []
    for begin in range(0, count, chunk):
        part = inputs[begin : begin + chunk]
        explained = explainer.explain(part, targets[begin : begin + chunk])
        if not isinstance(explained, Tensor):
            raise TypeError(f"{name}: the explainer returned {type(explained).__name__}, not a tensor of maps")
        if explained.dim() == 4 and explained.shape[1] == 1:
            explained = explained[:, 0]
        if tuple(explained.shape) != (part.shape[0], height, width):
            raise ValueError(
                f"{name}: the explainer returned maps of shape {tuple(explained.shape)}, "
                f"expected {(part.shape[0], height, width)}"
            )
        maps.append(explained.detach().float())
    return torch.cat(maps)
