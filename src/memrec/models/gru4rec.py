"""GRU4Rec (Hidasi et al., 2016) with a full-softmax next-item objective."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from memrec.models.base import SequentialRecommender
from memrec.nn import Dropout


@dataclass
class GRU4RecConfig:
    embedding_size: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.3

    search_space: ClassVar[dict] = {  # what memrec tune searches (with the learning rate and weight decay)
        "embedding_size": [32, 64, 128], "hidden_size": [64, 128, 256], "dropout": {"low": 0.1, "high": 0.5},
    }


class GRU4Rec(SequentialRecommender):
    """A GRU over item embeddings, projected back to the item space.

    Example:
        >>> import torch
        >>> model = GRU4Rec(num_items=100, max_len=20, config=GRU4RecConfig(embedding_size=8, hidden_size=16))
        >>> model.encode_positions(torch.tensor([[3, 4, 0]])).shape
        torch.Size([1, 3, 8])
    """

    name = "gru4rec"
    config_class = GRU4RecConfig

    def __init__(self, num_items: int, max_len: int, config: GRU4RecConfig):
        super().__init__(num_items, max_len, config)
        self.item_emb = nn.Embedding(num_items + 1, config.embedding_size, padding_idx=0)
        self.dropout = Dropout(config.dropout)
        self.gru = nn.GRU(config.embedding_size, config.hidden_size, config.num_layers, batch_first=True, bias=False)
        self.project = nn.Linear(config.hidden_size, config.embedding_size)
        nn.init.xavier_normal_(self.item_emb.weight)
        for name, weight in self.gru.named_parameters():
            nn.init.xavier_uniform_(weight) if "weight_ih" in name else nn.init.orthogonal_(weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode_positions(self, items: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        x = self.dropout(self.item_emb(items))  # (B, L, e)
        out, _ = self.gru(x)  # (B, L, h)
        return self.project(out)  # (B, L, e)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight  # (N + 1, e)
