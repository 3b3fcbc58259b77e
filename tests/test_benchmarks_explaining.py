"""Benchmarks that explain again: Robustness, ClassSensitivity, Randomization.

The explainers here are written in the test (gradient, gradient x input, maps that ignore the model) so the expected
scores follow from their definition.
"""

from __future__ import annotations

import hashlib
import math
from typing import Optional

import pytest
import torch

from xaiboard.runner.benchmarks import ClassSensitivity, Randomization, Robustness


class TestExplainer:
    """The Explainer interface: explain(inputs, targets) -> N x H x W, config(), with_network(network)."""

    __test__ = False  # not a pytest class

    def __init__(self, network: torch.nn.Module, kind: str = "gradient_x_input", name: Optional[str] = None) -> None:
        self.network = network
        self.kind = kind
        self.name = name or kind
        self.calls: list[int] = []  # batch sizes seen, shared by copies made with with_network
        self.networks: list[torch.nn.Module] = [network]

    def explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.calls.append(inputs.shape[0])
        if self.kind == "input":  # ignores model and class
            return inputs.sum(1)
        if self.kind == "constant":
            return torch.ones(inputs.shape[0], *inputs.shape[2:])
        if self.kind == "zero":
            return torch.zeros(inputs.shape[0], *inputs.shape[2:])
        with torch.enable_grad():
            x = inputs.detach().clone().requires_grad_(True)
            output = self.network(x).gather(1, targets[:, None]).sum()
            (gradient,) = torch.autograd.grad(output, x)
        if self.kind == "gradient":
            return gradient.sum(1)
        return (gradient * x).sum(1).detach()

    __call__ = explain

    def explain_with_delta(self, inputs: torch.Tensor, targets: torch.Tensor):
        return self.explain(inputs, targets), None

    def config(self) -> dict:
        return {"class": "TestExplainer", "kind": self.kind}

    def with_network(self, network: torch.nn.Module) -> "TestExplainer":
        other = TestExplainer(network, self.kind, self.name)
        other.calls = self.calls
        other.networks = self.networks
        self.networks.append(network)
        return other


