"""register_internals end to end: what the runner stores of a CNN's and a ViT's insides equals what the layers
computed, the intervention with factor 1 changes nothing, and a resumed run neither doubles nor loses anything."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nets import TinyNet
from vit_blocks import TinyViT, attention_names, reference_attention
from xaiboard.runner import ImageClassificationRunner
from xaiboard.runner.data import InvalidInputError
from xaiboard.runner.internals.attention import patch_attention_map
from xaiboard.store import Summary

CLASSES = ["a", "b", "c", "d", "e"]


def images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def items_of(inputs: torch.Tensor) -> list[dict]:
    return [{"image": image, "labels": [i % 4]} for i, image in enumerate(inputs)]


def layer_outputs(net: torch.nn.Module, inputs: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """The layers' outputs by a plain forward hook: the reference the stored maps must equal."""
    outputs, handles = {}, []
    modules = dict(net.named_modules())
    for name in names:
        handles.append(modules[name].register_forward_hook(
            lambda _m, _a, out, name=name: outputs.__setitem__(name, out.detach().clone())))
    with torch.no_grad():
        net(inputs)
    for handle in handles:
        handle.remove()
    return outputs


@pytest.fixture
def cnn() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(classes=4).eval()


@pytest.fixture
def vit() -> TinyViT:
    torch.manual_seed(1)
    return TinyViT("fused", classes=5, patch=8, grid=(4, 4)).eval()


def test_feature_maps_and_filters_equal_the_layers(tmp_path, cnn):
    inputs = images(6, 16)
    runner = ImageClassificationRunner(tmp_path / "cnn", cnn, items_of(inputs), CLASSES[:4], device="cpu",
                                       batch_size=4)
    runner.register_internals(layers=["features.conv1", "features.relu2"])
    summary = runner.run(progress=False)
    reference = layer_outputs(cnn, inputs, ["features.conv1", "features.relu2"])
    layers = {layer.name: layer for layer in summary.internal_layers()}
    assert [(l.kind, l.channels, l.height, l.width) for l in layers.values()] == [("features", 6, 16, 16),
                                                                                   ("features", 8, 8, 8)]
    for sample_id in range(6):
        for name, expected in reference.items():
            stored = summary.feature_maps(sample_id, name)
            values = expected[sample_id].numpy()
            span = values.max(axis=(1, 2)) - values.min(axis=(1, 2))
            assert stored.channels.tolist() == list(range(values.shape[0]))
            error = np.abs(stored.maps - values).max(axis=(1, 2))
            assert (error <= span / 510 + 1e-6).all(), "uint8 codes are within half a step of the layer's output"
            assert stored.means == pytest.approx(values.mean(axis=(1, 2)), abs=1e-5)
    filters = summary.filters("features.conv1")
    assert filters.mode == "rgb" and filters.display.shape == (6, 3, 3, 3)
    weights = cnn.features.conv1.weight.detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(filters.display, weights, rtol=1e-3, atol=1e-4)  # float16
    assert summary.filters("features.relu2") is None, "only a Conv2d has filters"
    assert summary.counts()["num_feature_maps"] == 12 and summary.intervention(0) is None
    summary.close()


def test_top_k_keeps_the_most_active_channels(tmp_path, cnn):
    inputs = images(3, 16, seed=2)
    runner = ImageClassificationRunner(tmp_path / "top", cnn, items_of(inputs), CLASSES[:4], device="cpu")
    runner.register_internals(layers=["features.conv2"], top_k=3, encoding="float16")
    with runner.run(progress=False) as summary:
        expected = layer_outputs(cnn, inputs, ["features.conv2"])["features.conv2"]
        for sample_id in range(3):
            stored = summary.feature_maps(sample_id, "features.conv2")
            top = torch.sort(expected[sample_id].mean(dim=(1, 2)), descending=True, stable=True).indices[:3]
            assert stored.channels.tolist() == top.tolist() and stored.total_channels == 8
            np.testing.assert_allclose(stored.maps, expected[sample_id][top].numpy(), rtol=1e-3, atol=1e-3)


