"""Vision Transformer attention without editing the model: capture the attention weights, and scale the scores.

:func:`capture_attention` records, for every attention call made inside a model's forward pass, the post-softmax
weights (batch x heads x queries x keys) and the name of the module that made the call, in call order. Three ways
of writing attention are covered:

* ``torch.nn.functional.scaled_dot_product_attention`` (timm, HF ``sdpa``): the function is replaced, only while a
  context is active, by a wrapper that returns the original function's output unchanged and computes the weights
  from ``q`` and ``k`` as ``softmax(q k^T * scale + mask)`` (``attn_mask``, ``is_causal``, ``scale``, ``enable_gqa``
  honoured; dropout is not part of the weights). Code that imported the function by name before the context opened
  (``from torch.nn.functional import scaled_dot_product_attention``) is not seen.
* ``nn.MultiheadAttention`` (torchvision): each instance's ``forward`` is wrapped to run with ``need_weights=True,
  average_attn_weights=False`` and to hand back what the caller asked for. Its output can differ from the fused
  path by float rounding (~1e-7), not more.
* an explicit softmax (``attn = (q @ k.transpose(-2, -1)) * scale; attn = attn.softmax(dim=-1)``, timm without the
  fused kernel, HF ``eager``): ``torch.softmax``, ``torch.nn.functional.softmax`` and ``torch.Tensor.softmax`` are
  wrapped while a context is active. A call is taken as attention when it reduces the last dimension of a 4-d tensor
  whose last two dimensions are equal (self-attention) and it runs inside a module with children whose class name
  or own name contains ``attn``/``attention``; that module is the owner. A softmax over another square 4-d tensor
  inside such a module would be taken as attention too, and cross-attention or 3-d (batch*heads) matrices are not.

The owner of a call is the innermost module running (forward pre-hooks and hooks on every sub-module, removed
when the context closes). Everything is restored when the context exits, also on an exception. The patches are
process-wide: do not run another model in another thread while a context is open.

:func:`scale_attention` multiplies the pre-softmax scores by a factor in chosen layers (SDPA: ``scale`` times the
factor, an additive ``attn_mask`` is not scaled; MHA: the query projection's weight and bias times the factor;
explicit: the softmax input times the factor). A factor of 1 leaves the call as it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ORIGINAL_SDPA = F.scaled_dot_product_attention
_ORIGINAL_F_SOFTMAX = F.softmax
_ORIGINAL_TORCH_SOFTMAX = torch.softmax
_MISSING = object()
_ATTENTION_NAME = re.compile(r"attn|attention", re.IGNORECASE)


@dataclass(eq=False)
class AttentionCapture:
    """One attention call: the owning module's name, how it was computed and its weights B x heads x N x N."""
    name: str
    kind: str  # "sdpa", "mha" or "softmax"
    weights: Tensor


@dataclass(eq=False)
class AttentionRecord:
    """The attention calls seen while :func:`capture_attention` was open, in call order."""
    captures: list[AttentionCapture] = field(default_factory=list)
    detach: bool = True

    def __len__(self) -> int:
        return len(self.captures)

    def __iter__(self) -> Iterator[AttentionCapture]:
        return iter(self.captures)

    def __getitem__(self, index: int) -> AttentionCapture:
        return self.captures[index]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.captures]

    @property
    def weights(self) -> list[Tensor]:
        return [c.weights for c in self.captures]

    def clear(self) -> None:
        self.captures.clear()


