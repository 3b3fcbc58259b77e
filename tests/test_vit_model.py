"""The shapes demo's Vision Transformer: its layout is what attention capture and Grad-CAM rely on, and its
training is seeded."""

from __future__ import annotations


import pytest
import torch

from xaiboard.runner.explainers import GradCAM
from xaiboard.runner.internals.attention import capture_attention, patch_grid
from xaiboard.runner.vit import SmallViT, train_vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def network() -> SmallViT:
    """An untrained ViT whose qkv weights are large enough that each head attends sharply, unlike at init."""
    torch.manual_seed(0)
    model = SmallViT(num_classes=4)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight.normal_(0.0, 0.3)
    return model.eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def by_hand(network: SmallViT, images: torch.Tensor) -> list[torch.Tensor]:
    """softmax(q k^T / sqrt(head_dim)) per block and head, from each block's own qkv Linear and its input."""
    inputs: list[torch.Tensor] = []
    handles = [block.attn.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
               for block in network.blocks]
    try:
        network(images)
    finally:
        for handle in handles:
            handle.remove()
    result = []
    for block, x in zip(network.blocks, inputs, strict=True):
        attn = block.attn
        B, N, C = x.shape
        qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim)
        q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
        result.append(torch.softmax(q @ k.transpose(-2, -1) / attn.head_dim ** 0.5, dim=-1))
    return result


def test_outputs_one_logit_per_class_and_an_8x8_patch_grid(network: SmallViT, images: torch.Tensor) -> None:
    with torch.no_grad():
        assert network(images).shape == (3, 4)
    assert patch_grid(network, (32, 32)) == (8, 8)
    assert patch_grid(network, (32, 32), tokens=65) == (8, 8)
    assert patch_grid(SmallViT(2, image_size=48, patch=8), (48, 48)) == (6, 6)


def test_captured_attention_is_softmax_of_q_k_for_every_head(network: SmallViT, images: torch.Tensor) -> None:
    with torch.no_grad(), capture_attention(network) as record:
        network(images)
    assert record.names == [f"blocks.{i}.attn" for i in range(4)]
    assert {capture.kind for capture in record} == {"sdpa"}
    for got, want in zip(record.weights, by_hand(network, images), strict=True):
        assert got.shape == (3, 4, 65, 65)
        assert float(want.amax()) > 0.2  # sharp attention: a wrong head or scale would not match
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


def test_capturing_leaves_the_logits_unchanged(network: SmallViT, images: torch.Tensor) -> None:
    with torch.no_grad():
        plain = network(images)
        with capture_attention(network) as record:
            captured = network(images)
    assert len(record) == 4
    assert torch.allclose(captured, plain, atol=1e-6, rtol=0)


def test_gradcam_on_the_grid_layer_gives_a_finite_map_of_the_image_size(network: SmallViT,
                                                                       images: torch.Tensor) -> None:
    targets = torch.tensor([0, 2, 3])
    maps = GradCAM(network, SmallViT.gradcam_layer).explain(images, targets)
    assert maps.shape == (3, 32, 32) and torch.isfinite(maps).all()
    signed = GradCAM(network, SmallViT.gradcam_layer, relu=False).explain(images, targets)
    assert torch.isfinite(signed).all() and float(signed.abs().amax()) > 0  # the grid lies on the gradient's path


def test_training_is_deterministic_for_a_seed_and_leaves_global_state_alone() -> None:
    generator = torch.Generator().manual_seed(2)
    inputs = torch.rand(24, 3, 16, 16, generator=generator)
    targets = (torch.rand(24, 3, generator=generator) < 0.4).float()
    models = [SmallViT(3, image_size=16, patch=4, dim=16, depth=2, heads=2) for _ in range(3)]
    initial = {name: value.clone() for name, value in models[0].state_dict().items()}
    for model in models[1:]:
        model.load_state_dict(initial)
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    for model, seed in zip(models, (0, 0, 1)):
        assert train_vit(model, inputs, targets, seed=seed, epochs=2, batch_size=8) is model and not model.training
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), rng)
    first, again, other = (model.state_dict() for model in models)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert any(not torch.equal(first[name], other[name]) for name in first)
    assert any(not torch.equal(first[name], initial[name]) for name in first)