class Linear(torch.nn.Module):
    """Logits = W x + b with W of shape classes x C x H x W."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight.clone())
        self.bias = torch.nn.Parameter(torch.zeros(weight.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,kchw->nk", x, self.weight) + self.bias


def small_cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 6, 3, padding=1),
        torch.nn.BatchNorm2d(6),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 3),
    )


def state_hash(network: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in network.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# -- Robustness ------------------------------------------------------------------------------------------------------


def test_robustness_of_a_map_that_ignores_the_image_is_zero_and_of_the_image_itself_is_the_noise_ratio() -> None:
    network = small_cnn()
    inputs = torch.rand(3, 2, 8, 8) + 0.5
    targets = torch.tensor([0, 1, 2])
    bench = Robustness(n_samples=6, radius=0.05)
    constant = TestExplainer(network, "constant")
    assert torch.equal(bench.evaluate(network, inputs, targets, torch.ones(3, 8, 8), explainer=constant),
                       torch.zeros(3))
    # S(x) = sum of the channels: the change is the channel sum of the noise, the score its largest relative norm
    identity = TestExplainer(network, "input")
    scores = bench.evaluate(network, inputs, targets, inputs.sum(1), explainer=identity)
    noise = bench.noise(inputs)
    assert noise.shape == (3, 6, 2, 8, 8) and float(noise.abs().max()) <= 0.05
    expected = noise.sum(2).flatten(2).norm(dim=2).amax(dim=1) / inputs.sum(1).flatten(1).norm(dim=1)
    assert torch.allclose(scores, expected, rtol=1e-5)
    # the noise is U(-r, r): E|e1 + e2|^2 = 2 r^2 / 3 per pixel, so the largest norm is near r sqrt(2 * 64 / 3)
    typical = 0.05 * math.sqrt(2 * 64 / 3) / inputs.sum(1).flatten(1).norm(dim=1)
    assert torch.all(scores > 0.8 * typical) and torch.all(scores < 1.5 * typical)


def test_robustness_explains_all_copies_in_one_call_and_is_seeded() -> None:
    network = small_cnn()
    inputs = torch.randn(4, 2, 8, 8)
    targets = torch.tensor([0, 1, 2, 0])
    explainer = TestExplainer(network, "gradient_x_input")
    saliency = explainer.explain(inputs, targets)
    explainer.calls.clear()
    bench = Robustness(n_samples=5, radius=0.1)
    first = bench.evaluate(network, inputs, targets, saliency, explainer=explainer)
    assert explainer.calls == [20]
    second = bench.evaluate(network, inputs, targets, saliency, explainer=explainer)
    chunked = Robustness(n_samples=5, radius=0.1, explain_batch_size=7).evaluate(
        network, inputs, targets, saliency, explainer=explainer
    )
    assert explainer.calls[2:] == [7, 7, 6]
    assert torch.equal(first, second)
    assert torch.allclose(first, chunked, atol=1e-6)
    assert torch.all(first > 0) and torch.isfinite(first).all()
    one_by_one = torch.cat([
        bench.evaluate(network, inputs[i : i + 1], targets[i : i + 1], saliency[i : i + 1], explainer=explainer)
        for i in range(4)
    ])
    assert torch.allclose(first, one_by_one, atol=1e-5)  # the noise of an image does not depend on the batch
    other_seed = Robustness(n_samples=5, radius=0.1, seed=1).evaluate(
        network, inputs, targets, saliency, explainer=explainer
    )
    assert not torch.equal(first, other_seed)


def test_robustness_is_nan_for_a_zero_map() -> None:
    network = small_cnn()
    scores = Robustness(n_samples=2).evaluate(
        network, torch.randn(2, 2, 8, 8), torch.tensor([0, 1]), torch.zeros(2, 8, 8),
        explainer=TestExplainer(network, "zero"),
    )
    assert torch.isnan(scores).all()


def test_robustness_rejects_an_explainer_returning_the_wrong_shape() -> None:
    network = small_cnn()

    class Wrong(TestExplainer):
        def explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return torch.zeros(inputs.shape[0], 4, 4)

    with pytest.raises(ValueError, match=r"explainer returned maps of shape \(4, 4, 4\), expected \(4, 8, 8\)"):
        Robustness(n_samples=2).evaluate(
            network, torch.randn(2, 2, 8, 8), torch.tensor([0, 1]), torch.rand(2, 8, 8), explainer=Wrong(network)
        )


# -- ClassSensitivity ------------------------------------------------------------------------------------------------


def test_class_sensitivity_of_opposite_maps_is_one_and_of_class_blind_maps_is_zero() -> None:
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(2, 8, 8, generator=generator)
    network = Linear(torch.stack([w, -w, 0.0 * w]))  # classes 0 and 1 are always the most and least likely
    inputs = torch.randn(5, 2, 8, 8, generator=generator)
    targets = torch.tensor([0, 1, 2, 0, 1])
    bench = ClassSensitivity()
    # gradient x input: S_0 = w x = -S_1, correlation -1
    opposite = bench.evaluate(network, inputs, targets, torch.rand(5, 8, 8),
                              explainer=TestExplainer(network, "gradient_x_input"))
    assert torch.allclose(opposite, torch.ones(5), atol=1e-6)
    blind = bench.evaluate(network, inputs, targets, torch.rand(5, 8, 8), explainer=TestExplainer(network, "input"))
    assert torch.allclose(blind, torch.zeros(5), atol=1e-6)
    constant = bench.evaluate(network, inputs, targets, torch.rand(5, 8, 8),
                              explainer=TestExplainer(network, "constant"))
    assert torch.isnan(constant).all()


def test_class_sensitivity_explains_each_distinct_image_once_for_two_classes() -> None:
    network = small_cnn()
    images = torch.randn(2, 2, 8, 8)
    inputs = images[[0, 0, 1, 0, 1]]  # three labels of image 0, two of image 1
    targets = torch.tensor([0, 1, 2, 2, 0])
    explainer = TestExplainer(network, "gradient_x_input")
    scores = ClassSensitivity().evaluate(network, inputs, targets, torch.rand(5, 8, 8), explainer=explainer)
    assert explainer.calls == [4]  # (top, bottom) x 2 distinct images, one call
    assert scores[0] == scores[1] == scores[3] and scores[2] == scores[4]
    alone = ClassSensitivity().evaluate(network, images[1:], targets[:1], torch.rand(1, 8, 8), explainer=explainer)
    assert torch.allclose(alone, scores[2:3], atol=1e-6)
    assert torch.all((scores >= 0) & (scores <= 1))


# -- Randomization ---------------------------------------------------------------------------------------------------


class WithRawParameter(torch.nn.Module):
    """A custom module whose parameter no reset_parameters() covers."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.full((2, 1, 1), 3.0))
        self.body = small_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * self.scale)


