"""Vision Transformer attention: capture without model edits, intervention, attention rollout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vit_blocks import TinyViT, attention_names, reference_attention
from xaiboard.runner.cost import Passes
from xaiboard.runner.explainers import AttentionRollout
from xaiboard.runner.explainers.attention_rollout import attention_rollout, rollout_map
from xaiboard.runner.internals.attention import capture_attention, patch_attention_map, patch_grid, scale_attention

KINDS = ["fused", "mha", "explicit"]


def make(kind: str, seed: int = 0, **kwargs) -> TinyViT:
    torch.manual_seed(seed)
    return TinyViT(kind, **kwargs).eval()


def images(n: int = 2, height: int = 32, width: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


def entropy(weights: torch.Tensor) -> float:
    return float(-(weights * weights.clamp_min(1e-30).log()).sum(-1).mean())


def unpatched() -> bool:
    import xaiboard.runner.internals.attention as module
    return (F.scaled_dot_product_attention is module._ORIGINAL_SDPA and F.softmax is module._ORIGINAL_F_SOFTMAX
            and torch.softmax is module._ORIGINAL_TORCH_SOFTMAX and "softmax" not in torch.Tensor.__dict__
            and not module._STACK and not module._SESSIONS)


def hooks_of(model: nn.Module) -> list[tuple]:
    """Every hook and patched forward on the model, to check that capture leaves none of its own behind."""
    return [(name, tuple(m._forward_hooks), tuple(m._forward_pre_hooks), m.__dict__.get("forward"))
            for name, m in model.named_modules()]


def no_hooks(model: nn.Module) -> bool:
    return all(not hooks and not pre and forward is None for _, hooks, pre, forward in hooks_of(model))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("class_token", [True, False])
def test_captured_attention_equals_softmax_qk(kind: str, class_token: bool) -> None:
    model, x = make(kind, class_token=class_token), images()
    with torch.no_grad():
        plain = model(x)
        with capture_attention(model) as record:
            captured_output = model(x)
    assert torch.allclose(captured_output, plain, atol=1e-6)
    assert record.names == attention_names(model)
    assert {c.kind for c in record} == {{"fused": "sdpa", "mha": "mha", "explicit": "softmax"}[kind]}
    tokens = 16 + int(class_token)
    for got, want in zip(record.weights, reference_attention(model, x), strict=True):
        assert got.shape == (2, 4, tokens, tokens)
        assert torch.allclose(got, want, atol=1e-5)
        assert torch.allclose(got.sum(-1), torch.ones(2, 4, tokens), atol=1e-5)
    assert unpatched() and no_hooks(model)


def test_mha_returns_what_the_caller_asked_for() -> None:
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    holder = nn.Sequential(mha)
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        want_out, want_w = mha(x, x, x)
        with capture_attention(holder) as record:
            out, weights = mha(x, x, x)
            _, none = mha(x, x, x, need_weights=False)
            _, per_head = mha(x, x, x, average_attn_weights=False)
    assert torch.allclose(out, want_out, atol=1e-6) and torch.allclose(weights, want_w, atol=1e-6)
    assert none is None and per_head.shape == (3, 2, 5, 5) and len(record) == 3
    assert torch.allclose(record[0].weights.mean(1), want_w, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_stays_patched_after_an_exception(kind: str) -> None:
    model = make(kind)
    with pytest.raises(RuntimeError, match="boom"):
        with capture_attention(model), scale_attention(model, 2.0):
            model(images())
            raise RuntimeError("boom")
    assert unpatched() and no_hooks(model)
    with pytest.raises(RuntimeError):  # an error inside the model's forward
        with capture_attention(model):
            model(torch.randn(1, 3, 40, 40))  # wrong token count for the position embedding
    assert unpatched() and no_hooks(model)


def test_nested_contexts_and_plain_calls_outside() -> None:
    model, x = make("fused"), images()
    with capture_attention(model) as outer:
        with capture_attention(model) as inner:
            model(x)
        model(x)
        F.scaled_dot_product_attention(*torch.randn(3, 1, 2, 5, 4))  # not inside the model: not recorded
    assert len(inner) == 2 and len(outer) == 4 and unpatched()


@pytest.mark.parametrize("kind", KINDS)
def test_intervention_factor_one_changes_nothing_and_sharpens_above_one(kind: str) -> None:
    model, x = make(kind), images()
    names = attention_names(model)
    with torch.no_grad():
        plain = model(x)
        with scale_attention(model, 1.0):
            assert torch.equal(model(x), plain)
        with capture_attention(model) as base, scale_attention(model, 1.0, layers=names[:1]):
            model(x)
        with scale_attention(model, 3.0, layers=[names[0]]), capture_attention(model) as sharp:
            model(x)
        with capture_attention(model) as flat, scale_attention(model, 0.3, layers=names[0]):
            model(x)
        with capture_attention(model) as uniform, scale_attention(model, 0.0):
            changed = model(x)
    assert not torch.allclose(changed, plain, atol=1e-4)
    assert entropy(sharp[0].weights) < entropy(base[0].weights) < entropy(flat[0].weights)
    with torch.no_grad(), capture_attention(model) as later, scale_attention(model, 3.0, layers=names[1]):
        model(x)
    assert torch.equal(later[0].weights, base[0].weights)  # only the chosen layer is scaled
    assert entropy(later[1].weights) < entropy(base[1].weights)
    for capture in uniform:
        assert torch.allclose(capture.weights, torch.full_like(capture.weights, 1 / 17), atol=1e-6)
    assert unpatched() and no_hooks(model)


def test_intervention_scales_the_scores_exactly() -> None:
    model, x = make("fused"), images()
    with torch.no_grad(), capture_attention(model) as base:
        model(x)
    with torch.no_grad(), capture_attention(model) as scaled, scale_attention(model, 2.0, layers="blocks.0"):
        model(x)
    want = torch.softmax(2.0 * base[0].weights.log(), dim=-1)  # softmax(2s) from softmax(s)
    assert torch.allclose(scaled[0].weights, want, atol=1e-5)
    with pytest.raises(ValueError, match="does not exist"):
        with scale_attention(model, 2.0, layers="blocks.9"):
            pass


def test_patch_grid_is_derived_for_non_square_inputs() -> None:
    model, x = make("explicit", grid=(4, 6)), images(1, 32, 48)
    assert patch_grid(model, (32, 48)) == (4, 6)
    assert patch_grid(nn.Identity(), (32, 48), tokens=25) == (4, 6)  # class token + 24 patches
    assert patch_grid(nn.Identity(), (48, 32), tokens=24) == (6, 4)
    with torch.no_grad(), capture_attention(model) as record:
        model(x)
    assert record[0].weights.shape[-1] == 25
    per_head = patch_attention_map(record[0].weights, (4, 6))
    assert per_head.shape == (1, 4, 4, 6)
    assert torch.allclose(per_head.flatten(2), record[0].weights[:, :, 0, 1:])
    maps = AttentionRollout(model).explain_with_delta(x, torch.tensor([0]), native=True)[0]
    assert maps.shape == (1, 4, 6)


def test_rollout_of_identity_and_uniform_attention_is_uniform() -> None:
    eye = torch.eye(16).expand(2, 3, 16, 16)
    no_class = rollout_map(attention_rollout([eye, eye]), (4, 4))
    assert torch.allclose(no_class, torch.full((2, 4, 4), 1 / 16))
    uniform = torch.full((2, 3, 17, 17), 1 / 17)
    with_class = rollout_map(attention_rollout([uniform, uniform, uniform]), (4, 4))
    assert torch.allclose(with_class, with_class[:, :1, :1].expand_as(with_class))
    assert float(with_class.min()) > 0


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
def test_rollout_concentrates_on_the_attended_patch(head_fusion: str) -> None:
    target = 1 + 6  # token index of patch (1, 2) on a 4 x 4 grid after the class token
    one = torch.zeros(1, 2, 17, 17)
    one[..., target] = 1.0  # every query attends only to that patch
    joint = attention_rollout([one, one], head_fusion=head_fusion)
    assert torch.allclose(joint.sum(-1), torch.ones(1, 17))
    grid_map = rollout_map(joint, (4, 4))[0]
    assert grid_map[1, 2] > 0.5 and float(grid_map.sum() - grid_map[1, 2]) == 0.0
    assert rollout_map(attention_rollout([one], residual=False), (4, 4))[0, 1, 2] == 1.0


def test_discard_ratio_and_head_fusion() -> None:
    torch.manual_seed(0)
    weights = torch.rand(1, 3, 17, 17).softmax(-1)
    kept = attention_rollout([weights], discard_ratio=0.5, residual=False)
    assert (kept == 0).sum() >= (17 * 17) // 2 - 17 and (kept.diagonal(dim1=1, dim2=2) > 0).all()
    assert not torch.allclose(attention_rollout([weights], head_fusion="max"),
                              attention_rollout([weights], head_fusion="min"))
    with pytest.raises(ValueError):
        AttentionRollout(nn.Linear(1, 1), head_fusion="median")


@pytest.mark.parametrize("kind", KINDS)
def test_rollout_of_a_model_with_zeroed_queries_is_uniform(kind: str) -> None:
    model = make(kind)
    with torch.no_grad():
        for block in model.blocks:
            attn = block.self_attention if kind == "mha" else block.attn
            weight = attn.in_proj_weight if kind == "mha" else attn.qkv.weight
            bias = attn.in_proj_bias if kind == "mha" else attn.qkv.bias
            weight[:32].zero_()
            bias[:32].zero_()  # q = 0: every score 0, uniform attention
    maps = AttentionRollout(model).explain_with_delta(images(), torch.tensor([0, 1]), native=True)[0]
    assert torch.allclose(maps, maps[:, :1, :1].expand_as(maps), atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("class_token", [True, False])
def test_attention_rollout_explainer(kind: str, class_token: bool) -> None:
    model, x = make(kind, class_token=class_token), images(3)
    explainer = AttentionRollout(model, head_fusion="max", discard_ratio=0.1)
    targets = torch.tensor([0, 1, 2])
    full = explainer.explain(x, targets)
    native, delta = explainer.explain_with_delta(x, targets, native=True)
    assert full.shape == (3, 32, 32) and native.shape == (3, 4, 4) and delta is None
    from xaiboard.runner.explainers import to_input_size
    assert torch.allclose(to_input_size(native, (32, 32)), full)
    assert torch.equal(explainer.explain(x, torch.tensor([4, 4, 4])), full)  # class-agnostic
    with torch.no_grad(), capture_attention(model) as record:
        model(x)
    want = rollout_map(attention_rollout(record.weights, head_fusion="max", discard_ratio=0.1), (4, 4))
    assert torch.allclose(native, want, atol=1e-6)
    assert explainer.passes((3, 32, 32)) == Passes(1, 0)
    twin = explainer.with_network(make(kind, seed=5, class_token=class_token))
    assert twin.config()["head_fusion"] == "max" and not torch.allclose(twin.explain(x, targets), full)
    assert unpatched() and no_hooks(model)


def test_attention_rollout_layers_and_check() -> None:
    model, x = make("fused"), images(1)
    last = AttentionRollout(model, layers=["blocks.1"]).explain_with_delta(x, torch.tensor([0]), native=True)[0]
    with torch.no_grad(), capture_attention(model) as record:
        model(x)
    assert torch.allclose(last, rollout_map(attention_rollout(record.weights[1:]), (4, 4)), atol=1e-6)
    with pytest.raises(ValueError, match="no attention"):
        AttentionRollout(nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.Flatten())).check(x)


def test_hf_vit_attention_matches_output_attentions() -> None:
    """HF ViT returns attentions only from its eager implementation; capture must match them on the default one too."""
    transformers = pytest.importorskip("transformers")
    config = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=64, num_labels=3)
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(**config)).eval()
    eager = transformers.ViTForImageClassification(
        transformers.ViTConfig(**config, attn_implementation="eager")).eval()
    eager.load_state_dict(model.state_dict())
    x = images()
    with torch.no_grad():
        want = eager(pixel_values=x, output_attentions=True).attentions
        for subject in (model, eager):
            before = hooks_of(subject)  # transformers keeps its own output-recording hooks after output_attentions
            with capture_attention(subject) as record:
                subject(pixel_values=x)
            assert len(record) == len(want) == 2
            for got, reference in zip(record.weights, want):
                assert torch.allclose(got, reference, atol=1e-5)
            assert unpatched() and hooks_of(subject) == before
    assert patch_grid(model, (32, 32)) == (4, 4)
