"""What benchmarks cost per pair: stated passes match the passes counted on the network, benchmarks that explain
again add the explainer's own cost, and an unknown explainer cost makes the benchmark's cost unknown."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nets import TinyNet
from xaiboard.runner.benchmarks import (
    Benchmark,
    ClassSensitivity,
    Faithfulness,
    Localization,
    Randomization,
    Robustness,
    Sparseness,
)
from xaiboard.runner.cost import ZERO, Passes
from xaiboard.runner.explainers import Gradient, IntegratedGradients
from xaiboard.runner.plan import passes_of

SIZE = 12
SHAPE = (3, SIZE, SIZE)
#: images through any Counting network (module level, so the deep copy of Randomization counts here too)
COUNTS = {"forward": 0, "backward": 0}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Counting(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        COUNTS["forward"] += x.shape[0]
        out = super().forward(x)
        if out.requires_grad:
            out.register_hook(lambda grad: COUNTS.__setitem__("backward", COUNTS["backward"] + grad.shape[0]))
        return out


class NoCost:
    name = "NoCost"

    def explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return inputs.mean(1)


@pytest.fixture
def net() -> Counting:
    torch.manual_seed(0)
    return Counting().eval()


def pairs(count: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    inputs = torch.rand((count, *SHAPE), generator=generator) + 0.1
    return inputs, torch.arange(count) % 4, torch.rand((count, SIZE, SIZE), generator=generator)


CASES = {
    # channels_last="auto" runs its first batch twice per call to pick the layout: once per call, not per pair
    "InsertionAUC": lambda: Faithfulness("InsertionAUC", steps=10, channels_last=False),
    "DeletionAUC": lambda: Faithfulness("DeletionAUC", steps=7, channels_last=False),
    "NaiveFaithfulness": lambda: Faithfulness("NaiveFaithfulness", steps=5, channels_last=False),
    "Robustness": lambda: Robustness(n_samples=3),
    "Randomization": lambda: Randomization(),
    "ClassSensitivity": lambda: ClassSensitivity(),
    "Sparseness": lambda: Sparseness(),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_stated_passes_are_the_passes_counted_on_the_network(name, net):
    benchmark = CASES[name]()
    explainer = Gradient(net)
    inputs, targets, saliency = pairs()
    COUNTS.update(forward=0, backward=0)
    benchmark.evaluate(net, inputs, targets, saliency, explainer=explainer)
    stated = benchmark.passes(SHAPE, explainer)
    # the stated cost is the most a pair costs: DeletionAUC's all-zero end image is one image for the 3 pairs
    shared = 2 if name == "DeletionAUC" else 0
    assert (COUNTS["forward"], COUNTS["backward"]) == (3 * stated.forward - shared, 3 * stated.backward)


def test_the_cost_of_each_benchmark_per_pair():
    ig = IntegratedGradients(nn.Linear(1, 1))  # 34 fwd + 32 bwd with the defaults
    assert Faithfulness("InsertionAUC").passes((3, 224, 224)) == Passes(51)
    assert Faithfulness("NaiveFaithfulness", steps=200).passes((3, 8, 8)) == Passes(65)
    assert Robustness().passes((3, 224, 224), ig) == Passes(340, 320)
    assert Randomization().passes((3, 224, 224), ig) == Passes(34, 32)
    assert ClassSensitivity().passes((3, 224, 224), ig) == Passes(69, 64)
    assert Sparseness().passes((3, 224, 224)) == ZERO
    assert Localization("PointingGame").passes((3, 224, 224)) == ZERO
    assert Localization("IoSR").passes((3, 32, 32), ig) == ZERO


def test_an_explainer_without_a_stated_cost_makes_the_cost_unknown():
    with pytest.raises(NotImplementedError, match="Robustness explains again, and the explainer 'NoCost' does not"):
        Robustness().passes(SHAPE, NoCost())
    assert passes_of(Robustness(), SHAPE, NoCost()) is None
    assert passes_of(Robustness(), SHAPE, None) is None
    assert passes_of(Sparseness(), SHAPE, NoCost()) == ZERO


def test_a_user_benchmark_without_passes_has_unknown_cost():
    class Mine(Benchmark):
        name = "Mine"

    with pytest.raises(NotImplementedError, match="Mine does not state its cost"):
        Mine().passes(SHAPE, None)
    assert passes_of(Mine(), SHAPE, None) is None
