"""Row-wise statistics the benchmarks share: trapezoid AUC, Pearson and Spearman correlation, finite rows.

Every function works on N x M tensors row by row, in float64, and returns NaN where a statistic is undefined.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def trapezoid_auc(curve: Tensor) -> Tensor:
    """Trapezoid area under curves sampled at equally spaced points over [0, 1]: N x (K + 1) -> N."""
    steps = curve.shape[-1] - 1
    if steps < 1:
        raise ValueError("a curve needs at least two points")
    values = curve.double()
    return (values.sum(dim=-1) - (values[..., 0] + values[..., -1]) / 2) / steps


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (N x M -> N), in float64.

    NaN where a row is constant (zero variance) or holds a non-finite value: the correlation is undefined there.
    """
    a = a.double()
    b = b.double()
    scale_a = a.abs().amax(dim=-1)
    scale_b = b.abs().amax(dim=-1)
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    norm_a = a.norm(dim=-1)
    norm_b = b.norm(dim=-1)
    rho = ((a * b).sum(dim=-1) / (norm_a * norm_b)).clamp(-1.0, 1.0)
    # a row is constant when its spread is zero or at rounding level of its values
    tolerance = 1e-12 * math.sqrt(a.shape[-1])
    constant = (norm_a <= tolerance * scale_a) | (norm_b <= tolerance * scale_b)
    return torch.where(constant | ~torch.isfinite(rho), torch.full_like(rho, math.nan), rho)


def average_ranks(values: Tensor) -> Tensor:
    """Ranks (1-based) of each row's values, ties sharing the mean of their positions (as scipy's rankdata)."""
    values = values.double()
    size = values.shape[-1]
    sorted_values, order = torch.sort(values, dim=-1, stable=True)
    positions = torch.arange(size, device=values.device).expand_as(order)
    first = torch.ones_like(order, dtype=torch.bool)
    first[..., 1:] = sorted_values[..., 1:] != sorted_values[..., :-1]
    last = torch.ones_like(first)
    last[..., :-1] = first[..., 1:]
    group_start = torch.cummax(torch.where(first, positions, torch.zeros_like(positions)), dim=-1).values
    ends = torch.where(last, positions, torch.full_like(positions, size - 1))
    group_end = torch.flip(torch.cummin(torch.flip(ends, dims=[-1]), dim=-1).values, dims=[-1])
    mean_rank = (group_start + group_end).double() / 2 + 1
    return torch.empty_like(mean_rank).scatter_(-1, order, mean_rank)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of each row pair (Pearson of average ranks): N x M -> N; NaN where undefined."""
    finite = torch.isfinite(a).all(dim=-1) & torch.isfinite(b).all(dim=-1)
    rho = pearson(average_ranks(a), average_ranks(b))
    return torch.where(finite, rho, torch.full_like(rho, math.nan))


def finite_rows(values: Tensor) -> Tensor:
    """Which rows of an N x ... tensor hold only finite values."""
    return torch.isfinite(values.flatten(1)).all(dim=1)