def test_randomization_leaves_the_users_model_and_rng_untouched() -> None:
    network = WithRawParameter()
    with torch.no_grad():  # "trained": no parameter left at its initial value
        for parameter in network.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape))
    inputs = torch.randn(3, 2, 8, 8)
    targets = torch.tensor([0, 1, 2])
    explainer = TestExplainer(network, "gradient_x_input")
    saliency = explainer.explain(inputs, targets)
    network.train()  # BatchNorm would update its running statistics if the benchmark ran the model in train mode
    before = state_hash(network)
    rng_before = torch.random.get_rng_state()
    first = Randomization().evaluate(network, inputs, targets, saliency, explainer=explainer)
    second = Randomization().evaluate(network, inputs, targets, saliency, explainer=explainer)
    assert state_hash(network) == before
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert network.training
    assert torch.equal(first, second)  # seeded
    copies = explainer.networks[1:]
    assert len(copies) == 2 and all(copy is not network for copy in copies)
    for copy in copies:  # every parameter re-drawn, the raw one included
        for (name, original), (_, randomized) in zip(network.named_parameters(), copy.named_parameters()):
            assert not torch.equal(original, randomized), name
    assert state_hash(copies[0]) == state_hash(copies[1])
    other = Randomization(seed=1).evaluate(network, inputs, targets, saliency, explainer=explainer)
    assert not torch.equal(first, other)


def test_randomization_of_a_model_blind_map_is_one_and_of_a_gradient_is_near_zero() -> None:
    generator = torch.Generator().manual_seed(0)
    network = Linear(torch.randn(3, 1, 16, 16, generator=generator))
    inputs = torch.randn(4, 1, 16, 16, generator=generator)
    targets = torch.tensor([0, 1, 2, 0])
    blind = TestExplainer(network, "input")
    scores = Randomization().evaluate(network, inputs, targets, blind.explain(inputs, targets), explainer=blind)
    assert torch.allclose(scores, torch.ones(4), atol=1e-9)
    # the gradient of a linear model is its weight row: trained and re-drawn weights are independent
    gradient = TestExplainer(network, "gradient")
    scores = Randomization().evaluate(network, inputs, targets, gradient.explain(inputs, targets), explainer=gradient)
    assert torch.all(scores.abs() < 0.25), scores
    constant = TestExplainer(network, "constant")
    scores = Randomization().evaluate(network, inputs, targets, torch.ones(4, 16, 16), explainer=constant)
    assert torch.isnan(scores).all()


def test_randomization_needs_with_network() -> None:
    network = small_cnn()

    class NoCopy:
        name = "NoCopy"

        def explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return inputs.sum(1)

    with pytest.raises(TypeError, match="with_network"):
        Randomization().evaluate(network, torch.randn(1, 2, 8, 8), torch.tensor([0]), torch.rand(1, 8, 8),
                                 explainer=NoCopy())


# -- with the project's own explainers, when they are installed ------------------------------------------------------


def project_explainers(network: torch.nn.Module) -> list:
    from xaiboard.runner import explainers

    return [
        explainers.Gradient(network),
        explainers.IntegratedGradients(network, n_steps=8),
        explainers.GradCAM(network, layer=network[3]),  # bound by module, rebound by name on the copy
    ]


def test_explaining_benchmarks_with_the_project_explainers() -> None:
    network = small_cnn()
    inputs = torch.randn(3, 2, 8, 8)
    targets = torch.tensor([0, 1, 2])
    before = state_hash(network)
    for explainer in project_explainers(network):
        saliency = explainer.explain(inputs, targets)
        for bench in (Robustness(n_samples=3), ClassSensitivity(), Randomization()):
            scores = bench.evaluate(network, inputs, targets, saliency, explainer=explainer)
            assert scores.shape == (3,) and torch.isfinite(scores).all(), (explainer.name, bench.name)
            low, high = bench.range
            assert torch.all(scores >= low) and (high is None or torch.all(scores <= high))
    assert state_hash(network) == before
