"""Which labels of a sample are explained, and their prediction types (TP/FN/FP/TN).

Explained labels are the ground truth, the predicted labels (single-label: the top-1; multi-label: every label with
probability >= threshold) and, when ``top_k`` is given, the ``top_k`` most likely. A ground-truth label that is
predicted is a TP, one that is not an FN; a predicted label that is not ground truth is an FP; a label explained only
because it is among the top-k is a TN.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Optional

import torch
from torch import Tensor


def predicted_labels(probs: Tensor, multi_label: bool, threshold: float) -> Tensor:
    """N x K booleans: the labels the model predicts."""
    if multi_label:
        return probs >= threshold
    predicted = torch.zeros_like(probs, dtype=torch.bool)
    if probs.shape[1]:
        predicted[torch.arange(probs.shape[0]), probs.argmax(dim=1)] = True
    return predicted


def prediction_type(is_truth: bool, is_predicted: bool) -> str:
    if is_truth:
        return "TP" if is_predicted else "FN"
    return "FP" if is_predicted else "TN"


def select_labels(
    probs: Tensor,
    ground_truth: Sequence[Collection[int]],
    multi_label: bool,
    threshold: float = 0.5,
    top_k: Optional[int] = None,
) -> list[list[tuple[int, str]]]:
    """Per sample, the explained labels in increasing order with their types.

    ``probs`` is N x K, ``ground_truth`` gives each sample's ground-truth labels.
    """
    probs = probs.detach().float().cpu()
    predicted = predicted_labels(probs, multi_label, threshold)
    if top_k:
        top = probs.topk(min(top_k, probs.shape[1]), dim=1).indices
        ranked = torch.zeros_like(predicted)
        ranked.scatter_(1, top, True)
    else:
        ranked = torch.zeros_like(predicted)
    result = []
    for row, truth in enumerate(ground_truth):
        truth = set(truth)
        chosen = set(predicted[row].nonzero().flatten().tolist()) | set(ranked[row].nonzero().flatten().tolist())
        chosen |= truth
        result.append([(label, prediction_type(label in truth, bool(predicted[row, label])))
                       for label in sorted(chosen)])
    return result
