"""Benchmarks that need no explainer: faithfulness, localization, sparseness, and the shared helpers.

The expected values are known by construction: linear models whose per-pixel effect on the logit is exact, masks
and maps drawn at known coordinates, maps whose Gini index is known in closed form.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from xaiboard.runner.benchmarks import (
    ClassSensitivity,
    Faithfulness,
    Localization,
    Randomization,
    Robustness,
    Sparseness,
)
from xaiboard.runner.benchmarks.base import average_ranks, pearson, spearman, trapezoid_auc


class LinearLogit(torch.nn.Module):
    """Two classes: logit 0 is 0, logit 1 = sum over channels and pixels of weight * x + bias."""

    def __init__(self, weight: torch.Tensor, bias: float = 0.0) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight.clone())
        self.bias = torch.nn.Parameter(torch.tensor(float(bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = (x * self.weight).flatten(1).sum(1) + self.bias
        return torch.stack([torch.zeros_like(logit), logit], dim=1)


class ConstantLogits(torch.nn.Module):
    """Logits that ignore the image: softmax gives the same probabilities for every input."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1) + 0 * x.flatten(1).sum(1, keepdim=True)


def small_cnn(classes: int = 4, channels: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, 8, 3, padding=1, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32, classes),
    )


def scipy_blur(images: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Gaussian blur of each channel with edges replicated, computed by scipy (independent of our code)."""
    radius = kernel_size // 2
    out = np.empty(images.shape, dtype=np.float64)
    for n in range(images.shape[0]):
        for c in range(images.shape[1]):
            out[n, c] = ndimage.gaussian_filter(
                images[n, c].double().numpy(), sigma=sigma, mode="nearest", truncate=radius / sigma
            )
    return torch.from_numpy(out).float()


def linear_setup(n: int = 6, channels: int = 2, height: int = 10, width: int = 12, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    pixels = channels * height * width
    weight = torch.randn(channels, height, width, generator=generator) * 2 / math.sqrt(pixels)
    inputs = torch.randn(n, channels, height, width, generator=generator)
    return LinearLogit(weight), inputs, torch.ones(n, dtype=torch.long)


# -- faithfulness ----------------------------------------------------------------------------------------------------


def test_true_effect_map_has_the_best_insertion_and_deletion_auc() -> None:
    model, inputs, targets = linear_setup()
    weight = model.weight.detach()
    # the exact change of the target logit when a pixel goes from the start image to the image (all channels)
    insertion_effect = (weight * (inputs - scipy_blur(inputs))).sum(1)
    deletion_effect = (weight * inputs).sum(1)  # deleting to the zero baseline removes w * x
    random_map = torch.rand(inputs.shape[0], *inputs.shape[2:], generator=torch.Generator().manual_seed(1))

    insertion, deletion = Faithfulness("InsertionAUC"), Faithfulness("DeletionAUC")
    assert insertion.baseline == "blur" and deletion.baseline == "zero"
    ins_true = insertion.evaluate(model, inputs, targets, insertion_effect)
    ins_random = insertion.evaluate(model, inputs, targets, random_map)
    ins_reversed = insertion.evaluate(model, inputs, targets, -insertion_effect)
    del_true = deletion.evaluate(model, inputs, targets, deletion_effect)
    del_random = deletion.evaluate(model, inputs, targets, random_map)
    del_reversed = deletion.evaluate(model, inputs, targets, -deletion_effect)

    assert torch.all(ins_true > ins_random) and torch.all(ins_true > ins_reversed)
    assert torch.all(del_true < del_random) and torch.all(del_true < del_reversed)
    # a clear margin, not a rounding accident
    assert float((ins_true - ins_reversed).min()) > 0.05 and float((del_reversed - del_true).min()) > 0.05
    for scores in (ins_true, ins_random, del_true, del_random):
        assert scores.dtype == torch.float32 and scores.device.type == "cpu" and scores.shape == (6,)
        assert torch.all((scores >= 0) & (scores <= 1))


def test_auc_of_a_constant_probability_is_that_probability() -> None:
    model = ConstantLogits([0.3, -0.2, 1.1])
    p = torch.softmax(torch.tensor([0.3, -0.2, 1.1]), 0)
    inputs = torch.randn(4, 3, 9, 7)
    targets = torch.tensor([0, 1, 2, 0])
    saliency = torch.randn(4, 9, 7)
    for metric in ("InsertionAUC", "DeletionAUC"):
        scores = Faithfulness(metric, steps=13).evaluate(model, inputs, targets, saliency)
        assert torch.allclose(scores, p[targets], atol=1e-6)
    assert float(trapezoid_auc(torch.full((1, 51), 0.37, dtype=torch.float64))[0]) == pytest.approx(0.37, abs=1e-12)
    # trapezoid, not a mean of the points: a straight line from 0 to 1 has area 1/2, a tent 0-1-0 too
    assert float(trapezoid_auc(torch.linspace(0, 1, 11)[None])[0]) == pytest.approx(0.5, abs=1e-7)
    assert float(trapezoid_auc(torch.tensor([[0.0, 1.0, 0.0]]))[0]) == pytest.approx(0.5)
    assert float(trapezoid_auc(torch.tensor([[1.0, 0.0, 0.0]]))[0]) == pytest.approx(0.25)


def test_curves_perturb_round_k_pixels_over_steps_of_all_pixels() -> None:
    """With identity activation the 'probability' is the logit = number of pixels still equal to 1 (x 2 channels)."""
    height, width, steps = 7, 9, 10  # 63 pixels: not a multiple of steps
    model = LinearLogit(torch.ones(2, height, width))
    inputs = torch.ones(3, 2, height, width)
    targets = torch.ones(3, dtype=torch.long)
    saliency = torch.randn(3, height, width)
    counts = torch.tensor([math.floor(k * 63 / steps + 0.5) for k in range(steps + 1)], dtype=torch.float32)
    deletion = Faithfulness("DeletionAUC", steps=steps).curves(model, inputs, targets, saliency, "identity")
    insertion = Faithfulness("InsertionAUC", steps=steps, baseline="zero").curves(
        model, inputs, targets, saliency, "identity"
    )
    assert deletion.shape == (3, steps + 1)
    assert torch.equal(deletion, (2 * (63 - counts)).expand(3, -1))
    assert torch.equal(insertion, (2 * counts).expand(3, -1))


def test_deletion_ends_at_the_baseline_and_insertion_at_the_image() -> None:
    model = small_cnn()
    inputs = torch.randn(5, 3, 12, 12)
    targets = torch.tensor([0, 1, 2, 3, 1])
    saliency = torch.randn(5, 12, 12)
    with torch.no_grad():
        p_image = torch.softmax(model(inputs), 1)[torch.arange(5), targets]
        p_zero = torch.softmax(model(torch.zeros_like(inputs)), 1)[torch.arange(5), targets]
        p_blur = torch.softmax(model(scipy_blur(inputs)), 1)[torch.arange(5), targets]
    deletion = Faithfulness("DeletionAUC").curves(model, inputs, targets, saliency)
    insertion = Faithfulness("InsertionAUC").curves(model, inputs, targets, saliency)
    assert deletion.shape == insertion.shape == (5, 51)
    assert torch.allclose(deletion[:, 0], p_image, atol=1e-6) and torch.allclose(deletion[:, -1], p_zero, atol=1e-6)
    assert torch.allclose(insertion[:, 0], p_blur, atol=1e-5) and torch.allclose(insertion[:, -1], p_image, atol=1e-6)
    mean_baseline = inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    with torch.no_grad():
        p_mean = torch.softmax(model(mean_baseline), 1)[torch.arange(5), targets]
    curve = Faithfulness("DeletionAUC", baseline="mean").curves(model, inputs, targets, saliency)
    assert torch.allclose(curve[:, -1], p_mean, atol=1e-6)
    tensor_baseline = torch.full((3, 1, 1), 0.5)
    with torch.no_grad():
        p_half = torch.softmax(model(torch.full_like(inputs, 0.5)), 1)[torch.arange(5), targets]
    curve = Faithfulness("DeletionAUC", baseline=tensor_baseline).curves(model, inputs, targets, saliency)
    assert torch.allclose(curve[:, -1], p_half, atol=1e-6)


def test_pixels_are_ranked_by_relevance_with_ties_in_row_major_order() -> None:
    height, width = 3, 4
    pixels = height * width
    weight = (torch.arange(pixels, dtype=torch.float32) + 1).view(1, height, width)  # pixel p adds p + 1
    model = LinearLogit(weight)
    inputs = torch.ones(2, 1, height, width)
    targets = torch.ones(2, dtype=torch.long)
    order = torch.randperm(pixels, generator=torch.Generator().manual_seed(3))
    ranked = torch.empty(pixels)
    ranked[order] = torch.arange(pixels, 0, -1, dtype=torch.float32)  # order[0] is the most relevant
    saliency = torch.stack([ranked.view(height, width), torch.zeros(height, width)])  # second map: all ties
    curve = Faithfulness("DeletionAUC", steps=pixels).curves(model, inputs, targets, saliency, "identity")
    removed = -(curve[:, 1:] - curve[:, :-1]) - 1  # the index of the pixel removed at each step
    assert removed[0].long().tolist() == order.tolist()
    assert removed[1].long().tolist() == list(range(pixels))


def test_batched_evaluation_equals_one_pair_at_a_time() -> None:
    model = small_cnn()
    generator = torch.Generator().manual_seed(5)
    inputs = torch.randn(5, 3, 10, 10, generator=generator)
    targets = torch.randint(0, 4, (5,), generator=generator)
    saliency = torch.randn(5, 10, 10, generator=generator)
    for metric in ("InsertionAUC", "DeletionAUC", "NaiveFaithfulness"):
        batched = Faithfulness(metric, steps=12, eval_batch_size=1000).evaluate(model, inputs, targets, saliency)
        small = Faithfulness(metric, steps=12, eval_batch_size=7).evaluate(model, inputs, targets, saliency)
        single = torch.cat([
            Faithfulness(metric, steps=12).evaluate(model, inputs[i : i + 1], targets[i : i + 1], saliency[i : i + 1])
            for i in range(5)
        ])
        # a correlation of small probability drops amplifies float32 rounding of the forward pass
        atol = 1e-4 if metric == "NaiveFaithfulness" else 1e-6
        assert torch.allclose(batched, small, atol=atol), metric
        assert torch.allclose(batched, single, atol=atol), metric


def test_naive_faithfulness_correlates_band_relevance_with_the_drop() -> None:
    model, inputs, targets = linear_setup(n=4, height=8, width=8)
    effect = (model.weight.detach() * inputs).sum(1)  # what deleting each pixel to zero removes from the logit
    bench = Faithfulness("NaiveFaithfulness", steps=16)  # 64 pixels: 16 bands of 4
    assert bench.baseline == "zero" and bench.range == (-1.0, 1.0) and bench.higher_is_better
    # on the logit, a band's drop is exactly 4 x its mean effect: correlation 1; the negated map: -1
    assert torch.allclose(bench.evaluate(model, inputs, targets, effect, activation_fn="identity"), torch.ones(4),
                          atol=1e-5)
    assert torch.allclose(bench.evaluate(model, inputs, targets, -effect, activation_fn="identity"), -torch.ones(4),
                          atol=1e-5)
    probability = bench.evaluate(model, inputs, targets, effect)  # softmax: monotone, not linear
    assert torch.all(probability > 0.8)
    constant = bench.evaluate(model, inputs, targets, torch.ones(4, 8, 8))
    assert torch.isnan(constant).all()


def test_naive_faithfulness_is_nan_when_perturbation_does_not_move_the_output() -> None:
    model = ConstantLogits([0.0, 1.0])
    scores = Faithfulness("NaiveFaithfulness", steps=8).evaluate(
        model, torch.randn(3, 1, 6, 6), torch.ones(3, dtype=torch.long), torch.randn(3, 6, 6)
    )
    assert torch.isnan(scores).all()


def test_a_map_with_a_non_finite_value_scores_nan_and_the_others_are_kept() -> None:
    model = small_cnn()
    inputs = torch.randn(3, 3, 8, 8)
    targets = torch.tensor([0, 1, 2])
    saliency = torch.randn(3, 8, 8)
    broken = saliency.clone()
    broken[1, 2, 2] = float("nan")
    for bench in (Faithfulness("InsertionAUC"), Faithfulness("DeletionAUC"), Faithfulness("NaiveFaithfulness"),
                  Sparseness()):
        clean = bench.evaluate(model, inputs, targets, saliency)
        scores = bench.evaluate(model, inputs, targets, broken)
        assert math.isnan(float(scores[1])), bench.name
        assert torch.allclose(scores[[0, 2]], clean[[0, 2]], atol=1e-6), bench.name


def test_evaluate_restores_the_network_mode_and_uses_eval_mode() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(48, 3))
    model.train()
    inputs = torch.randn(2, 3, 4, 4)
    targets = torch.tensor([0, 2])
    saliency = torch.randn(2, 4, 4)
    first = Faithfulness("DeletionAUC").evaluate(model, inputs, targets, saliency)
    second = Faithfulness("DeletionAUC").evaluate(model, inputs, targets, saliency)
    assert torch.equal(first, second)  # dropout was off
    assert model.training and all(module.training for module in model.modules())


def test_faithfulness_runs_on_the_model_device_and_returns_cpu() -> None:
    model = small_cnn().to(torch.float64)
    inputs = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    scores = Faithfulness("DeletionAUC").evaluate(model, inputs, torch.tensor([0, 1]), torch.randn(2, 8, 8))
    assert scores.dtype == torch.float32 and scores.device.type == "cpu" and torch.isfinite(scores).all()


# -- localization ----------------------------------------------------------------------------------------------------


def box_mask(height: int, width: int, x: int, y: int, box_width: int, box_height: int) -> torch.Tensor:
    """A box as the store keeps it: x is the column, y the row."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[y : y + box_height, x : x + box_width] = True
    return mask


def peak(height: int, width: int, row: int, column: int) -> torch.Tensor:
    relevance = torch.rand(height, width, generator=torch.Generator().manual_seed(row * 1000 + column)) * 0.5
    relevance[row, column] = 2.0
    return relevance


def test_pointing_game_hit_miss_and_tolerance_strictly_less() -> None:
    bench = Localization("PointingGame")
    assert bench.tolerance == 15 and bench.aggregation == "macro" and bench.requires_masks
    model = small_cnn(channels=1)
    size = 64
    mask = box_mask(size, size, x=10, y=10, box_width=5, box_height=5)  # columns and rows 10..14
    maps = torch.stack([
        peak(size, size, 12, 12),  # inside the box
        peak(size, size, 12, 34),  # 20 px right of the box's last column
        peak(size, size, 12, 29),  # 15 px: not strictly less
        peak(size, size, 12, 28),  # 14 px
        peak(size, size, 25, 25),  # (11, 11) from the corner: sqrt(242) ~ 15.6
    ])
    masks = mask.expand(5, -1, -1)
    inputs = torch.randn(5, 1, size, size)
    targets = torch.zeros(5, dtype=torch.long)
    assert bench.evaluate(model, inputs, targets, maps, masks=masks).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    wide = Localization("PointingGame", tolerance=21).evaluate(model, inputs, targets, maps, masks=masks)
    assert wide.tolist() == [1.0, 1.0, 1.0, 1.0, 1.0]


def test_pointing_game_empty_mask_or_constant_map_is_not_a_trial() -> None:
    bench = Localization("PointingGame")
    model = small_cnn(channels=1)
    maps = torch.stack([peak(20, 20, 5, 5), torch.full((20, 20), 0.3), peak(20, 20, 5, 5)])
    masks = torch.stack([
        torch.zeros(20, 20, dtype=torch.bool),
        box_mask(20, 20, 0, 0, 20, 20),
        box_mask(20, 20, 4, 4, 3, 3),
    ])
    scores = bench.evaluate(model, torch.randn(3, 1, 20, 20), torch.zeros(3, dtype=torch.long), maps, masks=masks)
    assert math.isnan(float(scores[0])) and math.isnan(float(scores[1])) and float(scores[2]) == 1.0


def test_pointing_game_on_a_non_square_image_uses_x_as_the_column() -> None:
    height, width = 40, 80
    x, y = 30, 5
    mask = box_mask(height, width, x=x, y=y, box_width=4, box_height=4)
    model = small_cnn(channels=1)
    maps = torch.stack([peak(height, width, y + 2, x + 2), peak(height, width, x + 2, y + 2)])  # right, transposed
    scores = Localization("PointingGame").evaluate(
        model, torch.randn(2, 1, height, width), torch.zeros(2, dtype=torch.long), maps,
        masks=mask.expand(2, -1, -1),
    )
    assert scores.tolist() == [1.0, 0.0]


def test_pointing_game_takes_the_first_maximum_in_row_major_order() -> None:
    relevance = torch.zeros(1, 30, 30)
    relevance[0, 2, 25] = 1.0  # first in row-major order
    relevance[0, 20, 3] = 1.0
    model = small_cnn(channels=1)
    near_first = box_mask(30, 30, x=25, y=2, box_width=1, box_height=1)[None]
    near_second = box_mask(30, 30, x=3, y=20, box_width=1, box_height=1)[None]
    bench = Localization("PointingGame", tolerance=2)
    inputs, targets = torch.randn(1, 1, 30, 30), torch.zeros(1, dtype=torch.long)
    assert bench.evaluate(model, inputs, targets, relevance, masks=near_first).tolist() == [1.0]
    assert bench.evaluate(model, inputs, targets, relevance, masks=near_second).tolist() == [0.0]


def test_iosr_is_one_for_the_mask_itself_and_zero_for_a_disjoint_map() -> None:
    bench = Localization("IoSR")
    assert bench.threshold == 0.5 and bench.aggregation == "mean"
    model = small_cnn(channels=1)
    mask = box_mask(16, 16, 3, 4, 6, 5)
    disjoint = box_mask(16, 16, 10, 10, 4, 4)
    partial = torch.zeros(16, 16)
    partial[4, 3:9] = 1.0  # 6 salient pixels inside the mask
    partial[0, 0:2] = 0.9  # 2 salient pixels outside
    partial[15, 15] = 0.4  # below half the maximum: not salient
    maps = torch.stack([mask.float(), disjoint.float(), partial, -mask.float(), mask.float()])
    masks = torch.stack([mask, mask, mask, mask, torch.zeros_like(mask)])
    scores = bench.evaluate(model, torch.randn(5, 1, 16, 16), torch.zeros(5, dtype=torch.long), maps, masks=masks)
    assert scores[:3].tolist() == [1.0, 0.0, 0.75]
    assert math.isnan(float(scores[3])) and math.isnan(float(scores[4]))  # max r <= 0; empty mask


def test_localization_needs_masks_and_checks_its_parameters() -> None:
    model = small_cnn(channels=1)
    with pytest.raises(ValueError, match="masks"):
        Localization("PointingGame").evaluate(model, torch.randn(1, 1, 8, 8), torch.tensor([0]), torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="masks must be N x H x W"):
        Localization("IoSR").evaluate(
            model, torch.randn(1, 1, 8, 8), torch.tensor([0]), torch.rand(1, 8, 8), masks=torch.ones(1, 8, 9)
        )
    with pytest.raises(ValueError, match="threshold"):
        Localization("PointingGame", threshold=0.3)
    with pytest.raises(ValueError, match="tolerance"):
        Localization("PointingGame", tolerance=0)
    with pytest.raises(ValueError, match="threshold"):
        Localization("IoSR", threshold=1.5)
    with pytest.raises(ValueError, match="PointingGame"):
        Localization("Pointing")


# -- sparseness ------------------------------------------------------------------------------------------------------


def test_gini_of_one_hot_uniform_and_known_maps() -> None:
    bench = Sparseness()
    model = small_cnn(channels=1)
    n = 12 * 10
    one_hot = torch.zeros(12, 10)
    one_hot[3, 7] = -5.0  # |r|: the sign does not matter
    halves = torch.zeros(12, 10)
    halves[:6] = 1.0  # sorted: 60 zeros then 60 ones -> Gini 1/2
    maps = torch.stack([one_hot, torch.full((12, 10), 0.7), halves, torch.zeros(12, 10)])
    scores = bench.evaluate(model, torch.randn(4, 1, 12, 10), torch.zeros(4, dtype=torch.long), maps)
    assert float(scores[0]) == pytest.approx(1 - 1 / n, abs=1e-6)
    assert float(scores[1]) == pytest.approx(0.0, abs=1e-6)
    assert float(scores[2]) == pytest.approx(0.5, abs=1e-6)
    assert math.isnan(float(scores[3]))


# -- metadata, validation and statistics ------------------------------------------------------------------------------


EXPECTED = {
    "InsertionAUC": (Faithfulness("InsertionAUC"), True, (0.0, 1.0), "mean", False, False),
    "DeletionAUC": (Faithfulness("DeletionAUC"), False, (0.0, 1.0), "mean", False, False),
    "NaiveFaithfulness": (Faithfulness("NaiveFaithfulness"), True, (-1.0, 1.0), "mean", False, False),
    "PointingGame": (Localization("PointingGame"), True, (0.0, 1.0), "macro", True, False),
    "IoSR": (Localization("IoSR"), True, (0.0, 1.0), "mean", True, False),
    "Robustness": (Robustness(), False, (0.0, None), "mean", False, True),
    "ClassSensitivity": (ClassSensitivity(), True, (0.0, 1.0), "mean", False, True),
    "Sparseness": (Sparseness(), True, (0.0, 1.0), "mean", False, False),
    "Randomization": (Randomization(), False, (-1.0, 1.0), "mean", False, True),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_direction_range_and_config(name: str) -> None:
    bench, higher, value_range, aggregation, needs_masks, needs_explainer = EXPECTED[name]
    assert bench.name == name
    assert bench.higher_is_better is higher
    assert tuple(bench.range) == value_range
    assert bench.aggregation == aggregation
    assert bench.requires_masks is needs_masks and bench.requires_explainer is needs_explainer
    config = json.loads(json.dumps(bench.config()))
    assert config["name"] == name and config["class"] == type(bench).__name__
    for key, value in config.items():
        if key not in ("class", "name", "baseline"):
            assert getattr(bench, key) == value, key


def test_faithfulness_parameters_are_attributes_and_in_the_config() -> None:
    bench = Faithfulness("InsertionAUC", steps=20, baseline="mean", eval_batch_size=64)
    assert (bench.steps, bench.baseline, bench.eval_batch_size) == (20, "mean", 64)
    assert bench.config() == {"class": "Faithfulness", "name": "InsertionAUC", "steps": 20, "baseline": "mean",
                              "eval_batch_size": 64, "channels_last": "auto"}
    tensor = Faithfulness("DeletionAUC", baseline=torch.zeros(3, 1, 1)).config()
    assert tensor["baseline"] == {"tensor_shape": [3, 1, 1], "tensor_mean": 0.0}
    with pytest.raises(ValueError, match="baseline"):
        Faithfulness("DeletionAUC", baseline="noise")
    with pytest.raises(ValueError, match="steps"):
        Faithfulness("DeletionAUC", steps=0)
    with pytest.raises(ValueError, match="InsertionAUC"):
        Faithfulness("Insertion")


def test_scores_of_a_random_map_lie_in_each_range() -> None:
    model = small_cnn()
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(4, 3, 10, 10, generator=generator)
    targets = torch.tensor([0, 1, 2, 3])
    saliency = torch.randn(4, 10, 10, generator=generator)
    masks = torch.zeros(4, 10, 10, dtype=torch.bool)
    masks[:, 2:6, 3:8] = True
    for bench in (Faithfulness("InsertionAUC"), Faithfulness("DeletionAUC"), Faithfulness("NaiveFaithfulness"),
                  Localization("PointingGame"), Localization("IoSR"), Sparseness()):
        scores = bench.evaluate(model, inputs, targets, saliency, masks=masks)
        low, high = bench.range
        assert scores.shape == (4,) and torch.isfinite(scores).all(), bench.name
        assert torch.all(scores >= low) and (high is None or torch.all(scores <= high)), bench.name


def test_evaluate_rejects_bad_arguments_with_clear_messages() -> None:
    model = small_cnn()
    inputs = torch.randn(2, 3, 8, 8)
    bench = Faithfulness("DeletionAUC")
    with pytest.raises(ValueError, match="saliency must be N x H x W"):
        bench.evaluate(model, inputs, torch.tensor([0, 1]), torch.randn(2, 8, 7))
    with pytest.raises(ValueError, match="targets must hold N = 2"):
        bench.evaluate(model, inputs, torch.tensor([0, 1, 2]), torch.randn(2, 8, 8))
    with pytest.raises(ValueError, match="inputs must be N x C x H x W"):
        bench.evaluate(model, inputs[0], torch.tensor([0]), torch.randn(1, 8, 8))
    with pytest.raises(ValueError, match="target 9 is out of range for a network with 4 outputs"):
        bench.evaluate(model, inputs, torch.tensor([0, 9]), torch.randn(2, 8, 8))
    with pytest.raises(TypeError, match="integer class indices"):
        bench.evaluate(model, inputs, torch.tensor([0.0, 1.0]), torch.randn(2, 8, 8))
    with pytest.raises(ValueError, match="activation_fn"):
        bench.evaluate(model, inputs, torch.tensor([0, 1]), torch.randn(2, 8, 8), activation_fn="relu")
    for needs_explainer in (Robustness(), ClassSensitivity(), Randomization()):
        with pytest.raises(ValueError, match="explainer="):
            needs_explainer.evaluate(model, inputs, torch.tensor([0, 1]), torch.randn(2, 8, 8))
    # a singleton channel on the maps is accepted; zero pairs give zero scores
    assert bench.evaluate(model, inputs, torch.tensor([0, 1]), torch.randn(2, 1, 8, 8)).shape == (2,)
    assert bench.evaluate(model, inputs[:0], torch.zeros(0, dtype=torch.long), torch.randn(0, 8, 8)).shape == (0,)


def test_pearson_spearman_and_ranks_match_numpy_and_scipy() -> None:
    generator = torch.Generator().manual_seed(4)
    a = torch.randint(0, 6, (5, 40), generator=generator).double()  # many ties
    b = a * 0.5 + torch.randint(0, 6, (5, 40), generator=generator).double()
    for row in range(5):
        assert float(pearson(a, b)[row]) == pytest.approx(np.corrcoef(a[row], b[row])[0, 1], abs=1e-12)
        assert float(spearman(a, b)[row]) == pytest.approx(stats.spearmanr(a[row], b[row])[0], abs=1e-12)
        assert np.allclose(average_ranks(a)[row].numpy(), stats.rankdata(a[row].numpy()))
    constant = torch.stack([torch.full((40,), 0.1), torch.zeros(40)])
    assert torch.isnan(pearson(constant, b[:2])).all() and torch.isnan(spearman(constant, b[:2])).all()


class ReadsMemoryInOrder(torch.nn.Module):
    """A network that assumes contiguous memory (as some custom kernels do): channels-last input scrambles it."""

    def __init__(self, body: torch.nn.Module, view: bool) -> None:
        super().__init__()
        self.body = body
        self.view = view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.view:
            return self.body[-1](self.body[:-2](x).view(x.shape[0], -1))  # .view fails on channels-last activations
        n, c, h, w = x.shape
        return self.body(torch.as_strided(x, x.shape, (c * h * w, h * w, w, 1)))


@pytest.mark.parametrize("view", [True, False])
def test_channels_last_is_used_only_when_the_network_gives_the_same_outputs(view: bool) -> None:
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 8 * 8, 3))
    network = ReadsMemoryInOrder(body, view)
    inputs = torch.randn(6, 3, 8, 8)
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    saliency = torch.randn(6, 8, 8)
    contiguous = Faithfulness("DeletionAUC", channels_last=False).evaluate(network, inputs, targets, saliency)
    auto = Faithfulness("DeletionAUC", eval_batch_size=16).evaluate(network, inputs, targets, saliency)
    assert torch.allclose(auto, contiguous, atol=1e-6)
    if not view:  # forcing it shows why the check matters
        forced = Faithfulness("DeletionAUC", channels_last=True).evaluate(network, inputs, targets, saliency)
        assert not torch.allclose(forced, contiguous, atol=1e-3)


