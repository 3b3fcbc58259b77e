"""What explainers cost and how their defaults scale: stated passes match the passes counted on a network, defaults
resolved for 224 and 32 px, native-resolution maps, the guided ReLU rule warning and IG's convergence check."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nets import TinyNet
from xaiboard.runner.cost import Passes
from xaiboard.runner.explainers import (
    RISE,
    Deconvolution,
    DeepLift,
    Explainer,
    GradCAM,
    Gradient,
    GuidedBackprop,
    GuidedGradCAM,
    InputXGradient,
    IntegratedGradients,
    Occlusion,
    SmoothGrad,
)
from xaiboard.runner.explainers.base import to_input_size
from xaiboard.runner.explainers.integrated_gradients import relative_delta
from xaiboard.runner.plan import passes_of

SIZE = 12
LAYER = "inner.features.conv2"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Counting(nn.Module):
    """Counts the images pushed forward through ``inner`` and the images whose output gradient flows back."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forward_images = 0
        self.backward_images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_images += x.shape[0]
        out = self.inner(x)
        if out.requires_grad:
            out.register_hook(self._count_backward)
        return out

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.backward_images += grad.shape[0]


class FunctionalNet(nn.Module):
    """Convolutions with ``F.relu`` calls and no ReLU module: nothing for Captum's guided rule to hook."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


class CubeNet(nn.Module):
    """Class k's output is (k + 1) * sum(x^3): one Gauss-Legendre step integrates 3/4 of it, four steps all."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = (x ** 3).flatten(1).sum(1)
        return torch.stack([total, 2 * total], dim=1)


@pytest.fixture
def net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand((3, 3, SIZE, SIZE), generator=generator), torch.tensor([0, 1, 2])


COUNTED = {
    "Gradient": lambda n: Gradient(n),
    "InputXGradient": lambda n: InputXGradient(n),
    "GuidedBackprop": lambda n: GuidedBackprop(n),
    "Deconvolution": lambda n: Deconvolution(n),
    "GradCAM": lambda n: GradCAM(n, LAYER),
    "GuidedGradCAM": lambda n: GuidedGradCAM(n, LAYER),
    "IntegratedGradients": lambda n: IntegratedGradients(n, n_steps=5, batch_size=4, delta_tolerance=1.0),
    "DeepLift": lambda n: DeepLift(n),
    "SmoothGrad": lambda n: SmoothGrad(n, n_samples=3, batch_size=4),
    "Occlusion default": lambda n: Occlusion(n),
    "Occlusion 4/3": lambda n: Occlusion(n, window=4, stride=3, batch_size=7),
    "RISE": lambda n: RISE(n, n_masks=40, grid=3, batch_size=40),
}


@pytest.mark.parametrize("name", sorted(COUNTED))
def test_stated_passes_are_the_passes_counted_on_the_network(name, net, batch):
    inputs, targets = batch
    counting = Counting(net)
    explainer = COUNTED[name](counting)
    explainer.check(inputs[:1])  # once per run, not per pair
    counting.forward_images = counting.backward_images = 0
    explainer.explain(inputs, targets)
    stated = explainer.passes((3, SIZE, SIZE))
    assert isinstance(stated, Passes)
    assert (counting.forward_images, counting.backward_images) == (3 * stated.forward, 3 * stated.backward)


def test_defaults_and_their_cost_at_224_and_32(net):
    assert Occlusion(net).passes((3, 224, 224)) == Passes(15 * 15 + 1)  # window 28, stride 14
    assert Occlusion(net).passes((3, 32, 32)) == Passes(15 * 15 + 1)  # window 4, stride 2
    assert Occlusion(net, window=8, stride=4).passes((3, 224, 224)) == Passes(55 * 55 + 1)  # pixels as given
    assert Occlusion(net, window=16).passes((3, 224, 224)) == Passes(27 * 27 + 1)  # stride: half the window
    assert RISE(net).passes((3, 224, 224)) == Passes(500)
    assert RISE(net).passes((3, 100, 100)) == Passes(1000)
    assert RISE(net).passes((3, 32, 32)) == Passes(2000)
    assert RISE(net, n_masks=64).passes((3, 224, 224)) == Passes(64)
    assert IntegratedGradients(net).passes((3, 224, 224)) == Passes(34, 32)
    assert SmoothGrad(net).passes((3, 32, 32)) == Passes(25, 25)
    assert DeepLift(net).passes((3, 224, 224)) == Passes(4, 2)
    assert GuidedGradCAM(net, "features.conv2").passes((3, 224, 224)) == Passes(2, 2)
    with pytest.raises(ValueError, match="image_shape must be"):
        Gradient(net).passes((224, 224))


def test_resolved_defaults_go_into_the_configuration(net):
    occlusion, rise = Occlusion(net), RISE(net)
    assert occlusion.config()["window"] == "auto" and rise.config()["n_masks"] == "auto"
    occlusion.check(torch.zeros((1, 3, 224, 224)))
    rise.check(torch.zeros((1, 3, 224, 224)))
    assert occlusion.config()["window"] == [28, 28] and occlusion.config()["stride"] == [14, 14]
    assert rise.config()["n_masks"] == 500 and rise.config()["grid"] == 7
    assert json.loads(json.dumps(occlusion.config())) == occlusion.config()
    assert Occlusion(net, window=5, stride=3).config()["window"] == [5, 5]
    assert "defaults" not in Occlusion(net, window=5, stride=3).config()
    twin = occlusion.with_network(TinyNet())
    assert twin.window is None and twin.passes((3, 224, 224)) == occlusion.passes((3, 224, 224))


