"""Integrated Gradients' path diagnostics and the perturbation curves: analytic cases, then through a run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from xaiboard.runner import ImageClassificationRunner
from xaiboard.runner.benchmarks import Faithfulness
from xaiboard.runner.explainers import Gradient, IntegratedGradients, RandomMap
from xaiboard.runner.explainers.baselines import make_baseline
from xaiboard.runner.explainers.ig_path import PathRecorder

SIZE = 8


def softmax(logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(dim=1)


def linear_net(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, classes))


class SteepSigmoid(nn.Module):
    """Two outputs: the logit of a steep sigmoid of the pixel sum (class 1) and 0 (class 0); saturates quickly."""

    def __init__(self, steepness: float = 0.5) -> None:
        super().__init__()
        self.steepness = steepness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = torch.sigmoid(self.steepness * x.flatten(1).sum(dim=1))
        return torch.stack([torch.zeros_like(score), 10 * score], dim=1)


def test_on_a_linear_model_the_path_probabilities_and_completeness_hold_exactly():
    net = linear_net()
    inputs = torch.rand(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 2, 0, 1])
    explainer = IntegratedGradients(net, n_steps=16, batch_size=24)  # 24 < 5 x 16: Captum splits the steps
    maps, delta, path = explainer.explain_with_path(inputs, targets, softmax)
    assert path.alphas.shape == (16,) and bool((path.alphas[1:] > path.alphas[:-1]).all())
    with torch.no_grad():
        for step, alpha in enumerate(path.alphas.tolist()):
            expected = softmax(net(alpha * inputs)).gather(1, targets[:, None])[:, 0]
            assert torch.allclose(path.probabilities[:, step], expected, atol=1e-6)
        gap = (net(inputs) - net(torch.zeros_like(inputs))).gather(1, targets[:, None])[:, 0]
    # the gradient of a linear model is its weight row at every alpha: mean |w| of the target
    weights = net[1].weight.detach().abs().mean(dim=1)[targets]
    assert torch.allclose(path.gradients, weights[:, None].expand(-1, 16), rtol=1e-5)
    assert torch.allclose(path.output_gap, gap, atol=1e-5)
    assert torch.allclose(maps.flatten(1).sum(1), gap, atol=1e-5)
    assert float(path.relative_delta.max()) < 1e-4


def test_on_a_saturating_model_the_mean_gradient_falls_along_the_path():
    net = SteepSigmoid()
    inputs = torch.full((2, 1, SIZE, SIZE), 0.5)
    _, _, path = IntegratedGradients(net, n_steps=32).explain_with_path(inputs, torch.tensor([1, 1]), softmax)
    gradients = path.gradients[0]
    # sigmoid'(0.5 * alpha * 32): large near the baseline, almost nothing once the output is confident
    assert float(gradients[0]) > 50 * float(gradients[-1])
    assert bool((gradients[1:] <= gradients[:-1] + 1e-7).all())
    probabilities = path.probabilities[0]
    assert float(probabilities[-1]) > 0.99 and float(probabilities[0]) < float(probabilities[-1])
    half = int((path.alphas < 0.5).sum())
    assert float(probabilities[half]) > 0.99  # saturated halfway: the rest of the path adds almost nothing


def test_the_steps_search_finds_the_fewest_steps_within_the_tolerance():
    net = SteepSigmoid(steepness=2.0)
    inputs = torch.full((1, 1, SIZE, SIZE), 0.5)
    targets = torch.tensor([1])
    explainer = IntegratedGradients(net, n_steps=8, method="riemann_trapezoid", search_steps=256,
                                    delta_tolerance=0.01)
    with pytest.warns(UserWarning, match="convergence delta exceeds 1%"):
        _, _, path = explainer.explain_with_path(inputs, targets, softmax)
    needed = int(path.steps_needed[0])
    assert needed > 8

    def relative(steps: int) -> float:
        twin = IntegratedGradients(net, n_steps=steps, method="riemann_trapezoid", delta_tolerance=1.0)
        maps, delta, diagnostics = twin.explain_with_path(inputs, targets, softmax)
        return float(diagnostics.relative_delta[0])

    assert relative(needed) <= 0.01 < relative(needed // 2)
    assert explainer.passes((1, SIZE, SIZE)).forward > 8 + 2  # the plan counts the search


def test_recording_the_path_leaves_the_maps_as_they_are():
    net = linear_net()
    inputs = torch.rand(3, 3, SIZE, SIZE)
    targets = torch.tensor([0, 1, 2])
    explainer = IntegratedGradients(net, n_steps=8)
    plain, plain_delta = explainer.explain_with_delta(inputs, targets)
    maps, delta, _ = explainer.explain_with_path(inputs, targets, softmax)
    assert torch.equal(plain, maps) and torch.equal(plain_delta, delta)


def test_a_recorder_refuses_a_path_with_missing_points():
    recorder = PathRecorder(linear_net(), softmax)
    with pytest.raises(RuntimeError, match="expected 2 pairs x 4 steps"):
        recorder.gradient(recorder.forward, (torch.rand(6, 3, SIZE, SIZE).requires_grad_(),),
                          torch.zeros(6, dtype=torch.long))
        recorder.end_chunk(2, 4)


def test_black_and_white_baselines_follow_the_normalisation():
    inputs = torch.zeros(2, 3, 4, 4)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    black = make_baseline("black", inputs, None, 0, mean, std)
    white = make_baseline("white", inputs, None, 0, mean, std)
    assert torch.allclose(black[0, :, 0, 0], -torch.tensor(mean) / torch.tensor(std))
    assert torch.allclose(white[1, :, 3, 3], (1 - torch.tensor(mean)) / torch.tensor(std))
    assert make_baseline("white", inputs, None, 0) == 1.0
    # the uniform baseline is one noise image per seed, whatever the chunk
    noisy = torch.rand(4, 3, 4, 4)
    assert torch.equal(make_baseline("uniform", noisy, None, 3)[2:], make_baseline("uniform", noisy[2:], None, 3))


def test_with_baselines_names_one_explainer_per_baseline():
    explainers = IntegratedGradients.with_baselines(linear_net(), ["black", "white"], n_steps=8)
    assert [e.name for e in explainers] == ["IntegratedGradients[black]", "IntegratedGradients[white]"]
    assert [e.config()["baseline"] for e in explainers] == ["black", "white"]


@pytest.mark.parametrize("metric", ["InsertionAUC", "DeletionAUC", "NaiveFaithfulness"])
def test_the_curves_are_the_ones_the_scores_summarise(metric):
    net = linear_net()
    inputs = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([0, 1, 2, 0])
    maps = Gradient(net).explain(inputs, targets)
    maps[3, 0, 0] = math.nan
    benchmark = Faithfulness(metric, steps=10)
    scores, curves = benchmark.evaluate_with_curves(net, inputs, targets, maps)
    assert torch.equal(scores[:3], benchmark.evaluate(net, inputs, targets, maps)[:3])
    assert bool(torch.isnan(curves[3]).all()) and math.isnan(float(scores[3]))
    if metric == "NaiveFaithfulness":
        assert curves.shape == (4, 11)
        with torch.no_grad():
            assert torch.allclose(curves[:3, 0], softmax(net(inputs[:3])).gather(1, targets[:3, None])[:, 0])
    else:
        assert torch.allclose(curves[:3], benchmark.curves(net, inputs[:3], targets[:3], maps[:3]))
        assert np.allclose(np.trapezoid(curves[:3].numpy(), dx=1 / 10, axis=1), scores[:3].numpy(), atol=1e-6)


def test_a_run_stores_the_paths_and_curves_and_the_stored_curve_integrates_to_the_score(tmp_path):
    net = linear_net()
    items = [{"image": torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(i)), "labels": [i % 3],
              "name": f"s{i}"} for i in range(5)]
    runner = ImageClassificationRunner(tmp_path / "run", network=net, data=items, classes=["a", "b", "c"],
                                       device="cpu", mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    explainers = [*IntegratedGradients.with_baselines(net, ["black", "white"], n_steps=8, search_steps=32),
                  Gradient(net)]
    runner.register_saliency(explainers, [Faithfulness("InsertionAUC", steps=12), Faithfulness("DeletionAUC")])
    summary = runner.run(progress=False)
    try:
        assert summary.failures() == []
        configs = {e.name: e.config for e in summary.explainers()}
        assert configs["IntegratedGradients[white]"]["mean"] == [0.5, 0.5, 0.5]  # the run's normalisation
        paths = summary.paths(0, 0)
        assert [p.explainer for p in paths] == ["IntegratedGradients[black]", "IntegratedGradients[white]"]
        black = paths[0]
        with torch.no_grad():
            image = items[0]["image"][None]
            baseline = torch.full_like(image, -2.0)  # (0 - 0.5) / 0.25
            for step, alpha in enumerate(black.alphas.tolist()):
                point = baseline + alpha * (image - baseline)
                assert black.probabilities[step] == pytest.approx(float(softmax(net(point))[0, 0]), abs=1e-6)
            assert black.output_gap == pytest.approx(float(net(image)[0, 0] - net(baseline)[0, 0]), abs=1e-4)
        assert black.relative_delta < 1e-4 and black.steps_needed == 4
        curves = summary.curves(0, 0)
        assert {(c.explainer, c.metric) for c in curves} == {
            (e.name, m) for e in explainers for m in ("InsertionAUC", "DeletionAUC")}
        for curve in curves:
            points = 13 if curve.metric == "InsertionAUC" else 51
            assert curve.values.shape == (points,)
            auc = np.trapezoid(curve.values.astype(np.float64), dx=1 / (points - 1))
            assert auc == pytest.approx(curve.score, abs=1e-6)
        pairs = [(i, p.label_index) for i in range(len(items)) for p in summary.predictions(i, explained_only=True)]
        deltas = summary.delta_columns()
        assert sorted(set(zip(deltas["sample_id"].tolist(), deltas["label_index"].tolist()))) == sorted(pairs)
        assert len(deltas["value"]) == 2 * len(pairs) and bool((deltas["value"] < 1e-3).all())
        assert not deltas["over"].any()
    finally:
        summary.close()


def test_a_random_map_is_the_same_in_any_batch_and_loses_to_a_faithful_map():
    net = linear_net()
    inputs = torch.rand(6, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    reference = RandomMap(net, seed=1)
    maps = reference.explain(inputs, targets)
    assert torch.equal(RandomMap(net, seed=1, batch_size=2).explain(inputs[3:], targets[3:]), maps[3:])
    assert not torch.equal(RandomMap(net, seed=2).explain(inputs, targets), maps)
    assert float(maps.min()) >= 0 and float(maps.max()) < 1 and reference.passes((3, SIZE, SIZE)).forward == 0
    # input x weight ranks each pixel by its true effect on the target logit of a linear model
    weight = net[1].weight.detach()[targets].view(6, 3, SIZE, SIZE)
    faithful = (inputs * weight).sum(dim=1)
    insertion = Faithfulness("InsertionAUC", steps=16, baseline="zero")
    deletion = Faithfulness("DeletionAUC", steps=16)
    assert bool((insertion.evaluate(net, inputs, targets, faithful) > insertion.evaluate(net, inputs, targets, maps)).all())
    assert bool((deletion.evaluate(net, inputs, targets, faithful) < deletion.evaluate(net, inputs, targets, maps)).all())
