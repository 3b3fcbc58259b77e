"""Every explainer on a tiny CNN: shapes, finite values, what each map must mean, seeds, batching and reuse."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nets import TinyNet
from xaiboard.runner.explainers import (
    RISE,
    Deconvolution,
    DeepLift,
    GradCAM,
    Gradient,
    GuidedBackprop,
    GuidedGradCAM,
    InputXGradient,
    IntegratedGradients,
    Occlusion,
    SmoothGrad,
)

CLASSES = 4
SIZE = 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class QuadrantNet(nn.Module):
    """Class 0's logit is the sum of the top-left quadrant's pixels; class 1 the bottom-right's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        top_left = x[:, :, :half, :half].flatten(1).sum(1)
        bottom_right = x[:, :, half:, half:].flatten(1).sum(1)
        return torch.stack([top_left, bottom_right], dim=1)


@pytest.fixture
def net() -> TinyNet:
    torch.manual_seed(0)
    network = TinyNet().eval()
    network.features.bn1.running_mean.uniform_(-0.2, 0.2)
    network.features.bn1.running_var.uniform_(0.5, 1.5)
    return network


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand((5, 3, SIZE, SIZE), generator=generator), torch.tensor([0, 1, 2, 3, 0])


FACTORIES = {
    "Gradient": lambda n: Gradient(n),
    "GuidedBackprop": lambda n: GuidedBackprop(n),
    "Deconvolution": lambda n: Deconvolution(n),
    "GradCAM": lambda n: GradCAM(n, "features.conv2"),
    "GuidedGradCAM": lambda n: GuidedGradCAM(n, "features.conv2"),
    "IntegratedGradients": lambda n: IntegratedGradients(n, n_steps=16),
    "DeepLift": lambda n: DeepLift(n),
    "InputXGradient": lambda n: InputXGradient(n),
    "SmoothGrad": lambda n: SmoothGrad(n, n_samples=4),
    "Occlusion": lambda n: Occlusion(n, window=4, stride=2),
    "RISE": lambda n: RISE(n, n_masks=64, grid=3),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_maps_have_input_size_are_finite_and_leave_the_network_alone(name, net, batch):
    inputs, targets = batch
    net.train()  # the explainer must explain in eval mode and give the flags back
    state = copy.deepcopy(net.state_dict())
    explainer = FACTORIES[name](net)
    maps, delta = explainer.explain_with_delta(inputs, targets)
    assert maps.shape == (5, SIZE, SIZE)
    assert maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    assert maps.abs().sum() > 0
    assert delta is None or delta.shape == (5,)
    assert all(module.training for module in net.modules())
    for module in net.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in net.parameters())
    assert torch.equal(explainer(inputs, targets), explainer.explain(inputs, targets)) or name == "SmoothGrad"


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_config_is_json_and_with_network_rebuilds_the_same_explainer(name, net, batch):
    explainer = FACTORIES[name](net)
    config = explainer.config()
    assert json.loads(json.dumps(config)) == config
    assert config["class"] == name and config["name"] == name
    twin = copy.deepcopy(net)
    rebound = explainer.with_network(twin)
    assert rebound.network is twin and rebound.config() == config
    inputs, targets = batch
    assert torch.allclose(rebound.explain(inputs, targets), explainer.explain(inputs, targets), atol=1e-6)
    with torch.no_grad():
        for parameter in twin.parameters():
            parameter.mul_(-1.5)
    assert not torch.allclose(rebound.explain(inputs, targets), explainer.explain(inputs, targets), atol=1e-6)


# SmoothGrad draws its noise per call: the same call repeats exactly, another chunking draws other noise.
@pytest.mark.parametrize("name", sorted(set(FACTORIES) - {"SmoothGrad"}))
def test_maps_do_not_depend_on_how_pairs_are_chunked(name, net, batch):
    inputs, targets = batch
    whole = FACTORIES[name](net).explain(inputs, targets)
    chunked = FACTORIES[name](net)
    chunked.given_batch_size = 2
    assert torch.allclose(chunked.explain(inputs, targets), whole, atol=1e-5)


@pytest.mark.parametrize("name", ["Gradient", "IntegratedGradients", "Occlusion", "RISE", "InputXGradient"])
def test_relevance_lies_where_the_class_looks(name):
    """QuadrantNet's class 0 only sees the top-left quadrant: its evidence must stand out there (RISE gives every
    pixel the mean score of the masks keeping it, so it is compared by contrast, not ratio)."""
    network = QuadrantNet()
    explainer = {
        "Gradient": lambda: Gradient(network),
        "IntegratedGradients": lambda: IntegratedGradients(network, n_steps=8),
        "Occlusion": lambda: Occlusion(network, window=2, stride=2),
        "RISE": lambda: RISE(network, n_masks=256, grid=4, activation="none"),
        "InputXGradient": lambda: InputXGradient(network),
    }[name]()
    inputs = torch.rand((2, 3, 8, 8)) + 0.5
    maps = explainer.explain(inputs, torch.tensor([0, 1]))
    for row, inside, outside in ((0, maps[0, :4, :4], maps[0, 4:, 4:]), (1, maps[1, 4:, 4:], maps[1, :4, :4])):
        assert inside.mean() - outside.mean() > 5 * outside.std() + 1e-3, row
        assert inside.mean() > 0