class _Session:
    """What one model's open contexts ask for: records to fill and (layer selector, factor) pairs."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = {module: name for name, module in model.named_modules()}
        self.records: list[AttentionRecord] = []
        self.scales: list[tuple[Optional[tuple[str, ...]], float]] = []
        self.handles: list[Any] = []
        self.mha: list[tuple[nn.MultiheadAttention, Any]] = []

    def factor(self, name: str) -> float:
        factor = 1.0
        for layers, value in self.scales:
            if layers is None or any(name == layer or name.startswith(layer + ".") for layer in layers):
                factor *= value
        return factor

    def add(self, name: str, kind: str, weights: Tensor) -> None:
        for record in self.records:
            record.captures.append(AttentionCapture(name, kind, weights.detach() if record.detach else weights))


_SESSIONS: dict[int, _Session] = {}
_STACK: list[tuple[_Session, nn.Module]] = []  # modules running now, innermost last
_STATE = {"busy": False, "patched": 0}


def _owner(require_attention_name: bool) -> Optional[tuple[_Session, str, nn.Module]]:
    for session, module in reversed(_STACK):
        if isinstance(module, nn.MultiheadAttention):
            return None  # handled by its own wrapper
        name = session.names.get(module, "")
        if not require_attention_name:
            return session, name, module
        if any(True for _ in module.children()) and (
                _ATTENTION_NAME.search(type(module).__name__) or _ATTENTION_NAME.search(name.rsplit(".", 1)[-1])):
            return session, name, module
    return None


def _sdpa(query: Tensor, key: Tensor, value: Tensor, attn_mask: Optional[Tensor] = None, dropout_p: float = 0.0,
          is_causal: bool = False, scale: Optional[float] = None, **kwargs: Any) -> Tensor:
    found = None if _STATE["busy"] else _owner(False)
    if found is None:
        return _ORIGINAL_SDPA(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, **kwargs)
    session, name, _ = found
    factor = session.factor(name)
    if factor != 1.0:
        scale = (scale if scale is not None else 1.0 / math.sqrt(query.shape[-1])) * factor
    if session.records:
        session.add(name, "sdpa", sdpa_weights(query, key, attn_mask, is_causal, scale,
                                               bool(kwargs.get("enable_gqa", False))))
    return _ORIGINAL_SDPA(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, **kwargs)


def sdpa_weights(query: Tensor, key: Tensor, attn_mask: Optional[Tensor] = None, is_causal: bool = False,
                 scale: Optional[float] = None, enable_gqa: bool = False) -> Tensor:
    """The weights ``scaled_dot_product_attention`` applies to ``value``: softmax(q k^T * scale + mask)."""
    scale = scale if scale is not None else 1.0 / math.sqrt(query.shape[-1])
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], dim=-3)
    scores = (query.float() @ key.float().transpose(-2, -1)) * scale
    length, source = scores.shape[-2:]
    if is_causal:
        keep = torch.ones(length, source, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.float()
    _STATE["busy"] = True
    try:
        return _ORIGINAL_F_SOFTMAX(scores, dim=-1)
    finally:
        _STATE["busy"] = False


def _softmax_wrapper(original: Any, method: bool) -> Any:
    def softmax(input: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if _STATE["busy"] or not isinstance(input, Tensor):
            return original(input, *args, **kwargs)
        dim = args[0] if args else kwargs.get("dim")
        found = None
        if isinstance(dim, int) and input.dim() == 4 and dim in (-1, 3) and input.shape[-1] == input.shape[-2]:
            found = _owner(True)
        _STATE["busy"] = True
        try:
            if found is not None and found[0].factor(found[1]) != 1.0:
                input = input * found[0].factor(found[1])
            output = original(input, *args, **kwargs)
        finally:
            _STATE["busy"] = False
        if found is not None and found[0].records:
            found[0].add(found[1], "softmax", output)
        return output
    softmax.__wrapped__ = original  # type: ignore[attr-defined]
    return softmax


def _mha_wrapper(session: _Session, module: nn.MultiheadAttention, original: Any) -> Any:
    name = session.names.get(module, "")

    def forward(query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Optional[Tensor] = None,
                need_weights: bool = True, attn_mask: Optional[Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Optional[Tensor]]:
        factor = session.factor(name)
        if factor == 1.0 and not session.records:
            return original(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                            attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)
        if factor == 1.0:
            output, weights = original(query, key, value, key_padding_mask=key_padding_mask, need_weights=True,
                                       attn_mask=attn_mask, average_attn_weights=False, is_causal=is_causal)
        else:
            output, weights = _mha_scaled(module, factor, query, key, value, key_padding_mask, attn_mask, is_causal)
        if session.records:
            session.add(name, "mha", weights if weights.dim() == 4 else weights.unsqueeze(0))
        if not need_weights:
            return output, None
        return output, weights.mean(dim=-3) if average_attn_weights else weights
    return forward


def _mha_scaled(m: nn.MultiheadAttention, factor: float, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Optional[Tensor], attn_mask: Optional[Tensor],
                is_causal: bool) -> tuple[Tensor, Tensor]:
    """MultiheadAttention's own computation with the query projection (weight and bias) times ``factor``."""
    batched = query.dim() == 3
    if m.batch_first and batched:
        query, key, value = (x.transpose(0, 1) for x in (query, key, value))
    e = m.embed_dim
    bias = m.in_proj_bias
    if bias is not None:
        bias = torch.cat([bias[:e] * factor, bias[e:]])
    extra: dict[str, Any] = {}
    in_weight = m.in_proj_weight
    if m._qkv_same_embed_dim:
        in_weight = torch.cat([in_weight[:e] * factor, in_weight[e:]])
    else:
        extra = dict(use_separate_proj_weight=True, q_proj_weight=m.q_proj_weight * factor,
                     k_proj_weight=m.k_proj_weight, v_proj_weight=m.v_proj_weight)
    output, weights = F.multi_head_attention_forward(
        query, key, value, e, m.num_heads, in_weight, bias, m.bias_k, m.bias_v, m.add_zero_attn, m.dropout,
        m.out_proj.weight, m.out_proj.bias, training=m.training, key_padding_mask=key_padding_mask,
        need_weights=True, attn_mask=attn_mask, average_attn_weights=False, is_causal=is_causal, **extra)
    if m.batch_first and batched:
        output = output.transpose(0, 1)
    return output, weights


