"""Filters and feature maps of named layers: equal to what the layers compute, compact, and no trace left behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xaiboard.runner.internals.features import (
    CHANNEL_OVERHEAD,
    bytes_per_sample,
    capture,
    conv_filters,
    feature_maps,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class SmallCNN(nn.Module):
    """Two conv layers, ReLU, pooling, dropout (so eval mode matters) and a linear head, for 3 x 16 x 16 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AdaptiveAvgPool2d(2)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(12 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.head(self.dropout(x.flatten(1)))


@pytest.fixture
def net() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def hooked_output(network: nn.Module, layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """What a plain forward hook sees on ``layer`` (network in eval mode)."""
    seen = []
    handle = layer.register_forward_hook(lambda m, a, out: seen.append(out.detach().clone()))
    try:
        network.eval()
        with torch.no_grad():
            network(inputs)
    finally:
        handle.remove()
    return seen[0]


def test_uint8_maps_equal_a_hook_within_the_quantisation_step(net, images):
    expected = {name: hooked_output(net, getattr(net, name), images) for name in ("conv1", "relu2")}
    net.train()
    maps = feature_maps(net, images, ["conv1", "relu2"])
    assert list(maps) == ["conv1", "relu2"]
    for name, want in expected.items():
        got = maps[name]
        assert got.codes.dtype == np.uint8 and got.codes.shape == tuple(want.shape)
        assert got.total_channels == want.shape[1]
        np.testing.assert_array_equal(got.channels, np.tile(np.arange(want.shape[1]), (want.shape[0], 1)))
        np.testing.assert_allclose(got.low, want.amin(dim=(2, 3)).numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(got.high, want.amax(dim=(2, 3)).numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(got.means, want.mean(dim=(2, 3)).numpy(), rtol=1e-6, atol=1e-6)
        # stated tolerance: half a quantisation step of each channel's own range
        step = (got.high - got.low)[..., None, None] / 255.0
        error = np.abs(got.maps() - want.numpy())
        assert np.all(error <= step / 2 + 1e-5)
        assert error.max() > 0  # it really is quantised


def test_float16_maps_equal_a_hook_within_float16_rounding(net, images):
    want = hooked_output(net, net.conv2, images).numpy()
    got = feature_maps(net, images, "conv2", encoding="float16")["conv2"]
    assert got.codes.dtype == np.float16
    # stated tolerance: float16 keeps 11 significant bits (relative error <= 2**-11 for normal values)
    np.testing.assert_allclose(got.maps(), want, rtol=2.0 ** -11, atol=1e-7)


def test_top_k_keeps_the_channels_with_the_largest_mean_in_descending_order(net, images):
    want = hooked_output(net, net.conv2, images)
    got = feature_maps(net, images, "conv2", top_k=5)["conv2"]
    assert got.codes.shape == (4, 5, 8, 8) and got.channels.shape == (4, 5)
    for sample in range(images.shape[0]):
        means = want[sample].mean(dim=(1, 2)).numpy()
        manual = sorted(range(len(means)), key=lambda c: -means[c])[:5]
        np.testing.assert_array_equal(got.channels[sample], manual)
        assert np.all(np.diff(got.means[sample]) <= 0)
        np.testing.assert_allclose(got.means[sample], means[manual], rtol=1e-6, atol=1e-6)
        for slot, channel in enumerate(manual):
            channel_map = want[sample, channel].numpy()
            assert got.low[sample, slot] == pytest.approx(channel_map.min(), abs=1e-6)
            assert got.high[sample, slot] == pytest.approx(channel_map.max(), abs=1e-6)
            step = (got.high[sample, slot] - got.low[sample, slot]) / 255.0
            assert np.abs(got.maps()[sample, slot] - channel_map).max() <= step / 2 + 1e-5


def test_top_k_above_the_channel_count_keeps_all_in_descending_order(net, images):
    got = feature_maps(net, images, "conv1", top_k=100)["conv1"]
    assert got.channels.shape == (4, 8)
    assert all(sorted(row) == list(range(8)) for row in got.channels.tolist())
    assert np.all(np.diff(got.means, axis=1) <= 0)
    with pytest.raises(ValueError, match="top_k"):
        feature_maps(net, images, "conv1", top_k=0)


def test_stored_size_matches_bytes_per_sample(net, images):
    for top_k in (None, 3):
        for encoding in ("uint8", "float16"):
            got = feature_maps(net, images, "conv2", top_k=top_k, encoding=encoding)["conv2"]
            assert got.bytes_per_sample == bytes_per_sample(12, 8, 8, top_k=top_k, encoding=encoding)
    assert bytes_per_sample(40, 28, 28) == 40 * (28 * 28 + CHANNEL_OVERHEAD)
    assert bytes_per_sample(40, 28, 28, top_k=16, encoding="float16") == 16 * (2 * 28 * 28 + CHANNEL_OVERHEAD)


def test_output_during_capture_equals_output_without(net, images):
    net.eval()
    with torch.no_grad():
        plain = net(images)
    output, maps = capture(net, images, ["conv1", "conv2", "relu2"], top_k=4)
    torch.testing.assert_close(output, plain, rtol=0, atol=0)
    assert set(maps) == {"conv1", "conv2", "relu2"}
    assert not output.requires_grad


def test_filters_equal_the_weights_and_rgb_display_has_the_right_shape(net):
    filters = conv_filters(net, ["conv1", "conv2"])
    first, second = filters["conv1"], filters["conv2"]
    np.testing.assert_array_equal(first.weights, net.conv1.weight.detach().numpy())
    np.testing.assert_array_equal(second.weights, net.conv2.weight.detach().numpy())
    assert first.weights.dtype == np.float32
    assert first.mode == "rgb" and first.display.shape == (8, 3, 3, 3)
    np.testing.assert_array_equal(first.display[2, :, :, 1], net.conv1.weight.detach()[2, 1].numpy())
    assert second.mode == "mean" and second.display.shape == (12, 3, 3)
    np.testing.assert_allclose(second.display, net.conv2.weight.detach().mean(dim=1).numpy(), rtol=0, atol=1e-7)
    assert first.low == pytest.approx(float(first.display.min()))
    assert first.high == pytest.approx(float(first.display.max()))
    scaled = first.scaled()
    assert scaled.min() == pytest.approx(0.0) and scaled.max() == pytest.approx(1.0)


def test_hooks_are_removed_and_modes_restored_after_success_and_failure(net, images):
    net.train()
    net.dropout.eval()  # a mixed state must come back exactly as it was
    flags = [m.training for m in net.modules()]
    feature_maps(net, images, ["conv1", "conv2"], top_k=2)
    assert all(not m._forward_hooks for m in net.modules())
    assert [m.training for m in net.modules()] == flags

    with pytest.raises(RuntimeError):
        feature_maps(net, torch.randn(2, 5, 16, 16), ["conv1", "conv2"])  # wrong channel count fails in the pass
    assert all(not m._forward_hooks for m in net.modules())
    assert [m.training for m in net.modules()] == flags

    with pytest.raises(ValueError, match="N x C x h x w"):
        feature_maps(net, images, ["conv1", "head"])  # the head's output is 2-d: the hook itself refuses it
    assert not net.conv1._forward_hooks and not net.head._forward_hooks
    assert [m.training for m in net.modules()] == flags


def test_wrong_names_and_non_conv_layers_are_refused(net, images):
    with pytest.raises(ValueError, match=r"close names: .*conv2"):
        feature_maps(net, images, ["conv1", "conv_2"])
    assert not net.conv1._forward_hooks
    with pytest.raises(ValueError, match="close names"):
        conv_filters(net, "conv3")
    with pytest.raises(ValueError, match="ReLU, not a Conv2d"):
        conv_filters(net, ["conv1", "relu1"])
    with pytest.raises(ValueError, match="encoding"):
        feature_maps(net, images, "conv1", encoding="int4")
