"""A small causal Transformer encoder (post-norm, GELU), written for speed on short sequences.

It computes the same function as ``nn.TransformerEncoder`` with a causal mask, but calls
``scaled_dot_product_attention`` directly, which trains about twice as fast on CPU here, and drops
out with :class:`memrec.nn.dropout.Dropout`, whose random draws cost a third of ``nn.Dropout``'s.
Without gradients, on the CPU, each linear layer runs as one oneDNN call with its bias, GELU or
residual sum fused (:func:`linear`), which saves a third of the evaluation time.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from memrec.nn.dropout import Dropout, dropout_mask


def _fused_linear_op():
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):  # a torch build without oneDNN's fused linear
        return None


FUSED_LINEAR = _fused_linear_op()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gelu: bool = False,
           residual: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, then exact GELU or ``+ residual`` if asked: (..., d_in) -> (..., d_out).

    Inference (no gradients, float32 on the CPU) fuses the bias and the GELU or the sum into the
    matrix product; training runs the same function in separate autograd ops.

    Example:
        >>> layer = nn.Linear(4, 3)
        >>> x = torch.randn(2, 4)
        >>> with torch.no_grad():
        ...     torch.allclose(linear(x, layer.weight, layer.bias, gelu=True), F.gelu(layer(x)), atol=1e-6)
        True
    """
    fused = FUSED_LINEAR is not None and not torch.is_grad_enabled() and x.dtype == torch.float32 and x.device.type == "cpu"
    if fused and residual is not None:
        return FUSED_LINEAR.binary(x, residual, weight, bias, "add")
    if fused:
        return FUSED_LINEAR(x, weight, bias, "gelu" if gelu else "none", [], "none" if gelu else "")
    y = F.linear(x, weight, bias)
    if gelu:
        y = F.gelu(y)
    return y if residual is None else residual + y


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float, real: torch.Tensor | None = None) -> torch.Tensor:
    """Causal attention (B, h, L, d/h) x 3 -> (B, h, L, d/h), with dropout on the attention weights.
    ``real`` (B, L), for left-padded rows: keys where it is False are hidden from every other query."""
    if dropout == 0.0 and real is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    length = q.size(2)
    future = torch.ones(length, length, dtype=torch.bool).triu_(1)  # (L, L): True above the diagonal
    hidden = future if real is None else future | ~(real[:, None, None, :] | torch.eye(length, dtype=torch.bool))  # (L, L) or (B, 1, L, L)
    if dropout == 0.0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=~hidden)
    weights = (q @ k.transpose(-2, -1)).mul_(q.size(-1) ** -0.5).masked_fill_(hidden, float("-inf")).softmax(-1)  # (B, h, L, L)
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
        return linear(self.mix(x), self.out.weight, self.out.bias)

    def forward_at(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:  # (B, L, d), (B,) -> (B, d)
        return linear(self.mix_at(x, last), self.out.weight, self.out.bias)

    def mix(self, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """Attention-weighted values of every position, before the output projection: (B, L, d) -> (B, L, d).
        ``real`` (B, L): which positions hold items, for left-padded rows (see :func:`causal_attention`)."""
        b, length, d = x.shape
        q, k, v = linear(x, self.qkv.weight, self.qkv.bias).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, h, L, d/h)
        y = causal_attention(q, k, v, self.dropout if self.training else 0.0, real)
        return y.transpose(1, 2).reshape(b, length, d)

    def mix_at(self, x: torch.Tensor, last: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`mix` for one query position per row: x (B, L, d), last (B,) -> (B, d); ``real`` (B, L)
        as in :meth:`mix` (padding keys of left-padded rows hidden)."""
        b, length, d = x.shape
        h = self.heads
        query = x[torch.arange(b), last]  # (B, d)
        q = linear(query, self.qkv.weight[:d], self.qkv.bias[:d]).view(b, h, 1, d // h)
        k, v = linear(x, self.qkv.weight[d:], self.qkv.bias[d:]).view(b, length, 2, h, d // h).permute(2, 0, 3, 1, 4)
        visible = torch.arange(length) <= last[:, None]  # (B, L): keys 0..last
        if real is not None:
            visible = visible & (real | (torch.arange(length) == last[:, None]))  # a query always sees itself, as in mix
        visible = visible[:, None, None, :]  # (B, 1, 1, L)
        if self.training and self.dropout > 0:  # training on one position per row (train_windows: prefixes)
            weights = (q @ k.transpose(-2, -1)).mul_(q.size(-1) ** -0.5).masked_fill_(~visible, float("-inf")).softmax(-1)  # (B, h, 1, L)
            return ((weights * dropout_mask(weights.shape, self.dropout)) @ v).reshape(b, d)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=visible).reshape(b, d)  # (B, h, 1, d/h) -> (B, d)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, inner: int, dropout: float, inner_dropout: float | None = None):
        super().__init__()
        self.attn = CausalSelfAttention(d, heads, dropout)
        self.norm1 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, inner), nn.GELU(), Dropout(dropout if inner_dropout is None else inner_dropout), nn.Linear(inner, d))
        self.norm2 = nn.LayerNorm(d)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, L, d)
        x = self.norm1(self._add(x, self.attn.out, self.attn.mix(x)))
        return self.norm2(self._add(x, self.ff[3], self._inner(x)))

    def forward_at(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:  # (B, L, d), (B,) -> (B, d)
        y = self.norm1(self._add(x[torch.arange(len(last)), last], self.attn.out, self.attn.mix_at(x, last)))
        return self.norm2(self._add(y, self.ff[3], self._inner(y)))

    def _inner(self, x: torch.Tensor) -> torch.Tensor:  # (..., d) -> (..., inner): the feed-forward's hidden layer
        return self.ff[2](linear(x, self.ff[0].weight, self.ff[0].bias, gelu=True))

    def _add(self, x: torch.Tensor, layer: nn.Linear, y: torch.Tensor) -> torch.Tensor:
        """The residual sum ``x + dropout(layer(y))``, one fused call when nothing is dropped."""
        if self.dropout.training and self.dropout.p > 0:
            return x + self.dropout(layer(y))
        return linear(y, layer.weight, layer.bias, residual=x)


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

    def __init__(self, d: int, heads: int, inner: int, layers: int, dropout: float, inner_dropout: float | None = None):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d, heads, inner, dropout, inner_dropout) for _ in range(layers))

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
