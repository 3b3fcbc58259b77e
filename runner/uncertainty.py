"""The uncertainty of every probability: the spread over several stochastic passes of the network.

Two ways to make the passes differ. :class:`MCDropout` (Monte Carlo dropout) switches only the ``torch.nn``
dropout modules to training mode; BatchNorm and everything else stay in eval mode, so running statistics are never
updated (MindSpore XAI put the whole network in training mode). :class:`InputNoise` is for networks without
dropout: the network stays in eval mode and each pass sees the input with seeded Gaussian noise added (test-time
input perturbation). Both return the standard deviation of the sampled probabilities and their empirical central
95% interval, and both state their cost with ``passes()``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd

from .cost import Passes
from .explainers.base import eval_mode

INTERVAL = 0.95
METHODS = ("mc_dropout", "input_noise")


def dropout_modules(network: nn.Module) -> list[nn.Module]:
    """Every dropout module (Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout) of the network."""
    return [module for module in network.modules() if isinstance(module, _DropoutNd)]


@dataclass
class Uncertainty:
    """Per (sample, label): standard deviation of the sampled probabilities and the central 95% interval."""

    sd: Tensor
    lower: Tensor
    upper: Tensor


def summarize(samples: Tensor) -> Uncertainty:
    """n_samples x N x classes probabilities -> sd and the empirical 2.5% / 97.5% quantiles (linear interpolation)."""
    alpha = (1 - INTERVAL) / 2
    bounds = torch.quantile(samples, torch.tensor([alpha, 1 - alpha], device=samples.device), dim=0)
    return Uncertainty(samples.std(dim=0), bounds[0], bounds[1])


def _check_samples(n_samples: Any, what: str) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2 for {what}, got {n_samples!r}")
    return n_samples


class MCDropout:
    """``n_samples`` stochastic passes with dropout on; the interval is given by the empirical 2.5% and 97.5%
    quantiles of the sampled probabilities (linear interpolation). Cost: ``n_samples`` forward passes per image."""

    def __init__(self, network: nn.Module, n_samples: int = 10) -> None:
        _check_samples(n_samples, "MC dropout")
        if not dropout_modules(network):
            raise ValueError(
                f"MC dropout needs dropout layers, and {type(network).__name__} has no torch.nn.Dropout module "
                "(dropout called as a function cannot be switched on); for a network without dropout use "
                "test-time input noise instead: register_uncertainty(method=\"input_noise\") (options: std, seed)"
            )
        self.network = network
        self.n_samples = n_samples

    def config(self) -> dict[str, Any]:
        return {"method": "mc_dropout", "n_samples": self.n_samples, "interval": INTERVAL,
                "interval_method": "empirical quantiles", "dropout_layers": len(dropout_modules(self.network))}

    def passes(self, image_shape: Optional[tuple[int, int, int]] = None) -> Passes:
        """Forward passes per image (not per pair: the probabilities of all labels come from the same passes)."""
        return Passes(self.n_samples)

    @torch.no_grad()
    def __call__(self, inputs: Tensor, activation: Callable[[Tensor], Tensor]) -> Uncertainty:
        with eval_mode(self.network):
            for module in dropout_modules(self.network):
                module.train()
            samples = torch.stack([activation(self.network(inputs)).float() for _ in range(self.n_samples)])
        return summarize(samples)


class InputNoise:
    """Test-time input noise: ``n_samples`` passes in eval mode, each on the input plus Gaussian noise of standard
    deviation ``std`` in the units of the network's input (the normalised image: with ImageNet normalisation the
    default 0.1 is about 0.023 of the pixel range, 6 of 255 grey levels — small enough to keep the image, large
    enough to show where the decision is fragile); sd and empirical 95% interval as :class:`MCDropout`.

    Each image's noise comes from a CPU generator seeded with ``seed`` and a digest of the image, so an image gets
    the same noise whatever its batch, on any device, in resumed runs. ``std=0`` gives sd 0 (a check of the
    wiring). It measures sensitivity to small input changes, not the model's epistemic uncertainty that MC dropout
    approximates; the two are not interchangeable in a comparison of runs.

    Cost: ``n_samples`` forward passes per image (default 10).
    """

    def __init__(self, network: nn.Module, n_samples: int = 10, std: float = 0.1, seed: int = 0) -> None:
        if not isinstance(network, nn.Module):
            raise TypeError(f"input noise needs a torch.nn.Module, got {type(network).__name__}")
        _check_samples(n_samples, "input noise")
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not std >= 0:
            raise ValueError(f"std must be a non-negative number, got {std!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.network = network
        self.n_samples = n_samples
        self.std = float(std)
        self.seed = seed

    def config(self) -> dict[str, Any]:
        return {"method": "input_noise", "n_samples": self.n_samples, "std": self.std, "seed": self.seed,
                "interval": INTERVAL, "interval_method": "empirical quantiles", "noise": "gaussian, input units"}

    def passes(self, image_shape: Optional[tuple[int, int, int]] = None) -> Passes:
        """Forward passes per image (not per pair: the probabilities of all labels come from the same passes)."""
        return Passes(self.n_samples)

    def noise(self, inputs: Tensor) -> Tensor:
        """The noise of every pass: n_samples x N x C x H x W on the CPU, N(0, std^2), seeded per image."""
        return torch.stack(list(self._noise(inputs)))

    def _noise(self, inputs: Tensor) -> Iterator[Tensor]:
        """The noise of one pass after the other (N x C x H x W each): one pass in memory at a time."""
        images = inputs.detach().to("cpu", torch.float32)
        generators = []
        for image in images:
            digest = hashlib.blake2b(image.contiguous().numpy().tobytes(), digest_size=8).digest()
            generators.append(torch.Generator().manual_seed(
                (self.seed * 1_000_003 + int.from_bytes(digest, "little")) % 2**63))
        for _ in range(self.n_samples):
            draws = [torch.randn(images.shape[1:], generator=generator) for generator in generators]
            yield (torch.stack(draws) if draws else torch.zeros(images.shape)) * self.std

    @torch.no_grad()
    def __call__(self, inputs: Tensor, activation: Callable[[Tensor], Tensor]) -> Uncertainty:
        with eval_mode(self.network):
            samples = torch.stack([
                activation(self.network(inputs + noise.to(device=inputs.device, dtype=inputs.dtype))).float()
                for noise in self._noise(inputs)])
        return summarize(samples)


def make_uncertainty(method: str, network: nn.Module, n_samples: int = 10, **options: Any) -> Any:
    """The uncertainty estimator ``method`` names: ``"mc_dropout"`` (:class:`MCDropout`, no options) or
    ``"input_noise"`` (:class:`InputNoise`; options ``std``, ``seed``)."""
    if method == "mc_dropout":
        if options:
            raise TypeError(f"mc_dropout takes no options, got {', '.join(sorted(options))}")
        return MCDropout(network, n_samples)
    if method == "input_noise":
        unknown = sorted(set(options) - {"std", "seed"})
        if unknown:
            raise TypeError(f"input_noise takes the options std and seed, got {', '.join(unknown)}")
        return InputNoise(network, n_samples, **options)
    raise ValueError(f"uncertainty method must be one of {', '.join(METHODS)}, got {method!r}")
