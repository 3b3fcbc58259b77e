"""The runner's argument checks: every mistake is refused with a message that names it, before anything runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

import numpy as np
from torch import Tensor, nn

from .data import InvalidInputError

ACTIVATIONS = ("softmax", "sigmoid")
BENCHMARK_ATTRIBUTES = ("name", "higher_is_better", "range", "aggregation", "requires_masks", "requires_explainer",
                        "config", "evaluate")

Activation = Union[str, Callable[[Tensor], Tensor]]


def _softmax(logits: Tensor) -> Tensor:
    return logits.softmax(dim=1)


def _sigmoid(logits: Tensor) -> Tensor:
    return logits.sigmoid()


def check_classes(classes: Any) -> list[str]:
    """The class names as strings: a non-empty sequence without repeats."""
    if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
        raise InvalidInputError("classes must be a non-empty sequence of class names")
    names = [str(c) for c in classes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInputError(f"class names must be unique; repeated: {', '.join(map(repr, duplicates))}")
    return names


def resolve_activation(activation: Activation) -> tuple[str, Callable[[Tensor], Tensor]]:
    """The activation's name (as stored) and the function logits -> probabilities."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise InvalidInputError(f"unknown activation {activation!r}: use 'softmax', 'sigmoid' or a "
                                    "callable logits -> probabilities")
        return activation, _softmax if activation == "softmax" else _sigmoid
    if callable(activation):
        return getattr(activation, "__qualname__", type(activation).__name__)[:64], activation
    raise InvalidInputError(f"unknown activation {activation!r}: use 'softmax', 'sigmoid' or a callable")


def _channel_stats(values: Any, what: str) -> Optional[list[float]]:
    if values is None:
        return None
    array = np.atleast_1d(np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values,
                                     dtype=np.float64)).reshape(-1)
    if array.size == 0 or not np.isfinite(array).all():
        raise InvalidInputError(f"{what} must be finite numbers, got {values!r}")
    return [float(v) for v in array]


def normalisation(mean: Any, std: Any) -> tuple[Optional[list[float]], Optional[list[float]]]:
    """The inputs' per-channel mean and std as lists: both or neither, finite, std positive."""
    means, stds = _channel_stats(mean, "mean"), _channel_stats(std, "std")
    if (means is None) != (stds is None):
        raise InvalidInputError("give both mean and std (the inputs' normalisation) or neither")
    if stds is not None and min(stds) <= 0:
        raise InvalidInputError(f"std must be positive, got {std!r}")
    return means, stds


def check_explainers(explainers: Sequence[Any], registered: Sequence[Any], network: nn.Module) -> None:
    """Each explainer can explain, has a name no other has, and was built for the runner's network."""
    taken = {e.name for e in registered}
    for explainer in explainers:
        label = getattr(explainer, "name", type(explainer).__name__)
        if not callable(getattr(explainer, "explain_with_delta", None)) and not callable(
                getattr(explainer, "explain", None)):
            raise InvalidInputError(f"explainer {label!r} has no explain(inputs, targets) method")
        if not isinstance(getattr(explainer, "name", None), str):
            raise InvalidInputError(f"explainer {type(explainer).__name__} needs a string name")
        if explainer.name in taken:
            raise InvalidInputError(f"two explainers are named {explainer.name!r}; pass name=... to tell them apart")
        if getattr(explainer, "network", network) is not network:
            raise InvalidInputError(f"explainer {explainer.name!r} was built for another network than the "
                                    "runner's; use explainer.with_network(network)")
        taken.add(explainer.name)


def check_benchmarks(benchmarks: Sequence[Any], registered: Sequence[Any]) -> None:
    """Each benchmark has the attributes the runner reads, a name no other has and a known aggregation."""
    metric_names = {b.name for b in registered}
    for benchmark in benchmarks:
        missing = [a for a in BENCHMARK_ATTRIBUTES if not hasattr(benchmark, a)]
        if missing:
            raise InvalidInputError(f"benchmark {getattr(benchmark, 'name', type(benchmark).__name__)!r} lacks "
                                    f"{', '.join(missing)}")
        if benchmark.name in metric_names:
            raise InvalidInputError(f"two benchmarks are named {benchmark.name!r}")
        if benchmark.aggregation not in ("mean", "macro"):
            raise InvalidInputError(f"benchmark {benchmark.name!r}: aggregation must be 'mean' or 'macro', "
                                    f"got {benchmark.aggregation!r}")
        metric_names.add(benchmark.name)
