"""Attention rollout (Abnar & Zuidema 2020) for Vision Transformers, from attention captured at run time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor, nn

from ..cost import Passes
from ..internals.attention import capture_attention, patch_grid
from .base import Explainer, image_shape_of, resolve_layer

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(weights: Tensor, head_fusion: str = "mean") -> Tensor:
    """B x heads x N x N -> B x N x N: the mean, max or min over heads."""
    if head_fusion == "mean":
        return weights.mean(dim=1)
    if head_fusion == "max":
        return weights.amax(dim=1)
    if head_fusion == "min":
        return weights.amin(dim=1)
    raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")


def attention_rollout(attentions: Sequence[Tensor], *, head_fusion: str = "mean", discard_ratio: float = 0.0,
                      residual: bool = True) -> Tensor:
    """The rolled-out attention B x N x N of layers given first to last (each B x heads x N x N, or B x N x N
    when already fused): per layer fuse heads, zero the lowest ``discard_ratio`` of the entries (per image; the
    diagonal is kept), with ``residual`` take 0.5 * A + 0.5 * I, renormalise the rows, and multiply
    ``A_L ... A_2 A_1``. Row i says how much each input token flows into token i at the last layer."""
    if not attentions:
        raise ValueError("attention rollout needs the attention of at least one layer")
    if not 0.0 <= float(discard_ratio) < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio!r}")
    joint: Optional[Tensor] = None
    for weights in attentions:
        fused = (fuse_heads(weights, head_fusion) if weights.dim() == 4 else weights).float()
        tokens = fused.shape[-1]
        eye = torch.eye(tokens, device=fused.device, dtype=fused.dtype)
        if discard_ratio > 0:
            flat = fused.masked_fill(eye.bool(), float("inf")).flatten(1)
            count = int(flat.shape[1] * discard_ratio)
            if count:
                lowest = flat.topk(count, dim=1, largest=False).indices
                fused = fused.flatten(1).scatter(1, lowest, 0.0).reshape(fused.shape)
        if residual:
            fused = 0.5 * fused + 0.5 * eye
        fused = fused / fused.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        joint = fused if joint is None else fused @ joint
    assert joint is not None
    return joint


def rollout_map(joint: Tensor, grid: tuple[int, int]) -> Tensor:
    """B x N x N rolled-out attention -> B x rows x columns: the class token's row over the patches (the last
    rows * columns tokens) when there are prefix tokens, else the mean of all tokens' rows."""
    rows, columns = grid
    prefix = joint.shape[-1] - rows * columns
    if prefix < 0:
        raise ValueError(f"{joint.shape[-1]} tokens cannot hold a {rows} x {columns} patch grid")
    scores = joint[:, 0, prefix:] if prefix else joint.mean(dim=1)
    return scores.reshape(joint.shape[0], rows, columns)


class AttentionRollout(Explainer):
    """Attention rollout (Abnar & Zuidema 2020): how much each patch flows into the class token through every
    layer's attention, at the patch grid (``explain_with_delta(..., native=True)``) or upsampled bilinearly.

    The attention is captured during one forward pass without editing the model
    (:func:`~xaiboard.runner.internals.attention.capture_attention`: fused ``scaled_dot_product_attention``,
    ``nn.MultiheadAttention`` and explicit softmax). Per layer the heads are fused (``head_fusion``: ``"mean"``,
    ``"max"`` or ``"min"`` over heads), the lowest ``discard_ratio`` of the fused entries are set to 0 (the
    diagonal is kept), and with ``residual=True`` the skip connection is modelled as ``A' = 0.5 * A + 0.5 * I``;
    rows are renormalised to sum to 1 and the layers are multiplied from the first to the last. The map is the
    class token's row over the patches, or for models without prefix tokens (mean pooling) the mean of all rows.
    The patch grid comes from the patch-embedding Conv2d (stride = kernel) and the input size, else from the
    token count and the aspect ratio (:func:`~xaiboard.runner.internals.attention.patch_grid`). ``layers``: only
    the attention of these modules (names as captured, or a parent such as ``"blocks.3"``), in call order; by
    default every layer.

    Rollout is class-agnostic: the target does not change the map (every target of an image gets the same map).

    Cost per pair: 1 forward pass, no backward pass.
    """

    reduction = "class-token row of the rolled-out attention at the patch grid; bilinear upsampling"

    def __init__(self, network: nn.Module, *, head_fusion: str = "mean", discard_ratio: float = 0.0,
                 residual: bool = True, layers: Optional[Sequence[str]] = None, batch_size: Optional[int] = None,
                 name: Optional[str] = None):
        super().__init__(network, batch_size=batch_size, name=name)
        if head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
        if isinstance(discard_ratio, bool) or not 0.0 <= float(discard_ratio) < 1.0:
            raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio!r}")
        self.head_fusion = head_fusion
        self.discard_ratio = float(discard_ratio)
        self.residual = bool(residual)
        self.layers = None if layers is None else [resolve_layer(network, layer)[0] for layer in
                                                   ([layers] if isinstance(layers, (str, nn.Module)) else layers)]
        self._remember(head_fusion=head_fusion, discard_ratio=self.discard_ratio, residual=self.residual,
                       layers=self.layers)

    def passes(self, image_shape: tuple[int, int, int]) -> Passes:
        image_shape_of(image_shape)
        return Passes(1, 0)

    def check(self, inputs: Tensor) -> None:
        self._attentions(inputs[:1])

    def _attentions(self, inputs: Tensor) -> list[Tensor]:
        with capture_attention(self.network) as record, torch.no_grad():
            self.network(inputs)
        captures = [c for c in record if self.layers is None
                    or any(c.name == layer or c.name.startswith(layer + ".") for layer in self.layers)]
        if not captures:
            raise ValueError(f"{self.name}: no attention was seen in {type(self.network).__name__}'s forward pass"
                             + (f" in layers {self.layers}" if self.layers is not None else ""))
        shapes = {tuple(c.weights.shape[-2:]) for c in captures}
        if len(shapes) != 1:
            raise ValueError(f"{self.name}: the attention layers have different token counts {sorted(shapes)}; "
                             "choose layers of one resolution with layers=")
        return [c.weights for c in captures]

    def _explain(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        attentions = self._attentions(inputs)
        grid = patch_grid(self.network, (inputs.shape[2], inputs.shape[3]), tokens=attentions[0].shape[-1])
        joint = attention_rollout(attentions, head_fusion=self.head_fusion, discard_ratio=self.discard_ratio,
                                  residual=self.residual)
        return rollout_map(joint, grid), None
