"""Convolution filters and feature maps of named layers, captured without editing the model.

Filters are read from the weights. Feature maps come from one forward pass with forward hooks on the named layers;
the hooks are removed afterwards (also when the pass fails), every module's train/eval flag is restored, and no
autograd graph is built, so the capture leaves the network as it found it and its output unchanged.

Stored form of a feature map (per sample and kept channel), chosen to be small enough to keep for every sample:

* ``encoding="uint8"`` (default): each channel quantised linearly between its own min and max,
  ``value = low + code * (high - low) / 255``; the error is at most ``(high - low) / 510`` per value.
* ``encoding="float16"``: the values rounded to float16 (relative error at most 2**-11 for values of normal size;
  values beyond +-65504 become inf).

Each kept channel also stores its index (int32), its min and max (the scale) and its mean activation (float32 each),
16 bytes a channel on top of the codes; :func:`bytes_per_sample` gives the total for a layer shape.

Count rule: ``top_k=None`` keeps all C channels in their own order; ``top_k=K`` keeps, per sample, the K channels with
the highest mean activation (the signed mean over h x w), in descending order of that mean (ties: the lower index
first), and ``K > C`` keeps all C in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..explainers.base import eval_mode, resolve_layer

ENCODINGS = {"uint8": np.uint8, "float16": np.float16}
#: bytes stored per kept channel besides its codes: index (int32), low, high, mean (float32)
CHANNEL_OVERHEAD = 16

Layers = str | nn.Module | Sequence[str | nn.Module]


@dataclass
class FilterSet:
    """The filters of one Conv2d layer.

    ``weights`` is out_channels x in_channels/groups x kh x kw float32, exactly the layer's weight. ``display`` is one
    image per output filter: out x kh x kw x 3 (the RGB filter, channels last) when the filter sees 3 input channels
    (``mode="rgb"``, the first layer of an image network), otherwise the mean over its input channels, out x kh x kw
    (``mode="mean"``: one picture per filter however wide the layer; a per-input grid would be in_channels times
    larger and rarely readable). ``low``/``high`` are the min and max of ``display``, for one common colour scale.
    """

    name: str
    weights: np.ndarray
    display: np.ndarray
    mode: str
    low: float
    high: float

    def scaled(self) -> np.ndarray:
        """``display`` mapped to [0, 1] with the common scale (all 0.5 for constant filters)."""
        span = self.high - self.low
        if span <= 0:
            return np.full_like(self.display, 0.5)
        return (self.display - self.low) / span


@dataclass
class FeatureMaps:
    """The captured activations of one layer for N samples, K kept channels each (see the module docstring).

    ``codes``: N x K x h x w (uint8 or float16, see ``encoding``); ``channels``: N x K int32 channel indices;
    ``low``/``high``: N x K float32 per-channel min and max; ``means``: N x K float32 mean activations.
    """

    name: str
    codes: np.ndarray
    channels: np.ndarray
    low: np.ndarray
    high: np.ndarray
    means: np.ndarray
    total_channels: int
    encoding: str

    def maps(self) -> np.ndarray:
        """The activations back as float32, N x K x h x w."""
        if self.encoding == "float16":
            return self.codes.astype(np.float32)
        step = (self.high - self.low) / 255.0
        return self.low[..., None, None] + self.codes.astype(np.float32) * step[..., None, None]

    @property
    def bytes_per_sample(self) -> int:
        """Bytes stored per sample (codes, indices, scales and means)."""
        arrays = (self.codes, self.channels, self.low, self.high, self.means)
        count = max(1, self.codes.shape[0])
        return sum(a.nbytes for a in arrays) // count


def bytes_per_sample(channels: int, height: int, width: int, top_k: int | None = None,
                     encoding: str = "uint8") -> int:
    """Bytes one sample's maps of a C x h x w layer take in the stored form (what :class:`FeatureMaps` holds)."""
    _check_encoding(encoding)
    kept = channels if top_k is None else min(_check_top_k(top_k), channels)
    itemsize = np.dtype(ENCODINGS[encoding]).itemsize
    return kept * (height * width * itemsize + CHANNEL_OVERHEAD)


