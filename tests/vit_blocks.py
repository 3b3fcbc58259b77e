"""Tiny Vision Transformers with attention written three ways (fused SDPA, nn.MultiheadAttention, explicit softmax),
as timm, torchvision and non-fused timm-like code write them: seconds on a CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FusedAttention(nn.Module):
    """timm-style: one qkv Linear, (B, N, 3, heads, head_dim) reshape, fused scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class ExplicitAttention(nn.Module):
    """timm-style without the fused kernel: the attention matrix is a tensor, softmax then attn_drop."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = attn @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TimmBlock(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, attention: type[nn.Module]) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TorchvisionBlock(nn.Module):
    """torchvision's EncoderBlock: ln_1, self_attention (nn.MultiheadAttention), ln_2, mlp."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2, self.mlp = nn.LayerNorm(dim), Mlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class TinyViT(nn.Module):
    """Patch embedding (Conv2d, stride = patch), optional class token, position embedding, 2 blocks, head.

    ``kind``: "fused", "explicit" (timm-style attention) or "mha" (torchvision-style encoder block). Without a
    class token the head reads the mean of the tokens. ``grid`` is the position embedding's patch grid.
    """

    def __init__(self, kind: str = "fused", *, dim: int = 32, heads: int = 4, depth: int = 2, patch: int = 8,
                 grid: tuple[int, int] = (4, 4), classes: int = 5, class_token: bool = True) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02) if class_token else None
        self.pos_embed = nn.Parameter(torch.randn(1, grid[0] * grid[1] + int(class_token), dim) * 0.5)
        if kind == "mha":
            blocks = [TorchvisionBlock(dim, heads) for _ in range(depth)]
        else:
            attention = {"fused": FusedAttention, "explicit": ExplicitAttention}[kind]
            blocks = [TimmBlock(dim, heads, attention) for _ in range(depth)]
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.blocks(self.tokens(images)))
        return self.head(x[:, 0] if self.cls_token is not None else x.mean(dim=1))


def attention_names(model: TinyViT) -> list[str]:
    """The dotted names of the attention modules, first block to last."""
    attr = "self_attention" if isinstance(model.blocks[0], TorchvisionBlock) else "attn"
    return [f"blocks.{i}.{attr}" for i in range(len(model.blocks))]


def reference_attention(model: TinyViT, images: torch.Tensor) -> list[torch.Tensor]:
    """softmax(Q K^T / sqrt(d)) of every block computed from the modules' own weights, B x heads x N x N each."""
    result = []
    with torch.no_grad():
        x = model.tokens(images)
        for block in model.blocks:
            if isinstance(block, TorchvisionBlock):
                attn, y = block.self_attention, block.ln_1(x)
                heads, dim = attn.num_heads, attn.embed_dim
                q, k = F.linear(y, attn.in_proj_weight[:dim], attn.in_proj_bias[:dim]), \
                    F.linear(y, attn.in_proj_weight[dim:2 * dim], attn.in_proj_bias[dim:2 * dim])
            else:
                attn, y = block.attn, block.norm1(x)
                heads, dim = attn.num_heads, y.shape[-1]
                q, k = F.linear(y, attn.qkv.weight[:dim], attn.qkv.bias[:dim]), \
                    F.linear(y, attn.qkv.weight[dim:2 * dim], attn.qkv.bias[dim:2 * dim])
            B, N, _ = y.shape
            q = q.reshape(B, N, heads, dim // heads).transpose(1, 2)
            k = k.reshape(B, N, heads, dim // heads).transpose(1, 2)
            scores = q @ k.transpose(-2, -1) / (dim // heads) ** 0.5
            result.append(torch.exp(scores - scores.amax(-1, keepdim=True)) /
                          torch.exp(scores - scores.amax(-1, keepdim=True)).sum(-1, keepdim=True))
            x = block(x)
    return result
