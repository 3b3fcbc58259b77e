"""What Integrated Gradients sees along its path, recorded while Captum integrates: no extra network pass.

Captum evaluates the network at ``baseline + alpha * (input - baseline)`` for every alpha (step-major: all inputs
at the first alpha, then all at the second...) inside its gradient function. :class:`PathRecorder` stands in for
that function and for the forward function: it keeps the activated output's target value and the mean |gradient|
over the input of every evaluated point, then hands Captum the gradients unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import torch
from captum._utils.gradient import compute_gradients
from torch import Tensor, nn


@dataclass
class PathDiagnostics:
    """Per pair (N) and interpolation point (S): ``alphas`` (S, ascending; 0 = baseline, 1 = input), the target's
    probability and the mean |dF/dinput| (N x S), the output gap F(x) - F(baseline) in the network's output units
    and the relative delta |delta| / (|gap| + 1e-3) (N), and the fewest steps that brought the relative delta under
    the tolerance (N, -1 where none tried did; None when not searched)."""

    alphas: Tensor
    probabilities: Tensor
    gradients: Tensor
    output_gap: Tensor
    relative_delta: Tensor
    steps_needed: Optional[Tensor] = None


class PathRecorder:
    """Records each path point's target probability and mean |gradient| during one Captum ``attribute`` call.

    ``forward`` replaces the network as Captum's forward function; ``gradient`` replaces its gradient function.
    Points evaluated outside the gradient function (Captum's convergence-delta passes) are not recorded.
    """

    def __init__(self, network: nn.Module, activation: Callable[[Tensor], Tensor]) -> None:
        self.network = network
        self.activation = activation
        self._recording = False
        self._outputs: list[Tensor] = []
        self._probabilities: list[Tensor] = []
        self._gradients: list[Tensor] = []
        self.chunks: list[tuple[Tensor, Tensor]] = []

    def forward(self, inputs: Tensor, *args: Any) -> Tensor:
        outputs = self.network(inputs, *args)
        if self._recording:
            self._outputs.append(outputs.detach())
        return outputs

    def gradient(self, forward_fn: Callable[..., Tensor], inputs: tuple[Tensor, ...], target_ind: Any = None,
                 additional_forward_args: Any = None) -> tuple[Tensor, ...]:
        self._recording = True
        try:
            gradients = compute_gradients(forward_fn, inputs, target_ind, additional_forward_args)
        finally:
            self._recording = False
        outputs = torch.cat(self._outputs)
        self._outputs.clear()
        targets = torch.as_tensor(target_ind, device=outputs.device).reshape(-1, 1).expand(outputs.shape[0], 1)
        with torch.no_grad():
            self._probabilities.append(self.activation(outputs.float()).gather(1, targets)[:, 0])
            gradient = gradients[0].detach().flatten(1)  # the 1-norm / size: mean |gradient|, without a copy
            self._gradients.append(torch.linalg.vector_norm(gradient, ord=1, dim=1).float() / gradient.shape[1])
        return gradients

    def end_chunk(self, pairs: int, steps: int) -> None:
        """Close one ``attribute`` call of ``pairs`` inputs over ``steps`` alphas: N x S probabilities, gradients."""
        probabilities, gradients = torch.cat(self._probabilities), torch.cat(self._gradients)
        self._probabilities.clear()
        self._gradients.clear()
        if probabilities.numel() != pairs * steps:
            raise RuntimeError(f"recorded {probabilities.numel()} path points, expected {pairs} pairs x {steps} steps")
        self.chunks.append((probabilities.view(steps, pairs).T, gradients.view(steps, pairs).T))

    def collected(self) -> tuple[Tensor, Tensor]:
        """Every chunk's probabilities and gradients, N x S each, in the order the pairs were given."""
        return torch.cat([c[0] for c in self.chunks]), torch.cat([c[1] for c in self.chunks])