def test_attention_per_head_and_intervention(tmp_path, vit):
    inputs = images(5, 32, seed=3)
    runner = ImageClassificationRunner(tmp_path / "vit", vit, items_of(inputs), CLASSES, device="cpu", batch_size=2)
    runner.register_internals(layers=["patch_embed"], attention=True, scale=3.0, scale_layers=["blocks.1"])
    with runner.run(progress=False) as summary:
        layers = summary.internal_layers()
        assert [(l.name, l.kind, l.channels, l.height, l.width, l.tokens) for l in layers] == [
            ("patch_embed", "features", 32, 4, 4, None)] + [
            (name, "attention", 4, 4, 4, 17) for name in attention_names(vit)]
        assert summary.filters("patch_embed").display.shape == (32, 8, 8, 3)
        reference = reference_attention(vit, inputs)
        for sample_id in range(5):
            stored = summary.attention_maps(sample_id)
            assert list(stored) == attention_names(vit)
            for name, weights in zip(attention_names(vit), reference):
                expected = patch_attention_map(weights[sample_id:sample_id + 1], (4, 4))[0].numpy()
                np.testing.assert_allclose(stored[name], expected, rtol=2e-3, atol=1e-4)  # float16
            plain = summary.probabilities(sample_id).probs
            with torch.no_grad():
                sharpened = vit_scaled(vit, inputs[sample_id:sample_id + 1], factor=3.0, block=1)
            np.testing.assert_allclose(summary.intervention(sample_id), sharpened, atol=1e-5)
            assert not np.allclose(summary.intervention(sample_id), plain, atol=1e-4), "factor 3 changes something"


def vit_scaled(vit: TinyViT, image: torch.Tensor, factor: float, block: int) -> np.ndarray:
    """The fused TinyViT's softmax output with block ``block``'s scores times ``factor``, computed by hand."""
    x = vit.tokens(image)
    for index, layer in enumerate(vit.blocks):
        attn, y = layer.attn, layer.norm1(x)
        B, N, C = y.shape
        q, k, v = attn.qkv(y).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        scale = attn.head_dim ** -0.5 * (factor if index == block else 1.0)
        out = F.softmax(q @ k.transpose(-2, -1) * scale, dim=-1) @ v
        x = x + attn.proj(out.transpose(1, 2).reshape(B, N, C))
        x = x + layer.mlp(layer.norm2(x))
    return vit.head(vit.norm(x)[:, 0]).softmax(1)[0].numpy()


def test_factor_one_changes_nothing(tmp_path, vit):
    inputs = images(4, 32, seed=4)
    runner = ImageClassificationRunner(tmp_path / "one", vit, items_of(inputs), CLASSES, device="cpu")
    runner.register_internals(scale=1.0)
    with runner.run(progress=False) as summary:
        for sample_id in range(4):
            np.testing.assert_array_equal(summary.intervention(sample_id), summary.probabilities(sample_id).probs)
        assert summary.counts()["num_attention_maps"] == 0 and summary.internal_layers() == []


def test_resume_keeps_layers_and_maps_once(tmp_path, cnn):
    inputs = images(8, 16, seed=5)
    directory = tmp_path / "resume"

    def runner(count: int) -> ImageClassificationRunner:
        made = ImageClassificationRunner(directory, cnn, items_of(inputs[:count]), CLASSES[:4], device="cpu",
                                         batch_size=2)
        made.register_internals(layers=["features.conv1"], top_k=2)
        return made

    runner(8).run(progress=False).close()
    with Summary.open(directory) as summary:
        before = summary.counts()
    with runner(8).run(progress=False) as summary:
        assert summary.counts() == before
        assert before["num_internal_layers"] == 1 and before["num_feature_maps"] == 8


def test_bad_internals_are_refused_before_the_run(tmp_path, cnn, vit):
    with pytest.raises(InvalidInputError, match="closest|no layer|not found|features.conv9"):
        ImageClassificationRunner(tmp_path / "a", cnn, items_of(images(2, 16)), CLASSES[:4]).register_internals(
            layers=["features.conv9"])
    runner = ImageClassificationRunner(tmp_path / "b", cnn, items_of(images(2, 16)), CLASSES[:4], device="cpu")
    runner.register_internals(attention=True)
    with pytest.raises(InvalidInputError, match="no attention was seen"):
        runner.run(progress=False)
    runner = ImageClassificationRunner(tmp_path / "c", vit, items_of(images(2, 32)), CLASSES, device="cpu")
    runner.register_internals(layers=["head"])
    with pytest.raises(InvalidInputError, match="N x C x h x w"):
        runner.run(progress=False)
    with pytest.raises(InvalidInputError, match="top_k"):
        runner.register_internals(layers=["patch_embed"], top_k=0)
    assert not (tmp_path / "b" / "xaiboard.db").exists(), "nothing is written for a refused configuration"
