"""Model parameter randomisation: a map that does not change when the weights are scrambled explains nothing."""

from __future__ import annotations

import copy
import math
from typing import Any, Optional

import torch
from torch import Tensor

from ..cost import Passes
from .base import ActivationFn, Benchmark, explain_maps, explainer_passes, spearman


class Randomization(Benchmark):
    """Model parameter randomisation test (Adebayo et al. 2018, "Sanity checks for saliency maps"), full model.

    The network is deep-copied and every parameter of the copy is re-initialised: each module that defines
    ``reset_parameters()`` (Linear, Conv, BatchNorm, …) calls it, and any other parameter is re-drawn (tensors of two
    or more dimensions with Kaiming-uniform, PyTorch's default for Linear and Conv weights; others uniformly in
    ±1/sqrt(numel)). The global RNG is seeded with ``seed`` inside ``torch.random.fork_rng``, so the copy is the same
    at every call and the caller's RNG state is left as it was. ``explainer.with_network(copy)`` explains the same
    (image, target) pairs on the copy, and the score is the Spearman rank correlation (ties get average ranks)
    between |r| of the map being scored and |r| of the copy's map. Lower is better (the map depends on the weights);
    range [−1, 1]. NaN where either map is constant or holds a non-finite value.

    The user's network is never modified: only the copy is re-initialised, and the copy lives for one call (a new
    one per call, so a network trained between calls is copied afresh). ``network`` must be the module the explainer
    was built on.

    Known bugs avoided: Quantus' PyTorch randomisation calls ``reset_parameters()`` only, so parameters held directly
    by a custom module stay trained, it draws from the unseeded global RNG (and moves it), and its early versions
    reset the user's model in place and reloaded the weights afterwards; here every parameter is re-drawn from a
    seed, on a copy.

    Cost per pair: one run of the explainer on the randomised copy (its own passes per pair), plus the copy
    itself, once per call (no network pass).

    Args:
        seed: seed of the re-initialisation; default 2018 — not 0, so a network built right after
            ``torch.manual_seed(0)`` is not re-initialised to its own weights.
        explain_batch_size: largest number of maps per explainer call, or None (default) for one call.
    """

    name = "Randomization"
    higher_is_better = False
    range = (-1.0, 1.0)
    requires_explainer = True

    def __init__(self, seed: int = 2018, explain_batch_size: Optional[int] = None) -> None:
        if explain_batch_size is not None and (not isinstance(explain_batch_size, int) or explain_batch_size < 1):
            raise ValueError(
                f"Randomization: explain_batch_size must be a positive integer or None, got {explain_batch_size!r}"
            )
        self.seed = int(seed)
        self.explain_batch_size = explain_batch_size

    def _params(self) -> dict[str, Any]:
        return {"seed": self.seed, "explain_batch_size": self.explain_batch_size}

    def passes(self, image_shape: tuple[int, int, int], explainer: Any = None) -> Passes:
        return explainer_passes(explainer, image_shape, self.name)

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
        if not callable(getattr(explainer, "with_network", None)):
            raise TypeError(f"{self.name}: the explainer must have with_network(network) to explain a randomised copy")
        randomized = randomized_copy(network, self.seed)
        bound = explainer.with_network(randomized)
        maps = explain_maps(bound, inputs, targets, self.explain_batch_size, self.name).to(saliency.device)
        return spearman(saliency.flatten(1).abs(), maps.flatten(1).abs())


def randomized_copy(network: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A deep copy of ``network`` with every parameter re-initialised from ``seed``; ``network`` is not touched."""
    randomized = copy.deepcopy(network)
    cuda = sorted({t.device.index or 0 for t in randomized.parameters() if t.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        done: set[int] = set()
        for module in randomized.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                done.update(id(p) for p in module.parameters(recurse=False))
        generator = torch.Generator(device="cpu").manual_seed(seed)
        for parameter in randomized.parameters():
            if id(parameter) in done:
                continue
            drawn = torch.empty(parameter.shape, dtype=torch.float32)
            if parameter.dim() >= 2:
                fan_in = parameter.shape[1] * math.prod(parameter.shape[2:])
                bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_ with a = sqrt(5)
                drawn.uniform_(-bound, bound, generator=generator)
            else:
                bound = 1 / math.sqrt(max(parameter.numel(), 1))
                drawn.uniform_(-bound, bound, generator=generator)
            parameter.copy_(drawn.to(device=parameter.device, dtype=parameter.dtype))
    return randomized