def test_occlusion_refuses_a_stride_that_skips_pixels(net):
    with pytest.raises(ValueError, match=r"stride \(6, 6\) is larger than the window \(4, 4\)"):
        Occlusion(net, window=4, stride=6).check(torch.zeros((1, 3, SIZE, SIZE)))


def test_a_user_explainer_without_passes_has_unknown_cost(net):
    class Mine(Explainer):
        def _explain(self, inputs, targets):
            return inputs.sum(1), None

    mine = Mine(net)
    with pytest.raises(NotImplementedError, match="Mine does not state its cost"):
        mine.passes((3, SIZE, SIZE))
    assert passes_of(mine, (3, SIZE, SIZE)) is None
    assert passes_of(Gradient(net), (3, SIZE, SIZE)) == Passes(1, 1)


def test_gradcam_native_maps_upsampled_equal_the_input_size_maps(net, batch):
    inputs, targets = batch
    explainer = GradCAM(net, "features.conv2")
    native, _ = explainer.explain_with_delta(inputs, targets, native=True)
    full, _ = explainer.explain_with_delta(inputs, targets)
    assert native.shape == (3, SIZE // 2, SIZE // 2) and full.shape == (3, SIZE, SIZE)
    assert torch.equal(to_input_size(native, (SIZE, SIZE)), full)
    assert torch.equal(to_input_size(native[:, None], (SIZE, SIZE)), full)  # N x 1 x h x w is accepted
    assert to_input_size(full, (SIZE, SIZE)) is full


@pytest.mark.parametrize("make", [lambda n: Gradient(n), lambda n: GuidedGradCAM(n, "features.conv2"),
                                  lambda n: RISE(n, n_masks=32, grid=3)])
def test_other_explainers_are_native_at_the_input_size(make, net, batch):
    inputs, targets = batch
    native, _ = make(net).explain_with_delta(inputs, targets, native=True)
    assert native.shape == (3, SIZE, SIZE)


def _relu_warnings(record: list) -> list:
    return [w for w in record if "ReLU rule" in str(w.message)]


@pytest.mark.parametrize("make, rule", [(lambda n: GuidedBackprop(n), "guided backpropagation"),
                                        (lambda n: Deconvolution(n), "deconvolution"),
                                        (lambda n: GuidedGradCAM(n, "conv2"), "guided backpropagation")])
def test_functional_relus_get_one_warning_at_check(make, rule):
    torch.manual_seed(0)
    network = FunctionalNet().eval()
    inputs = torch.rand((2, 3, SIZE, SIZE))
    explainer = make(network)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        explainer.check(inputs[:1])
        explainer.check(inputs[:1])
        explainer.explain(inputs, torch.tensor([0, 1]))
        explainer.with_network(network).explain(inputs, torch.tensor([0, 1]))
    found = _relu_warnings(record)
    assert len(found) == 1 and found[0].category is UserWarning
    text = str(found[0].message)
    assert f"the {rule} ReLU rule applies only to torch.nn.ReLU modules" in text
    assert "FunctionalNet has 2 other activations" in text and "relu() in the forward of the network" in text
    assert "plain gradient" in text


def test_the_warning_comes_at_the_first_call_without_check_and_the_maps_are_plain_gradients():
    torch.manual_seed(0)
    network = FunctionalNet().eval()
    inputs, targets = torch.rand((2, 3, SIZE, SIZE)), torch.tensor([0, 3])
    with pytest.warns(UserWarning, match="ReLU rule"):
        guided = GuidedBackprop(network).explain(inputs, targets)
    assert torch.allclose(guided, Gradient(network).explain(inputs, targets), atol=1e-6)


def test_other_activation_modules_are_named_and_relu_modules_are_not(net):
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(), nn.Conv2d(4, 4, 3), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4)).eval()
    with pytest.warns(UserWarning, match=r"Sequential has 1 other activation: 1 \(ReLU6\);"):
        GuidedBackprop(network).check(torch.rand((1, 3, SIZE, SIZE)))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        GuidedBackprop(net).check(torch.rand((1, 3, SIZE, SIZE)))
        GuidedGradCAM(net, "features.conv2").explain(torch.rand((2, 3, SIZE, SIZE)), torch.tensor([0, 1]))
    assert not _relu_warnings(record)
    for module in network.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_integrated_gradients_warns_once_when_the_delta_is_large():
    network = CubeNet()
    inputs, targets = torch.rand((2, 3, 4, 4)) + 0.5, torch.tensor([0, 1])
    coarse = IntegratedGradients(network, n_steps=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        maps, delta = coarse.explain_with_delta(inputs, targets)
        coarse.explain_with_delta(inputs, targets)
    found = [w for w in record if "convergence delta" in str(w.message)]
    assert len(found) == 1
    assert "exceeds 5% of |F(x) - F(baseline)| for 2 of 2 pairs" in str(found[0].message)
    assert "raise n_steps" in str(found[0].message)
    assert torch.allclose(relative_delta(maps, delta), torch.full((2,), 0.25), atol=1e-3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        maps, delta = IntegratedGradients(network, n_steps=4).explain_with_delta(inputs, targets)
        IntegratedGradients(network, n_steps=1, delta_tolerance=0.3).explain(inputs, targets)
    assert not [w for w in record if "convergence delta" in str(w.message)]
    assert relative_delta(maps, delta).max() < 1e-3
