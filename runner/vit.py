"""A small Vision Transformer for the shapes demo, laid out as timm lays out a ViT, and a training loop that fits it
on a CPU in under a minute.

The layout matters more than the size: attention capture (:mod:`.internals.attention`) finds the fused attention
call through ``F.scaled_dot_product_attention`` and the patch grid through the strided ``patch_embed`` convolution,
and Grad-CAM needs a layer with N x C x h x w outputs, which a transformer lacks; the ``grid`` module (an identity
on the patch tokens laid out as an image, just before the last block) gives it one.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head self-attention as timm writes it: one ``qkv`` Linear, the fused kernel, a ``proj`` Linear."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of the {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        # looked up on F at call time, so a capture that replaces the function sees the call
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    """Linear, GELU, Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SmallViT(nn.Module):
    """Patch embedding (a Conv2d with stride = kernel = ``patch``), a class token, learned position embeddings,
    ``depth`` pre-norm blocks, a final LayerNorm, dropout and a linear ``head`` on the class token.

    Before the last block the patch tokens pass through ``grid`` (an ``nn.Identity``) as a B x dim x rows x columns
    map, Grad-CAM's layer (``gradcam_layer``). Attention is named ``blocks.<i>.attn``. Inputs are expected in [0, 1]
    (they are centred on 0.5 inside); the image size is fixed by the position embeddings.
    """

    gradcam_layer = "grid"

    def __init__(self, num_classes: int, image_size: int = 32, patch: int = 4, channels: int = 3, dim: int = 64,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.1) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.image_size, self.patch = image_size, patch
        self.grid_size = (image_size // patch, image_size // patch)
        self.patch_embed = nn.Conv2d(channels, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_size[0] * self.grid_size[1], dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.grid = nn.Identity()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        fan_in = self.patch_embed.in_channels * self.patch * self.patch
        nn.init.trunc_normal_(self.patch_embed.weight, std=math.sqrt(1.0 / fan_in))
        nn.init.zeros_(self.patch_embed.bias)

    def tokens(self, images: Tensor) -> Tensor:
        """The class token and the patch tokens with position embeddings, B x (1 + rows * columns) x dim."""
        x = self.patch_embed(images - 0.5).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed

    def forward(self, images: Tensor) -> Tensor:
        x = self.tokens(images)
        for block in self.blocks[:-1]:
            x = block(x)
        B, N, C = x.shape
        rows, columns = self.grid_size
        patches = self.grid(x[:, 1:].transpose(1, 2).reshape(B, C, rows, columns))
        x = torch.cat([x[:, :1], patches.flatten(2).transpose(1, 2)], dim=1)
        x = self.norm(self.blocks[-1](x))
        return self.head(self.head_drop(x[:, 0]))


def _decays(name: str, parameter: nn.Parameter) -> bool:
    return parameter.dim() > 1 and not name.endswith(("pos_embed", "cls_token"))


def train_vit(
    network: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    seed: int = 0,
    epochs: int = 12,
    loss: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    warmup: float = 0.1,
    flip: bool = True,
) -> nn.Module:
    """AdamW (weight decay on the weight matrices only) with a linear warmup over the first ``warmup`` fraction of
    the steps and a cosine decay to zero, over shuffled mini-batches; with ``flip`` each image is mirrored left-right
    with probability 1/2 (right for labels that survive a mirror, as shape forms do). ``loss`` defaults to BCE on
    logits (multi-label float targets). The shuffling, flips and dropout draw from generators seeded by ``seed`` (the
    global RNG is restored afterwards), so a seed and an initial network give the same weights (on the same device
    and thread count). Leaves the network in eval mode."""
    if epochs < 1 or len(inputs) == 0:
        raise ValueError("training needs at least one epoch and one input")
    loss = loss or F.binary_cross_entropy_with_logits
    named = list(network.named_parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in named if _decays(n, p)], "weight_decay": weight_decay},
         {"params": [p for n, p in named if not _decays(n, p)], "weight_decay": 0.0}], lr=lr)
    per_epoch = (len(inputs) + batch_size - 1) // batch_size
    total = epochs * per_epoch
    warm = max(1, int(round(warmup * total)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    generator = torch.Generator().manual_seed(seed)
    network.train()
    devices = [inputs.device.index or 0] if inputs.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for _ in range(epochs):
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(inputs), batch_size):
                index = order[start:start + batch_size]
                batch = inputs[index]
                if flip:
                    mirror = (torch.rand(len(index), generator=generator) < 0.5).to(batch.device)
                    batch = torch.where(mirror[:, None, None, None], batch.flip(-1), batch)
                optimizer.zero_grad(set_to_none=True)
                loss(network(batch), targets[index]).backward()
                optimizer.step()
                schedule.step()
    return network.eval()