def test_gradcam_on_a_named_layer_matches_the_definition(net, batch):
    inputs, targets = batch
    maps = GradCAM(net, "features.conv2").explain(inputs, targets)
    captured = {}
    handle = net.features.conv2.register_forward_hook(lambda _m, _i, out: captured.setdefault("a", out))
    features_input = inputs.clone().requires_grad_(True)
    logits = net(features_input)
    handle.remove()
    activations = captured["a"]
    gradients = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), activations)[0]
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(1, keepdim=True))
    expected = F.interpolate(cam, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(maps, expected.detach(), atol=1e-5)


def test_a_layer_given_as_module_is_stored_by_name(net):
    explainer = GradCAM(net, net.features.conv2)
    assert explainer.config()["layer"] == "features.conv2"


def test_an_unknown_layer_lists_close_names(net):
    with pytest.raises(ValueError, match=r"layer 'features.conv3' does not exist in TinyNet \(close names: "
                                         r"features.conv2, features.conv1"):
        GradCAM(net, "features.conv3")


def test_gradcam_check_refuses_a_layer_without_feature_maps(net, batch):
    with pytest.raises(ValueError, match="'fc' must output N x C x h x w feature maps"):
        GradCAM(net, "fc").check(batch[0][:1])


@pytest.mark.parametrize("baseline", ["zero", "black", "white", "blur", "uniform"])
def test_integrated_gradients_completeness_within_the_reported_delta(net, batch, baseline):
    inputs, targets = batch
    explainer = IntegratedGradients(net, n_steps=64, baseline=baseline)
    maps, delta = explainer.explain_with_delta(inputs, targets)
    from xaiboard.runner.explainers.baselines import make_baseline

    reference = make_baseline(baseline, inputs, None, 0)
    reference = torch.zeros_like(inputs) + reference
    with torch.no_grad():
        gap = (net(inputs) - net(reference)).gather(1, targets[:, None])[:, 0]
    totals = maps.flatten(1).sum(1)
    assert torch.all((totals - gap).abs() <= delta.abs() + 1e-4)
    # within 2% of the gap, and 5e-4 in output units where the baseline barely changes the output (noise here)
    assert torch.all(delta.abs() <= 0.02 * gap.abs() + 5e-4)


def test_deeplift_sums_to_the_output_difference(net, batch):
    inputs, targets = batch
    maps, delta = DeepLift(net).explain_with_delta(inputs, targets)
    with torch.no_grad():
        gap = (net(inputs) - net(torch.zeros_like(inputs))).gather(1, targets[:, None])[:, 0]
    assert torch.allclose(maps.flatten(1).sum(1), gap, atol=1e-4)
    assert delta.abs().max() < 1e-4


def test_rise_is_deterministic_for_a_seed(net, batch):
    inputs, targets = batch
    first = RISE(net, n_masks=64, grid=3, seed=7).explain(inputs, targets)
    again = RISE(net, n_masks=64, grid=3, seed=7, batch_size=8).explain(inputs, targets)
    other = RISE(net, n_masks=64, grid=3, seed=8).explain(inputs, targets)
    assert torch.equal(first, again) or torch.allclose(first, again, atol=1e-6)
    assert not torch.allclose(first, other)


def test_rise_masks_follow_the_paper(net):
    masks = RISE(net, n_masks=40, grid=4, p=0.5).masks(0, 12, 12, torch.device("cpu"))
    assert masks.shape == (32, 12, 12)
    assert masks.min() >= 0 and masks.max() <= 1
    assert 0.3 < masks.mean() < 0.7


def test_smoothgrad_is_deterministic_for_a_seed(net, batch):
    inputs, targets = batch
    assert torch.equal(SmoothGrad(net, n_samples=4, seed=3).explain(inputs, targets),
                       SmoothGrad(net, n_samples=4, seed=3).explain(inputs, targets))


@pytest.mark.parametrize("make, message", [
    (lambda n: IntegratedGradients(n, n_steps=0), "n_steps must be a positive integer"),
    (lambda n: IntegratedGradients(n, baseline="grey"), "baseline must be one of zero, black, white, blur, uniform"),
    (lambda n: IntegratedGradients(n, search_steps=2), "search_steps must be an integer of at least 4"),
    (lambda n: IntegratedGradients(n, mean=[0.5]), "give both mean and std"),
    (lambda n: IntegratedGradients(n, method="simpson"), "method must be one of"),
    (lambda n: Occlusion(n, window=0), "window must be a positive integer"),
    (lambda n: RISE(n, p=0), r"p must be in \(0, 1\]"),
    (lambda n: RISE(n, activation="softmx"), "activation must be one of softmax, sigmoid, none"),
    (lambda n: SmoothGrad(n, stdev=0), "stdev must be positive"),
    (lambda n: Gradient(n, batch_size=0), "batch_size must be a positive integer"),
])
def test_bad_parameters_are_refused(net, make, message):
    with pytest.raises(ValueError, match=message):
        make(net)


def test_occlusion_window_larger_than_the_image_is_refused(net, batch):
    with pytest.raises(ValueError, match="window \\(16, 16\\) is larger than the 12x12 images"):
        Occlusion(net, window=16).check(batch[0][:1])


def test_one_instance_serves_several_batches_and_names_are_kept(net, batch):
    inputs, targets = batch
    explainer = Gradient(net, name="Saliency")
    assert explainer.name == "Saliency" and explainer.config()["name"] == "Saliency"
    first = explainer.explain(inputs[:2], targets[:2])
    explainer.explain(inputs, targets)
    assert torch.equal(explainer.explain(inputs[:2], targets[:2]), first)
