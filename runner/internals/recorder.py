"""What the runner keeps of a network's insides for every sample (``ImageClassificationRunner.register_internals``).

Per run: each named layer's shape and, for a Conv2d, its filters in display form. Per sample, from one extra forward
pass with hooks (no autograd graph, the network left as it was found):

* the feature maps of the named layers (:mod:`.features`: all channels or the top-k by mean activation, uint8 or
  float16);
* with ``attention=True``, every attention layer's per-head attention over the patch grid (:mod:`.attention`: the
  class token's attention to each patch, or the mean attention each patch receives without a class token), stored
  as float16;
* with ``scale`` set, every label's probability once more with the pre-softmax attention scores multiplied by
  ``scale`` in ``scale_layers`` (one more forward pass): the prediction with and without the intervention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn

from xaiboard.store import AttentionMapRecord, FeatureMapRecord, InterventionRecord, LayerRecord

from ..cost import Passes
from ..explainers.base import eval_mode, resolve_layer
from .attention import AttentionRecord, capture_attention, patch_attention_map, patch_grid, scale_attention
from .features import ENCODINGS, capture, conv_filters


@dataclass
class InsideRecords:
    """What one group of samples adds to the store."""

    feature_maps: list[FeatureMapRecord] = field(default_factory=list)
    attention: list[AttentionMapRecord] = field(default_factory=list)
    interventions: list[InterventionRecord] = field(default_factory=list)


def _attention_names(record: AttentionRecord) -> list[str]:
    """The owners' names, with ``#2``, ``#3``... for a module that attended more than once in one pass."""
    seen: dict[str, int] = {}
    names = []
    for name in record.names:
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return names


class InternalsRecorder:
    """Records what ``network`` computes inside, for the runner; see the module docstring for what is kept.

    Args:
        network: the runner's network.
        layers: layers (dotted names or modules) whose outputs, N x C x h x w, are kept as feature maps.
        top_k: keep only the K channels with the highest mean activation per sample (None: every channel).
        encoding: ``"uint8"`` (per-channel min-max, error at most (max - min) / 510) or ``"float16"``.
        attention: keep every attention layer's per-head attention over the patch grid.
        scale: the factor of the intervention on the pre-softmax attention scores (above 1 sharpens, below 1
            flattens, 0 makes it uniform); None: no intervention.
        scale_layers: the attention layers it applies to (names as captured, or a parent like ``"blocks.3"``;
            None: every layer).
    """

    def __init__(self, network: nn.Module, layers: Sequence[str | nn.Module] = (), top_k: Optional[int] = None,
                 encoding: str = "uint8", attention: bool = False, scale: Optional[float] = None,
                 scale_layers: Optional[Sequence[str]] = None) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                                  or not float(scale) >= 0.0 or scale == float("inf")):
            raise ValueError(f"scale must be a finite factor >= 0 or None, got {scale!r}")
        items = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
        self.network = network
        self.layers = list(dict(resolve_layer(network, item) for item in items))
        self.top_k, self.encoding, self.attention = top_k, encoding, bool(attention)
        self.scale = None if scale is None else float(scale)
        self.scale_layers = None if scale_layers is None else [resolve_layer(network, layer)[0] for layer in (
            [scale_layers] if isinstance(scale_layers, str) else scale_layers)]
        if not self.layers and not self.attention and self.scale is None:
            raise ValueError("register_internals needs layers, attention=True or an intervention scale")

    def config(self) -> dict[str, Any]:
        return {"layers": self.layers, "top_k": self.top_k, "encoding": self.encoding, "attention": self.attention,
                "scale": self.scale, "scale_layers": self.scale_layers}

    def passes(self) -> Passes:
        """Forward passes per sample: the capture, and one more for the intervention."""
        return Passes(int(bool(self.layers or self.attention)) + int(self.scale is not None))

    def describe(self, inputs: Tensor) -> list[LayerRecord]:
        """The layers' records from one pass on ``inputs`` (one image is enough); raises ValueError when a layer
        gives no feature maps or no attention is seen."""
        records = []
        convolutions = [n for n in self.layers if isinstance(resolve_layer(self.network, n)[1], nn.Conv2d)]
        filters = conv_filters(self.network, convolutions) if convolutions else {}
        maps, attention = self._capture(inputs)
        for name in self.layers:
            shape = maps[name].codes.shape
            kept = filters.get(name)
            records.append(LayerRecord(name, "features", maps[name].total_channels, shape[2], shape[3],
                                       filters=None if kept is None else kept.display,
                                       filter_mode=None if kept is None else kept.mode))
        if self.attention:
            if not len(attention):
                raise ValueError(f"attention=True but no attention was seen in {type(self.network).__name__}'s "
                                 "forward pass")
            for name, seen in zip(_attention_names(attention), attention):
                tokens = seen.weights.shape[-1]
                rows, columns = patch_grid(self.network, tuple(inputs.shape[2:]), tokens=tokens)
                records.append(LayerRecord(name, "attention", seen.weights.shape[1], rows, columns, tokens=tokens))
        if self.scale is not None:
            self._intervened(inputs, lambda logits: logits)
        return records

    def _capture(self, inputs: Tensor) -> tuple[dict[str, Any], AttentionRecord]:
        with capture_attention(self.network) as attention:
            if self.layers:
                _, maps = capture(self.network, inputs, self.layers, top_k=self.top_k, encoding=self.encoding)
            else:
                maps = {}
                if self.attention:
                    with eval_mode(self.network), torch.no_grad():
                        self.network(inputs)
        return maps, attention

    @torch.no_grad()
    def _intervened(self, inputs: Tensor, activation: Callable[[Tensor], Tensor]) -> Tensor:
        with eval_mode(self.network), scale_attention(self.network, self.scale, self.scale_layers):
            return activation(self.network(inputs)).float().cpu()

    def record(self, inputs: Tensor, sample_ids: Sequence[int], activation: Callable[[Tensor], Tensor]
               ) -> InsideRecords:
        """The records of a group of samples (``inputs`` N x C x H x W on the network's device)."""
        out = InsideRecords()
        if self.layers or self.attention:
            maps, attention = self._capture(inputs)
            for name, kept in maps.items():
                for i, sample_id in enumerate(sample_ids):
                    out.feature_maps.append(FeatureMapRecord(sample_id, name, kept.codes[i], kept.channels[i],
                                                             kept.low[i], kept.high[i], kept.means[i], self.encoding))
            if self.attention:
                for name, seen in zip(_attention_names(attention), attention):
                    grid = patch_grid(self.network, tuple(inputs.shape[2:]), tokens=seen.weights.shape[-1])
                    per_head = patch_attention_map(seen.weights.float(), grid).cpu().numpy()
                    out.attention += [AttentionMapRecord(sample_id, name, per_head[i])
                                      for i, sample_id in enumerate(sample_ids)]
        if self.scale is not None:
            probs = self._intervened(inputs, activation).numpy()
            out.interventions += [InterventionRecord(sample_id, probs[i]) for i, sample_id in enumerate(sample_ids)]
        return out