def _patch_globals() -> None:
    if _STATE["patched"] == 0:
        _STATE["tensor_softmax"] = torch.Tensor.__dict__.get("softmax", _MISSING)
        F.scaled_dot_product_attention = _sdpa
        F.softmax = _softmax_wrapper(_ORIGINAL_F_SOFTMAX, False)
        torch.softmax = _softmax_wrapper(_ORIGINAL_TORCH_SOFTMAX, False)
        torch.Tensor.softmax = _softmax_wrapper(torch.Tensor.softmax, True)
    _STATE["patched"] += 1


def _unpatch_globals() -> None:
    _STATE["patched"] -= 1
    if _STATE["patched"] == 0:
        F.scaled_dot_product_attention = _ORIGINAL_SDPA
        F.softmax = _ORIGINAL_F_SOFTMAX
        torch.softmax = _ORIGINAL_TORCH_SOFTMAX
        original = _STATE.pop("tensor_softmax")
        if original is _MISSING:
            del torch.Tensor.softmax
        else:
            torch.Tensor.softmax = original


@contextmanager
def _session(model: nn.Module) -> Iterator[_Session]:
    """The model's session, set up by the first open context and taken down by the last one."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    session = _SESSIONS.get(id(model))
    first = session is None
    if session is None:
        session = _Session(model)
        for module in session.names:
            session.handles.append(module.register_forward_pre_hook(
                lambda m, _args, s=session: _STACK.append((s, m))))
            session.handles.append(module.register_forward_hook(
                lambda m, _args, _out, s=session: _pop(s, m), always_call=True))
            if isinstance(module, nn.MultiheadAttention):
                previous = module.__dict__.get("forward", _MISSING)
                session.mha.append((module, previous))
                module.forward = _mha_wrapper(session, module, module.forward)  # type: ignore[method-assign]
        _SESSIONS[id(model)] = session
        _patch_globals()
    try:
        yield session
    finally:
        if first:
            _unpatch_globals()
            del _SESSIONS[id(model)]
            for handle in session.handles:
                handle.remove()
            for module, previous in session.mha:
                if previous is _MISSING:
                    del module.forward
                else:
                    module.forward = previous
            _STACK[:] = [entry for entry in _STACK if entry[0] is not session]


def _pop(session: _Session, module: nn.Module) -> None:
    for index in range(len(_STACK) - 1, -1, -1):
        if _STACK[index][0] is session and _STACK[index][1] is module:
            del _STACK[index]
            return


@contextmanager
def capture_attention(model: nn.Module, *, detach: bool = True) -> Iterator[AttentionRecord]:
    """Record every attention call of ``model`` while open (see the module docstring); yields the record.

    ``detach=False`` keeps the weights in the autograd graph (SDPA's are recomputed from q and k, so gradients
    flow through them but not into the fused output)."""
    record = AttentionRecord(detach=detach)
    with _session(model) as session:
        session.records.append(record)
        try:
            yield record
        finally:
            session.records.remove(record)


@contextmanager
def scale_attention(model: nn.Module, factor: float,
                    layers: Optional[Sequence[str | nn.Module] | str | nn.Module] = None) -> Iterator[None]:
    """Multiply the pre-softmax attention scores by ``factor`` in ``layers`` while open.

    ``layers``: attention owners by dotted name (what :attr:`AttentionRecord.names` lists) or module; a name also
    selects every attention call below it (``"blocks.0"``). ``None``: every layer. Factors of nested contexts
    multiply. A factor above 1 sharpens the attention (lower entropy), below 1 flattens it, 0 makes it uniform.
    """
    factor = float(factor)
    if not math.isfinite(factor):
        raise ValueError(f"factor must be finite, got {factor!r}")
    selected: Optional[tuple[str, ...]] = None
    if layers is not None:
        from ..explainers.base import resolve_layer
        items = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
        selected = tuple(resolve_layer(model, item)[0] for item in items)
    entry = (selected, factor)
    with _session(model) as session:
        session.scales.append(entry)
        try:
            yield
        finally:
            session.scales.remove(entry)


def patch_grid(model: nn.Module, image_size: tuple[int, int], tokens: Optional[int] = None) -> tuple[int, int]:
    """The patch grid (rows, columns) of ``model`` for inputs of ``image_size`` (H, W).

    From the patch embedding: the first ``Conv2d`` whose stride equals its kernel size (and is above 1), giving
    ``(H + 2 * padding - kernel) // stride + 1`` per side. Without one, or when that grid has more cells than
    ``tokens``, from ``tokens`` (the sequence length) and the input's aspect ratio: the factorisation of
    ``tokens - prefix`` (prefix 0 to 8: class, distillation or register tokens) closest to H / W.
    """
    height, width = int(image_size[0]), int(image_size[1])
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == tuple(module.stride) \
                and max(module.stride) > 1 and isinstance(module.padding, tuple):
            grid = tuple((size + 2 * pad - k) // s + 1 for size, pad, k, s in
                         zip((height, width), module.padding, module.kernel_size, module.stride))
            if tokens is None or grid[0] * grid[1] <= tokens:
                return grid  # type: ignore[return-value]
            break
    if tokens is None:
        raise ValueError(f"{type(model).__name__} has no patch-embedding Conv2d: pass the token count")
    best: Optional[tuple[float, tuple[int, int]]] = None
    for prefix in range(0, min(8, tokens - 1) + 1):
        patches = tokens - prefix
        for rows in range(1, patches + 1):
            if patches % rows == 0:
                error = abs(math.log((patches // rows) / rows) - math.log(width / height))
                if best is None or error < best[0] - 1e-9:
                    best = (error, (rows, patches // rows))
    assert best is not None
    return best[1]


def patch_attention_map(weights: Tensor, grid: tuple[int, int]) -> Tensor:
    """B x heads x N x N attention -> B x heads x rows x columns: with prefix tokens (N > rows * columns), the
    first (class) token's attention to the patches, which are taken to be the last rows * columns tokens; without,
    the mean attention each patch receives over all queries."""
    rows, columns = grid
    prefix = weights.shape[-1] - rows * columns
    if prefix < 0:
        raise ValueError(f"{weights.shape[-1]} tokens cannot hold a {rows} x {columns} patch grid")
    scores = weights[..., 0, prefix:] if prefix else weights.mean(dim=-2)
    return scores.reshape(*weights.shape[:-2], rows, columns)