def conv_filters(network: nn.Module, layers: Layers) -> dict[str, FilterSet]:
    """The filters of each named Conv2d layer, keyed by layer name; another kind of layer raises ValueError."""
    result: dict[str, FilterSet] = {}
    for name, module in _resolve_all(network, layers):
        if not isinstance(module, nn.Conv2d):
            raise ValueError(f"layer {name!r} is a {type(module).__name__}, not a Conv2d: it has no 2-d filters")
        weights = module.weight.detach().to("cpu", torch.float32).numpy().copy()
        if weights.shape[1] == 3:
            display, mode = np.ascontiguousarray(weights.transpose(0, 2, 3, 1)), "rgb"
        else:
            display, mode = weights.mean(axis=1), "mean"
        result[name] = FilterSet(name, weights, display, mode, float(display.min()), float(display.max()))
    return result


def feature_maps(network: nn.Module, inputs: Tensor, layers: Layers, top_k: int | None = None,
                 encoding: str = "uint8") -> dict[str, FeatureMaps]:
    """The feature maps of the named layers for ``inputs`` (N x C x H x W), keyed by layer name."""
    return capture(network, inputs, layers, top_k=top_k, encoding=encoding)[1]


def capture(network: nn.Module, inputs: Tensor, layers: Layers, top_k: int | None = None,
            encoding: str = "uint8") -> tuple[Tensor, dict[str, FeatureMaps]]:
    """The network's output for ``inputs`` and the feature maps of the named layers, from one forward pass.

    Each layer's output must be one N x C x h x w tensor, produced once per pass (a module called twice in one
    forward raises ValueError, since which call to keep would be a guess).
    """
    _check_encoding(encoding)
    if top_k is not None:
        _check_top_k(top_k)
    named = _resolve_all(network, layers)
    captured: dict[str, FeatureMaps] = {}
    handles = []

    def hook_for(name: str):
        def hook(module: nn.Module, args: object, output: object) -> None:
            if name in captured:
                raise ValueError(f"layer {name!r} ran more than once in one forward pass")
            captured[name] = _compress(name, output, top_k, encoding)
        return hook

    try:
        for name, module in named:
            handles.append(module.register_forward_hook(hook_for(name)))
        with eval_mode(network), torch.no_grad():
            output = network(inputs)
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name, _ in named if name not in captured]
    if missing:
        raise ValueError(f"layers {', '.join(missing)} did not run in the forward pass")
    return output, {name: captured[name] for name, _ in named}


def _compress(name: str, output: object, top_k: int | None, encoding: str) -> FeatureMaps:
    """One layer's output to the stored form: channel selection, then per-channel scale and codes."""
    if not isinstance(output, Tensor) or output.dim() != 4:
        kind = f"shape {tuple(output.shape)}" if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(f"layer {name!r} must output an N x C x h x w tensor to give feature maps, got {kind}")
    values = output.detach().float()
    count, total = values.shape[:2]
    means = values.mean(dim=(2, 3))
    if top_k is None:
        order = torch.arange(total, device=values.device).expand(count, total)
    else:
        order = torch.sort(means, dim=1, descending=True, stable=True).indices[:, :min(top_k, total)]
    values = torch.gather(values, 1, order[:, :, None, None].expand(-1, -1, *values.shape[2:]))
    means = torch.gather(means, 1, order)
    low, high = values.amin(dim=(2, 3)), values.amax(dim=(2, 3))
    if encoding == "float16":
        codes = values.to(torch.float16)
    else:
        span = (high - low)[..., None, None]
        scaled = torch.where(span > 0, (values - low[..., None, None]) / span.clamp_min(1e-30), 0.0)
        codes = (scaled * 255).round().clamp(0, 255).to(torch.uint8)
    return FeatureMaps(name, codes.cpu().numpy(), _numpy(order, torch.int32), _numpy(low), _numpy(high),
                       _numpy(means), int(total), encoding)


def _numpy(values: Tensor, dtype: torch.dtype = torch.float32) -> np.ndarray:
    return values.to("cpu", dtype).numpy()


def _resolve_all(network: nn.Module, layers: Layers) -> list[tuple[str, nn.Module]]:
    """Named layers (one name or module, or a sequence of them) to unique (name, module) pairs, in order."""
    items = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
    if not items:
        raise ValueError("no layers named")
    resolved = dict(resolve_layer(network, item) for item in items)
    return list(resolved.items())


def _check_top_k(top_k: object) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    return top_k


def _check_encoding(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
