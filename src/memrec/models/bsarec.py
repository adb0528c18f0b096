"""BSARec (Shin et al., AAAI 2024): SASRec whose attention is mixed with a frequency filter.

Each block mixes ``alpha`` of a low/high-pass filter over the sequence (:class:`memrec.nn.FrequencyFilter`,
the high frequencies rescaled by a learned beta^2) with ``1 - alpha`` of causal self-attention, then
the feed-forward part. The filter reads the whole row, so rows are left-aligned to ``max_len`` (the
last item always at position max_len - 1, padding in front, hidden from attention) and only the last
position is read: for a position's state, the model is run on the prefix that ends there.
Train it with ``train.train_windows: prefixes`` (its recipe, and the fast path); other windows are
expanded into prefixes inside :meth:`encode_positions`, max_len times slower.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from memrec.errors import ConfigError
from memrec.models.sasrec import SASRec
from memrec.nn import FrequencyFilter


@dataclass
class BSARecConfig:
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 1
    inner_size: int = 256
    dropout: float = 0.5
    init_std: float = 0.02
    inner_dropout: float | None = 0.0  # dropout on the feed-forward's hidden layer (BSARec has none); None: the same as dropout
    alpha: float = 0.7  # weight of the frequency filter against self-attention in each block (0: SASRec on left-aligned rows)
    cutoff: int = 5  # BSARec's c: the low-pass filter keeps the cutoff // 2 + 1 lowest frequencies of max_len

    search_space: ClassVar[dict] = {  # what memrec tune searches (with the learning rate and weight decay)
        "alpha": {"low": 0.1, "high": 0.9}, "cutoff": [1, 3, 5, 7, 9], "dropout": {"low": 0.1, "high": 0.5},
    }  # train_windows stays prefixes (its recipe and fast path): not searched

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0 or self.cutoff < 0:
            raise ConfigError(f"model_config: expected alpha in [0, 1] and cutoff >= 0, got alpha={self.alpha} cutoff={self.cutoff}")


class BSARec(SASRec):
    """Beyond self-attention: SASRec's embeddings and blocks, each block's attention mixed with a frequency filter.

    Example:
        >>> import torch
        >>> model = BSARec(num_items=100, max_len=8, config=BSARecConfig(hidden_size=16)).eval()
        >>> items = torch.tensor([[3, 4, 5, 0]])
        >>> model.encode_last(items, torch.tensor([2])).shape
        torch.Size([1, 16])
        >>> torch.allclose(model.encode_positions(items)[0, 1], model.encode_last(items[:, :2], torch.tensor([1]))[0])
        True
    """

    name = "bsarec"
    config_class = BSARecConfig

    def __init__(self, num_items: int, max_len: int, config: BSARecConfig):
        super().__init__(num_items, max_len, config)
        self.filters = nn.ModuleList(FrequencyFilter(config.hidden_size, config.cutoff, config.dropout) for _ in range(config.num_layers))

    def left_aligned(self, items: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Items 0..last of each right-padded row, moved to the end of a (B, max_len) row: (B, L), (B,) -> (B, max_len)."""
        items = items * (torch.arange(items.size(1)) <= last[:, None])  # nothing after `last`
        count = (items > 0).sum(1, keepdim=True)  # (B, 1)
        source = torch.arange(self.max_len) - (self.max_len - count)  # (B, max_len): where each slot reads; < 0: padding
        return items.gather(1, source.clamp(0, items.size(1) - 1)).masked_fill_(source < 0, 0)

    def encode_last(self, items: torch.Tensor, last: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        rows = self.left_aligned(items, last)  # (B, M)
        real = rows > 0
        x = self.dropout(self.norm(self.item_emb(rows) + self.pos_emb.weight))  # (B, M, d)
        alpha, blocks = self.config.alpha, list(zip(self.encoder.blocks, self.filters))
        for block, frequency in blocks[:-1]:  # every position, as the next block reads them all
            attended = block.norm1(block._add(x, block.attn.out, block.attn.mix(x, real)))  # (B, M, d)
            y = alpha * frequency(x) + (1 - alpha) * attended
            x = block.norm2(block._add(y, block.ff[3], block._inner(y)))
        block, frequency = blocks[-1]  # the last block: only the last position is read
        end = torch.full((len(rows),), rows.size(1) - 1)  # (B,)
        attended = block.norm1(block._add(x[:, -1], block.attn.out, block.attn.mix_at(x, end, real)))  # (B, d)
        y = alpha * frequency.forward_last(x) + (1 - alpha) * attended
        return block.norm2(block._add(y, block.ff[3], block._inner(y)))  # (B, d)

    def encode_positions(self, items: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """State at every position, each from the prefix that ends there: (B, L) -> (B, L, d)."""
        b, length = items.shape
        last = torch.arange(length).repeat(b)  # (B * L,)
        return self.encode_last(items.repeat_interleave(length, 0), last).view(b, length, -1)
