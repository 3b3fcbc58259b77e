"""The explainer interface shared by the runner and the benchmarks, and the plumbing every method reuses.

An explainer turns a batch of (image, label) pairs into one relevance map per pair (N x H x W, higher = more evidence
for the label). It keeps no per-call state that changes its maps, so one instance can serve several runners, and it
rebuilds itself on another network by layer *name* (:meth:`Explainer.with_network`), which the Randomization
benchmark needs. Every explainer states its cost per pair with :meth:`Explainer.passes`, so a run can be planned
before it is paid for.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cost import Passes
from ..device import gpu_batch_size

DEFAULT_BATCH_SIZE = 128
#: ``batch_size=None`` fits this many input pixels in one pass: 32 images at 224 x 224, 128 (the cap) up to 112 x 112.
#: On a CPU larger passes are slower per image (at 224, 128 images a pass cost 1.6x the time per image of 32 forward
#: and 2x with the backward pass: memory traffic and page faults), and on a GPU they rarely gain more.
PIXELS_PER_PASS = 32 * 224 * 224


def default_batch_size(height: int, width: int) -> int:
    """Images per pass for ``batch_size=None``: :data:`PIXELS_PER_PASS` worth, between 1 and 128."""
    return max(1, min(DEFAULT_BATCH_SIZE, PIXELS_PER_PASS // max(1, height * width)))


def module_names(network: nn.Module) -> list[str]:
    """Dotted names of every sub-module (what ``layer=`` accepts)."""
    return [name for name, _ in network.named_modules() if name]


def resolve_layer(network: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Find a layer by dotted name (``"layer4"``, ``"features.29"``) or by module; returns (name, module).

    A name that does not exist raises a ValueError listing the closest existing names.
    """
    if isinstance(layer, nn.Module):
        for name, module in network.named_modules():
            if module is layer and name:
                return name, module
        raise ValueError(f"the layer {type(layer).__name__} passed is not a sub-module of {type(network).__name__}")
    if not isinstance(layer, str) or not layer:
        raise ValueError(f"a layer must be a dotted module name or a module, got {layer!r}")
    modules = dict(network.named_modules())
    if layer in modules and layer:
        return layer, modules[layer]
    names = module_names(network)
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
    hint = f"close names: {', '.join(close)}" if close else f"layers: {', '.join(names[:12])}" + (
        ", ..." if len(names) > 12 else "")
    raise ValueError(f"layer {layer!r} does not exist in {type(network).__name__} ({hint})")


@contextmanager
def eval_mode(network: nn.Module) -> Iterator[None]:
    """Put every module in eval mode for the duration and restore each module's own flag afterwards."""
    flags = [(module, module.training) for module in network.modules()]
    network.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def jsonable(value: Any) -> Any:
    """A JSON-able description of a parameter value (tensors by shape, callables by name)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Tensor):
        if value.numel() == 1:
            return float(value)
        return {"tensor": list(value.shape)}
    if callable(value):
        return getattr(value, "__qualname__", None) or type(value).__qualname__
    return repr(value)


def image_shape_of(image_shape: Any) -> tuple[int, int, int]:
    """Validate a (C, H, W) image shape (what ``passes`` takes) and return it as three ints."""
    try:
        shape = tuple(int(v) for v in image_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or shape != tuple(image_shape):
        raise ValueError(f"image_shape must be (channels, height, width) positive integers, got {image_shape!r}")
    return shape  # type: ignore[return-value]


def to_input_size(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bring N x h x w (or N x 1 x h x w) maps to N x H x W = ``size``: bilinear, ``align_corners=False``.

    This is the one upsampling every explainer applies when ``native=False``, so maps kept at an explainer's own
    grid (``explain_with_delta(..., native=True)``) and upsampled here equal the maps asked at the input size.
    Maps already at ``size`` are returned as they are.
    """
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3:
        raise ValueError(f"maps must be N x h x w, got shape {tuple(maps.shape)}")
    size = (int(size[0]), int(size[1]))
    if tuple(maps.shape[1:]) == size:
        return maps
    if not maps.is_floating_point():
        maps = maps.float()
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]


def max_abs_over_channels(attributions: Tensor) -> Tensor:
    """N x C x H x W -> N x H x W: the largest magnitude over channels (gradient-style methods)."""
    return attributions.abs().amax(dim=1)


def sum_over_channels(attributions: Tensor) -> Tensor:
    """N x C x H x W -> N x H x W: the signed sum over channels (additive methods: totals are kept)."""
    return attributions.sum(dim=1)


