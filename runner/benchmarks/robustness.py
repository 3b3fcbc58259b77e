"""Robustness: does the map stay put when the image changes imperceptibly?"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Optional

import torch
from torch import Tensor

from ..cost import Passes
from .base import ActivationFn, Benchmark, explain_maps, explainer_passes, finite_rows


class Robustness(Benchmark):
    """Max sensitivity (Yeh et al. 2019) of the explainer around each image.

    For each pair, ``n_samples`` noisy copies x + ε are drawn with every input value shifted by ε ~ U(−radius, radius)
    independently (in the network's input space), the explainer explains each copy for the same target, and the score
    is max over copies of ‖S(x + ε) − S(x)‖₂ / ‖S(x)‖₂, where S(x) is the map being scored and the norm runs over the
    H x W map. Lower is better; range [0, ∞). NaN if ‖S(x)‖ = 0 (a zero map has no relative change), or if S(x) or a
    noisy map holds a non-finite value.

    Every copy is kept, also one whose predicted class flips: max sensitivity is defined over the whole ball of
    radius ``radius``, so keep the radius small (the default, 0.02, is Captum's ``sensitivity_max`` radius). The noise
    of each image comes from a ``torch.Generator`` seeded with ``seed`` and a digest of the image, drawn on the CPU:
    the same image gets the same noise on any device, in any batch, at every call. All copies of all pairs are
    explained in one explainer call (``explain_batch_size`` splits it when given).

    Known bugs avoided: MindSpore XAI's robustness means to accept a noisy copy only when the output barely moves,
    but its check runs the network on the clean image instead of the copy, so it never tests the noisy input (every
    copy is kept while the docs suggest otherwise), and it reports exp(−sensitivity) under the same name. Here no
    acceptance check is made, as stated above, and the score is the sensitivity itself.

    Cost per pair: ``n_samples`` runs of the explainer (its own passes per pair times ``n_samples``) and nothing
    else: with the default 10 and IntegratedGradients' defaults, 340 forward + 320 backward passes. This is the
    most expensive benchmark by far; score a subset (the runner's ``benchmark_samples``) or lower ``n_samples``.

    Args:
        n_samples: noisy copies per pair; default 10.
        radius: half-width of the uniform noise; default 0.02.
        seed: seed of the noise generator; default 0.
        explain_batch_size: largest number of copies per explainer call, or None (default) for one call.
    """

    name = "Robustness"
    higher_is_better = False
    range = (0.0, None)
    requires_explainer = True

    def __init__(
        self, n_samples: int = 10, radius: float = 0.02, seed: int = 0, explain_batch_size: Optional[int] = None
    ) -> None:
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"Robustness: n_samples must be a positive integer, got {n_samples!r}")
        if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not radius > 0:
            raise ValueError(f"Robustness: radius must be a positive number, got {radius!r}")
        if explain_batch_size is not None and (not isinstance(explain_batch_size, int) or explain_batch_size < 1):
            raise ValueError(
                f"Robustness: explain_batch_size must be a positive integer or None, got {explain_batch_size!r}"
            )
        self.n_samples = n_samples
        self.radius = float(radius)
        self.seed = int(seed)
        self.explain_batch_size = explain_batch_size

    def _params(self) -> dict[str, Any]:
        return {
            "n_samples": self.n_samples,
            "radius": self.radius,
            "seed": self.seed,
            "explain_batch_size": self.explain_batch_size,
        }

    def passes(self, image_shape: tuple[int, int, int], explainer: Any = None) -> Passes:
        return explainer_passes(explainer, image_shape, self.name) * self.n_samples

    def noise(self, inputs: Tensor) -> Tensor:
        """The noise added to each image: N x n_samples x C x H x W on the CPU, U(-radius, radius).

        Each image's noise comes from its own generator, seeded with ``seed`` and a digest of the image's values,
        so a pair's score does not depend on the other pairs of the call (batch composition, resumed runs)."""
        draws = []
        for image in inputs.detach().to("cpu", torch.float32):
            digest = hashlib.blake2b(image.contiguous().numpy().tobytes(), digest_size=8).digest()
            generator = torch.Generator(device="cpu").manual_seed(
                (self.seed * 1_000_003 + int.from_bytes(digest, "little")) % 2**63
            )
            draws.append(torch.rand((self.n_samples, *image.shape), generator=generator))
        return (torch.stack(draws) * 2 - 1) * self.radius

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
        n = inputs.shape[0]
        noisy = inputs.unsqueeze(1) + self.noise(inputs).to(device=inputs.device, dtype=inputs.dtype)
        noisy = noisy.flatten(0, 1)
        noisy_targets = targets.repeat_interleave(self.n_samples)
        noisy_maps = explain_maps(explainer, noisy, noisy_targets, self.explain_batch_size, self.name)
        noisy_maps = noisy_maps.to(saliency.device).view(n, self.n_samples, -1).double()
        clean = saliency.flatten(1).double()
        change = (noisy_maps - clean.unsqueeze(1)).norm(dim=2).amax(dim=1)
        reference = clean.norm(dim=1)
        scores = change / reference
        undefined = (reference == 0) | ~finite_rows(saliency) | ~torch.isfinite(change)
        return torch.where(undefined, torch.full_like(scores, math.nan), scores)

