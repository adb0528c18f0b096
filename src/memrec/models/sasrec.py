"""SASRec (Kang & McAuley, 2018): a causal Transformer over the item sequence."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from memrec.data.batching import TrainBatch
from memrec.errors import ConfigError
from memrec.models.base import SequentialRecommender
from memrec.nn import CausalTransformer, Dropout

POSITIONS = ("from_start", "from_end")


@dataclass
class SASRecConfig:
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.2
    init_std: float = 0.02
    inner_dropout: float | None = None  # dropout on the feed-forward's hidden layer; None: the same as dropout (torch's TransformerEncoderLayer); 0: none (BSARec, RecBole)
    positions: str = "from_start"  # from_start: position t of the window is embedding t; from_end: the last item is always embedding max_len - 1 (Kang's left-padded SASRec, BSARec)

    search_space: ClassVar[dict] = {  # what memrec tune searches (with the learning rate and weight decay)
        "hidden_size": [32, 64, 128], "num_layers": {"low": 1, "high": 3}, "dropout": {"low": 0.1, "high": 0.5},
        "positions": ["from_start", "from_end"],
        "train.train_windows": ["all", "prefixes"],  # a dotted key is a run-config key (docs/backbone.md: prefixes lift Beauty)
    }

    def __post_init__(self):
        if self.positions not in POSITIONS:
            raise ConfigError(f"model_config.positions: expected one of {', '.join(POSITIONS)}, got {self.positions!r}")


class SASRec(SequentialRecommender):
    """Self-attentive sequential recommendation with learned absolute positions.

    Example:
        >>> import torch
        >>> model = SASRec(num_items=100, max_len=20, config=SASRecConfig(hidden_size=16))
        >>> model.encode_positions(torch.tensor([[3, 4, 0]])).shape
        torch.Size([1, 3, 16])
    """

    name = "sasrec"
    config_class = SASRecConfig

    def __init__(self, num_items: int, max_len: int, config: SASRecConfig):
        super().__init__(num_items, max_len, config)
        d = config.hidden_size
        self.item_emb = nn.Embedding(num_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d)
        self.dropout = Dropout(config.dropout)
        self.encoder = CausalTransformer(d, config.num_heads, config.inner_size, config.num_layers, config.dropout, config.inner_dropout)
        self.apply(self._init)

    def _init(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])

    def embed(self, items: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, d)
        return self.dropout(self.norm(self.item_emb(items) + self.positions(items)))

    def positions(self, items: torch.Tensor) -> torch.Tensor:  # (B, L) right-padded -> (L, d) or (B, L, d)
        if self.config.positions == "from_start":
            return self.pos_emb.weight[: items.size(1)]
        count = (items > 0).sum(1, keepdim=True)  # (B, 1) real items per row
        index = torch.arange(items.size(1)) + (self.max_len - count)  # (B, L): the last real item at max_len - 1
        return self.pos_emb(index.clamp_(0, self.max_len - 1))  # padding after the last item: never read causally

    def loss(self, batch: TrainBatch, objective, writes: list | None = None) -> torch.Tensor:
        """With one target per row (``train_windows: prefixes``) only each row's last position is encoded."""
        if not batch.last_only:
            return super().loss(batch, objective, writes)
        self.check_items(batch.inputs)
        last = (batch.inputs > 0).sum(1) - 1  # (B,) the target sits after the last input
        hidden = self.encode_last(batch.inputs, last, batch.users)  # (B, d)
        return objective(hidden, batch.targets[torch.arange(len(last)), last], self.item_embeddings())

    def encode_positions(self, items: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.embed(items))  # (B, L, d)

    def encode_last(self, items: torch.Tensor, last: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder.forward_at(self.embed(items), last)  # (B, d)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight  # (N + 1, d)
