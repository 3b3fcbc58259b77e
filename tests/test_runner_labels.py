"""Which labels are explained and their prediction types, single- and multi-label, with threshold and top-k."""

from __future__ import annotations

import pytest
import torch

from xaiboard.runner.labels import predicted_labels, select_labels


def test_single_label_correct_prediction_is_one_tp():
    probs = torch.tensor([[0.1, 0.2, 0.6, 0.1]])
    assert select_labels(probs, [[2]], multi_label=False) == [[(2, "TP")]]


def test_single_label_wrong_prediction_gives_fn_and_fp():
    probs = torch.tensor([[0.1, 0.2, 0.6, 0.1]])
    assert select_labels(probs, [[1]], multi_label=False) == [[(1, "FN"), (2, "FP")]]


def test_single_label_ignores_the_threshold():
    probs = torch.tensor([[0.3, 0.25, 0.25, 0.2]])
    assert select_labels(probs, [[0]], multi_label=False, threshold=0.9) == [[(0, "TP")]]


def test_top_k_adds_true_negatives():
    probs = torch.tensor([[0.1, 0.3, 0.5, 0.1]])
    assert select_labels(probs, [[2]], multi_label=False, top_k=2) == [[(1, "TN"), (2, "TP")]]
    assert select_labels(probs, [[3]], multi_label=False, top_k=2) == [[(1, "TN"), (2, "FP"), (3, "FN")]]


def test_sample_without_ground_truth_explains_the_prediction_as_fp():
    probs = torch.tensor([[0.7, 0.3]])
    assert select_labels(probs, [[]], multi_label=False) == [[(0, "FP")]]


@pytest.mark.parametrize("threshold, expected", [
    (0.5, [(0, "TP"), (1, "FP"), (2, "FN")]),
    (0.3, [(0, "TP"), (1, "FP"), (2, "TP")]),
    (0.95, [(0, "FN"), (2, "FN")]),
])
def test_multi_label_uses_the_threshold(threshold, expected):
    probs = torch.tensor([[0.9, 0.6, 0.4, 0.1]])
    assert select_labels(probs, [[0, 2]], multi_label=True, threshold=threshold) == [expected]


def test_multi_label_with_top_k_and_several_samples():
    probs = torch.tensor([[0.9, 0.6, 0.4, 0.1], [0.2, 0.1, 0.45, 0.3]])
    result = select_labels(probs, [[0], [1]], multi_label=True, threshold=0.5, top_k=2)
    assert result == [[(0, "TP"), (1, "FP")], [(1, "FN"), (2, "TN"), (3, "TN")]]


def test_threshold_is_inclusive_and_top_k_larger_than_classes_is_all():
    probs = torch.tensor([[0.5, 0.2]])
    assert predicted_labels(probs, True, 0.5).tolist() == [[True, False]]
    assert select_labels(probs, [[]], multi_label=True, threshold=0.5, top_k=5) == [[(0, "FP"), (1, "TN")]]