class CountingNetwork(torch.nn.Module):
    """Counts the images it is run on."""

    def __init__(self, body: torch.nn.Module) -> None:
        super().__init__()
        self.body = body
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return self.body(x)


def reference_curve(network, image, target, relevance, start, end, steps):
    """One perturbed image and one forward pass per step, straight from the definition."""
    pixels = relevance.numel()
    order = np.argsort(-relevance.flatten().numpy(), kind="stable")
    curve = []
    for k in range(steps + 1):
        chosen = torch.zeros(pixels, dtype=torch.bool)
        chosen[order[: math.floor(k * pixels / steps + 0.5)]] = True
        perturbed = torch.where(chosen.view(1, *relevance.shape), end, start)
        with torch.no_grad():
            curve.append(float(torch.softmax(network(perturbed[None]), 1)[0, target]))
    return torch.tensor(curve)


def test_steps_that_change_no_pixel_are_not_run_again_and_the_curve_is_unchanged() -> None:
    torch.manual_seed(0)
    network = CountingNetwork(small_cnn())
    inputs = torch.randn(3, 3, 10, 10)
    inputs[:, :, :, 5:] = 0.0  # half of every image already equals the zero baseline
    targets = torch.tensor([0, 1, 2])
    saliency = torch.rand(3, 10, 10)
    saliency[:, :, 5:] += 1.0  # the zero half ranks first: deleting it changes nothing
    steps = 20
    for metric in ("DeletionAUC", "InsertionAUC"):
        bench = Faithfulness(metric, steps=steps, baseline="zero", channels_last=False)
        network.images = 0
        curves = bench.curves(network, inputs, targets, saliency)
        # steps 0..10 take only zero pixels: one image (the start); 3 distinct images and 1 zero image at the ends;
        # steps 11..19 of each pair
        assert network.images == 4 + 3 * 9
        for i in range(3):
            start, end = (torch.zeros_like(inputs[i]), inputs[i]) if metric == "InsertionAUC" else (
                inputs[i], torch.zeros_like(inputs[i]))
            expected = reference_curve(network, inputs[i], targets[i], saliency[i], start, end, steps)
            assert torch.allclose(curves[i], expected, atol=1e-6), metric
    naive = Faithfulness("NaiveFaithfulness", steps=10, channels_last=False)
    network.images = 0
    scores = naive.evaluate(network, inputs, targets, saliency)
    assert network.images == 3 + 3 * 5  # each image once, then the 5 bands holding non-zero pixels of each
    assert torch.isfinite(scores).all()
