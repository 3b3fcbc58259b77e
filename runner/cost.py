"""What one (image, label) pair costs an explainer or a benchmark, in network passes.

Every explainer and benchmark states its cost with ``passes(image_shape)`` (benchmarks: ``passes(image_shape,
explainer)``, since some explain again); the runner's plan multiplies by the pairs expected and by the time of one
pass measured on the device, so a run that would take hours says so before it starts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Passes:
    """Images pushed through the network per pair: ``forward`` passes, and ``backward`` passes (gradients of the
    target with respect to the input or a layer; each one follows its own forward pass, counted in ``forward``)."""

    forward: int = 0
    backward: int = 0

    def __add__(self, other: "Passes") -> "Passes":
        return Passes(self.forward + other.forward, self.backward + other.backward)

    def __mul__(self, factor: int) -> "Passes":
        return Passes(self.forward * factor, self.backward * factor)

    __rmul__ = __mul__

    def __str__(self) -> str:
        return f"{self.forward} fwd" + (f" + {self.backward} bwd" if self.backward else "")


ZERO = Passes()