class Explainer:
    """Base class: batched relevance maps for (image, label) pairs.

    Subclasses implement :meth:`_explain` for one chunk of at most ``batch_size`` pairs and list their constructor
    parameters with :meth:`_remember` so that :meth:`config` and :meth:`with_network` see every one of them.

    ``batch_size`` bounds how many images go through the network at once, including the copies that methods such as
    IntegratedGradients, SmoothGrad, Occlusion and RISE expand each pair into; ``None`` (the default) chooses it
    from the image size at every call (:func:`default_batch_size`: 128 for small images, 32 at 224 x 224).

    Subclasses also implement :meth:`passes` (their cost per pair). One that does not raises NotImplementedError
    there; the runner's plan (``xaiboard.runner.plan.passes_of``) shows such an explainer, or an object without a
    ``passes`` method, as "unknown" cost and runs it all the same.
    """

    #: how the method's attributions become one map per pair (shown in the configuration)
    reduction: str = ""

    def __init__(self, network: nn.Module, *, batch_size: Optional[int] = None, name: Optional[str] = None):
        if not isinstance(network, nn.Module):
            raise TypeError(f"an explainer needs a torch.nn.Module, got {type(network).__name__}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.network = network
        self.given_batch_size = batch_size
        self._size_batch = DEFAULT_BATCH_SIZE  # batch_size=None: set from the image size at every call
        self.name = name or type(self).__name__
        self._parameters: dict[str, Any] = {}
        # keys of the warnings already given; shared with the twins made by with_network (one warning per method)
        self._warned: set[str] = set()

    @property
    def batch_size(self) -> int:
        """Images per pass: the value given, or the default for the image size of the current call (on a GPU, what
        fits its free memory: :func:`~xaiboard.runner.device.gpu_batch_size`)."""
        return self.given_batch_size or self._size_batch

    def _remember(self, **parameters: Any) -> None:
        """Record constructor parameters (layers by name) for :meth:`config` and :meth:`with_network`."""
        self._parameters.update(parameters)

    # -- public interface ----------------------------------------------------------------------------------------

    def explain(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """Relevance maps N x H x W (float, on the inputs' device) for inputs N x C x H x W and targets N."""
        return self.explain_with_delta(inputs, targets)[0]

    __call__ = explain

    def explain_with_delta(self, inputs: Tensor, targets: Tensor,
                           native: bool = False) -> tuple[Tensor, Optional[Tensor]]:
        """The maps plus a per-pair convergence delta (methods with a completeness property) or None.

        ``native=False`` (the default, what benchmarks get): maps at the input size H x W. ``native=True``: maps at
        the method's own grid (GradCAM: the layer's h x w, e.g. 7 x 7 at 224; every other method: the input size),
        which stores smaller; :func:`to_input_size` turns them into exactly the ``native=False`` maps.
        """
        inputs, targets = self._check(inputs, targets)
        self._size_batch = gpu_batch_size(self.network, inputs) or default_batch_size(inputs.shape[2],
                                                                                       inputs.shape[3])
        if inputs.shape[0]:
            self._first_call(inputs)
        inputs = inputs.detach().requires_grad_(inputs.is_floating_point())
        maps: list[Tensor] = []
        deltas: list[Tensor] = []
        with eval_mode(self.network), torch.enable_grad(), warnings.catch_warnings():
            # Captum announces the hooks it sets (and removes) at every call; that is expected here.
            warnings.filterwarnings("ignore", message=r"Setting .*hooks", category=UserWarning)
            chunk = self._chunk_size()
            for start in range(0, inputs.shape[0], chunk):
                chunk_maps, chunk_delta = self._explain(inputs[start:start + chunk], targets[start:start + chunk])
                maps.append(chunk_maps.detach().float())
                if chunk_delta is not None:
                    deltas.append(chunk_delta.detach().float().reshape(-1))
        result = torch.cat(maps) if maps else inputs.new_zeros((0, *inputs.shape[2:]))
        if not native:
            result = to_input_size(result, (inputs.shape[2], inputs.shape[3]))
        return result, (torch.cat(deltas) if deltas and len(deltas) == len(maps) else None)

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        """Network passes per (image, label) pair for images of ``image_shape`` (C, H, W), with the current
        parameters (defaults that depend on the image size resolved for that shape)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not state its cost: define passes(image_shape) -> Passes (forward and "
            "backward passes per (image, label) pair); until then the run plan shows its cost as unknown"
        )

    def config(self) -> dict[str, Any]:
        """The full configuration as JSON-able values: class, name, every parameter (layers by name)."""
        return {
            "class": type(self).__name__,
            "name": self.name,
            "reduction": self.reduction,
            "batch_size": self.given_batch_size or "auto",
            **{key: jsonable(value) for key, value in self._parameters.items()},
        }

    def with_network(self, network: nn.Module) -> "Explainer":
        """The same explainer (same parameters, same layer by name) bound to another network.

        The twin shares the once-only warnings of this instance, so the Randomization benchmark's randomised copy
        does not repeat a warning the user has already seen."""
        twin = type(self)(network, batch_size=self.given_batch_size, name=self.name, **self._parameters)
        twin._warned = self._warned
        return twin

    def check(self, inputs: Tensor) -> None:
        """Raise a ValueError when the method cannot work on inputs like ``inputs`` (1 x C x H x W); cheap.

        The runner calls it on the first item before any work, so a wrong layer or window fails early.
        """

    def __repr__(self) -> str:
        parameters = ", ".join(f"{k}={jsonable(v)!r}" for k, v in self._parameters.items())
        return f"{type(self).__name__}({parameters}{', ' if parameters else ''}name={self.name!r})"

    # -- for subclasses ------------------------------------------------------------------------------------------

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """Maps (and deltas or None) for one chunk of at most :meth:`_chunk_size` pairs."""
        raise NotImplementedError

    def _first_call(self, inputs: Tensor) -> None:
        """Called with the inputs of every call before any work (cheap checks that need the image size)."""

    def _warn_once(self, key: str, message: str) -> None:
        """A UserWarning the first time ``key`` comes up for this instance (and its with_network twins)."""
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, UserWarning, stacklevel=4)

    def _chunk_size(self) -> int:
        """How many pairs :meth:`_explain` gets at once."""
        return self.batch_size

    @staticmethod
    def _check(inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(inputs, Tensor) or inputs.dim() != 4:
            shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise ValueError(f"inputs must be a N x C x H x W tensor, got {shape}")
        targets = torch.as_tensor(targets, device=inputs.device).long().reshape(-1)
        if targets.shape[0] != inputs.shape[0]:
            raise ValueError(f"got {inputs.shape[0]} inputs but {targets.shape[0]} targets")
        return inputs, targets
