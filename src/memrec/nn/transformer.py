"""A small causal Transformer encoder (post-norm, GELU), written for speed on short sequences.

It computes the same function as ``nn.TransformerEncoder`` with a causal mask, but calls
``scaled_dot_product_attention`` directly, which trains about twice as fast on CPU here, and drops
out with :class:`memrec.nn.dropout.Dropout`, whose random draws cost a third of ``nn.Dropout``'s.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from memrec.nn.dropout import Dropout, dropout_mask


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float) -> torch.Tensor:
    """Causal attention (B, h, L, d/h) x 3 -> (B, h, L, d/h), with dropout on the attention weights."""
    if dropout == 0.0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    length = q.size(2)
    future = torch.ones(length, length, dtype=torch.bool).triu_(1)  # (L, L): True above the diagonal
    weights = (q @ k.transpose(-2, -1)).mul_(q.size(-1) ** -0.5).masked_fill_(future, float("-inf")).softmax(-1)  # (B, h, L, L)
    return (weights * dropout_mask(weights.shape, dropout)) @ v


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"hidden size {d} must be divisible by the number of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, L, d)
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, h, L, d/h)
        y = causal_attention(q, k, v, self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, length, d))

    def forward_at(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Attention output for one query position per row: x (B, L, d), last (B,) -> (B, d)."""
        b, length, d = x.shape
        h = self.heads
        query = x[torch.arange(b), last]  # (B, d)
        q = F.linear(query, self.qkv.weight[:d], self.qkv.bias[:d]).view(b, h, 1, d // h)
        k, v = F.linear(x, self.qkv.weight[d:], self.qkv.bias[d:]).view(b, length, 2, h, d // h).permute(2, 0, 3, 1, 4)
        visible = (torch.arange(length) <= last[:, None])[:, None, None, :]  # (B, 1, 1, L): keys 0..last
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible)  # (B, h, 1, d/h)
        return self.out(y.reshape(b, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, inner: int, dropout: float):
        super().__init__()
        self.attn = CausalSelfAttention(d, heads, dropout)
        self.norm1 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, inner), nn.GELU(), Dropout(dropout), nn.Linear(inner, d))
        self.norm2 = nn.LayerNorm(d)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attn(x)))
        return self.norm2(x + self.dropout(self.ff(x)))

    def forward_at(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:  # (B, L, d), (B,) -> (B, d)
        y = self.norm1(x[torch.arange(len(last)), last] + self.dropout(self.attn.forward_at(x, last)))
        return self.norm2(y + self.dropout(self.ff(y)))


class CausalTransformer(nn.Module):
    """Stack of causal self-attention blocks: position t attends to positions 0..t only.

    Example:
        >>> import torch
        >>> net = CausalTransformer(d=16, heads=2, inner=32, layers=1, dropout=0.0).eval()
        >>> x = torch.randn(1, 4, 16)
        >>> torch.allclose(net(x)[:, :2], net(x[:, :2]), atol=1e-5)  # the future does not leak back
        True
        >>> torch.allclose(net.forward_at(x, torch.tensor([1])), net(x)[:, 1], atol=1e-5)
        True
    """

    def __init__(self, d: int, heads: int, inner: int, layers: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d, heads, inner, dropout) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, L, d)
        for block in self.blocks:
            x = block(x)
        return x

    def forward_at(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Output at one position per row only, (B, L, d), (B,) -> (B, d): the last block skips the
        queries, output projection and feed-forward work of every other position."""
        for block in self.blocks[:-1]:
            x = block(x)
        return self.blocks[-1].forward_at(x, last)
