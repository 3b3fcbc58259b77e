"""Monte Carlo dropout: the spread of the probabilities over several passes with only the Dropout layers active.

Only ``torch.nn`` dropout modules are switched to training mode; BatchNorm and everything else stay in eval mode,
so running statistics are never updated (MindSpore XAI put the whole network in training mode).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd

from .explainers.base import eval_mode

INTERVAL = 0.95


def dropout_modules(network: nn.Module) -> list[nn.Module]:
    """Every dropout module (Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout) of the network."""
    return [module for module in network.modules() if isinstance(module, _DropoutNd)]


@dataclass
class Uncertainty:
    """Per (sample, label): standard deviation of the MC probabilities and the central 95% interval."""

    sd: Tensor
    lower: Tensor
    upper: Tensor


class MCDropout:
    """``n_samples`` stochastic passes with dropout on; the interval is given by the empirical 2.5% and 97.5%
    quantiles of the sampled probabilities (linear interpolation)."""

    def __init__(self, network: nn.Module, n_samples: int = 10) -> None:
        if not isinstance(n_samples, int) or n_samples < 2:
            raise ValueError(f"n_samples must be an integer >= 2 for MC dropout, got {n_samples!r}")
        if not dropout_modules(network):
            raise ValueError(
                f"MC dropout needs dropout layers, and {type(network).__name__} has no torch.nn.Dropout module "
                "(dropout called as a function cannot be switched on); register_uncertainty cannot be used with it"
            )
        self.network = network
        self.n_samples = n_samples

    def config(self) -> dict:
        return {"method": "mc_dropout", "n_samples": self.n_samples, "interval": INTERVAL,
                "interval_method": "empirical quantiles", "dropout_layers": len(dropout_modules(self.network))}

    @torch.no_grad()
    def __call__(self, inputs: Tensor, activation: Callable[[Tensor], Tensor]) -> Uncertainty:
        with eval_mode(self.network):
            for module in dropout_modules(self.network):
                module.train()
            samples = torch.stack([activation(self.network(inputs)).float() for _ in range(self.n_samples)])
        alpha = (1 - INTERVAL) / 2
        bounds = torch.quantile(samples, torch.tensor([alpha, 1 - alpha], device=samples.device), dim=0)
        return Uncertainty(samples.std(dim=0), bounds[0], bounds[1])
