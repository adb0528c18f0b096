"""memory-moe: SASRec whose feed-forward blocks are memory-enhanced mixtures of experts.

Each Transformer block is ``x = LN(x + Attn(x)); x = LN(x + MoE(x))`` with
:class:`memrec.memory.moe_layer.MemoryEnhancedMoE` as ``MoE``. In the last ``memory_layers`` blocks
the experts read and write memories of **transitions**: an entry's key is the block's input at
position t of a training window (the context up to item t) and its value is the item that followed
(item t + 1), read from the live item embedding table, so the table, the read gates and the
projections all learn through memory, and the next-item loss trains everything end to end.

- **training** (``loss``): every position reads its experts' memories, then a random
  ``store_per_step`` of the batch's positions are stored (short-term first; consolidation and
  pruning run on the layer's intervals). An entry carries its user and the position of its item, so
  position p of user u never reads an entry of u whose item comes after p: never the item it is
  predicting nor anything later (:mod:`memrec.memory.expert_memory`, *visibility*);
- **evaluation** (``encode`` / ``score_all``): the last position reads the memories and nothing is
  written. Memories hold training transitions only, which all precede any validation or test target,
  and each row's reads do not depend on the other rows of its batch.

``use_memory=False`` gives the same network as a plain mixture of experts (the ablation).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from memrec.data.batching import TrainBatch
from memrec.errors import ConfigError
from memrec.memory.expert_memory import ExpertMemoryConfig, MemoryInputError
from memrec.memory.moe_layer import MemoryContext, MemoryEnhancedMoE
from memrec.models.base import SequentialRecommender
from memrec.models.sasrec import SASRec, SASRecConfig
from memrec.nn import Dropout
from memrec.nn.transformer import CausalSelfAttention

NEVER = 2**62  # `upto` of an entry whose position is unknown: never visible to its own user in training


@dataclass
class MemoryMoEConfig(SASRecConfig):
    """The backbone's settings (:class:`SASRecConfig`; ``inner_size`` is each expert's hidden size),
    the mixture's, and the experts' memories (:class:`ExpertMemoryConfig` names)."""

    num_experts: int = 4
    top_k_experts: int = 2
    use_memory: bool = True
    memory_layers: int = 1  # the last this many blocks read and write memory
    store_per_step: int = 256  # training positions stored per step (a random subset)
    balance_weight: float = 0.01  # weight of the gate's load-balancing loss
    short_term_capacity: int = 256
    long_term_capacity: int = 2048
    episodic_capacity: int = 1024
    semantic_capacity: int = 512
    top_k_retrieve: int = 8
    similarity_threshold: float = 0.5
    consolidation_interval: int = 20
    consolidation_threshold: float = 0.6
    enable_pruning: bool = True
    prune_interval: int = 200
    min_importance: float = 0.05
    importance_half_life: float = 500.0
    use_faiss: bool = False
    candidate_slack: int = 4

    def memory_config(self) -> ExpertMemoryConfig:
        names = ("short_term_capacity", "long_term_capacity", "episodic_capacity", "semantic_capacity", "top_k_retrieve",
                 "similarity_threshold", "consolidation_interval", "consolidation_threshold", "enable_pruning", "prune_interval",
                 "min_importance", "importance_half_life", "use_faiss", "candidate_slack")
        return ExpertMemoryConfig(**{n: getattr(self, n) for n in names})


class MoEBlock(nn.Module):
    """Causal self-attention, then the memory-enhanced MoE as the feed-forward part (post-norm)."""

    def __init__(self, d: int, config: MemoryMoEConfig):
        super().__init__()
        self.attn = CausalSelfAttention(d, config.num_heads, config.dropout)
        self.norm1 = nn.LayerNorm(d)
        self.moe = MemoryEnhancedMoE(d, d, config.num_experts, config.inner_size, memory_config=config.memory_config(),
                                     top_k=config.top_k_experts, dropout=config.dropout)
        self.norm2 = nn.LayerNorm(d)
        self.dropout = Dropout(config.dropout)

    def forward(self, x, use_memory=False, store=False, context=None, writes=None):  # (B, L, d) -> (B, L, d), info
        x = self.norm1(x + self.dropout(self.attn(x)))
        y, info = self.moe(x, use_memory=use_memory, store_experience=store, context=context, writes=writes)
        return self.norm2(x + self.dropout(y)), info

    def forward_at(self, x, last, use_memory=False, context=None):  # (B, L, d), (B,) -> (B, d), info
        x = self.norm1(x[torch.arange(len(last)), last] + self.dropout(self.attn.forward_at(x, last)))
        y, info = self.moe(x, use_memory=use_memory, context=context)
        return self.norm2(x + self.dropout(y)), info


class MemoryMoERec(SASRec):
    """SASRec with memory-enhanced MoE feed-forward blocks (see the module docstring).

    Example:
        >>> import torch
        >>> cfg = MemoryMoEConfig(hidden_size=16, inner_size=32, num_layers=1, num_experts=2, dropout=0.0)
        >>> model = MemoryMoERec(num_items=30, max_len=8, config=cfg)
        >>> batch = TrainBatch(torch.tensor([0, 1]), torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([[2, 3, 4], [5, 6, 0]]))
        >>> writes = []
        >>> loss = model.train().loss(batch, lambda h, t, items: torch.nn.functional.cross_entropy(h @ items.T, t), writes)
        >>> model.memory_statistics()["total_memories"]  # loss changes nothing
        0
        >>> model.write_memory(writes)  # the trainer's memory step: the five transitions are stored
        >>> model.memory_statistics()["total_memories"]
        5
        >>> model.eval().encode(torch.tensor([[1, 2, 0]]), torch.tensor([2])).shape
        torch.Size([1, 16])
    """

    name = "memory-moe"
    config_class = MemoryMoEConfig

    def __init__(self, num_items: int, max_len: int, config: MemoryMoEConfig):
        SequentialRecommender.__init__(self, num_items, max_len, config)
        if not 0 <= config.memory_layers <= config.num_layers:
            raise ConfigError(f"memory_layers must be in 0..num_layers={config.num_layers}, got {config.memory_layers}")
        if config.store_per_step < 0 or config.balance_weight < 0:
            raise ConfigError("expected store_per_step >= 0 and balance_weight >= 0")
        d = config.hidden_size
        self.item_emb = nn.Embedding(num_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d)
        self.dropout = Dropout(config.dropout)
        self.blocks = nn.ModuleList(MoEBlock(d, config) for _ in range(config.num_layers))
        self.apply(self._init)
        for block in self.blocks:  # W_r = identity, read gate open, after the normal init above
            for expert in block.moe.experts:
                expert.reset_memory_reader()

    def _reads_memory(self, layer: int) -> bool:
        return self.config.use_memory and layer >= len(self.blocks) - self.config.memory_layers

    def _run(self, x, context=None, store=False, writes=None):
        """Every block over every position: (B, L, d) -> (B, L, d), summed balance loss; with ``store``,
        the memory writes go to ``writes``."""
        balance = x.new_zeros(())
        for n, block in enumerate(self.blocks):
            memory = self._reads_memory(n)
            x, info = block(x, memory, store and memory, context if memory else None, writes)
            balance = balance + info["balance_loss"]
        return x, balance

    def encode_positions(self, items: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(self.embed(items))[0]  # (B, L, d); reads memory, never writes

    def encode_last(self, items: torch.Tensor, last: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(items)
        for n, block in enumerate(self.blocks[:-1]):
            x = block(x, self._reads_memory(n))[0]
        return self.blocks[-1].forward_at(x, last, self._reads_memory(len(self.blocks) - 1))[0]  # (B, d)

    def training_context(self, batch: TrainBatch) -> MemoryContext:
        """Who each position belongs to, where it is, and which of its transitions to store."""
        b, length = batch.inputs.shape
        offsets = torch.arange(length)[None, :]
        owners = batch.users[:, None].expand(b, length)
        if batch.starts is not None:
            positions = batch.starts[:, None] + offsets  # (B, L): absolute position of input item t
            upto = positions + 1  # a stored entry recalls item t + 1
        else:  # unknown offsets: the user's own entries are never read back in training
            positions = torch.full((b, length), -1)
            upto = torch.full((b, length), NEVER)
        real = (batch.targets > 0).flatten()
        store = torch.zeros(b * length, dtype=torch.bool)
        candidates = real.nonzero().flatten()
        store[candidates[torch.randperm(len(candidates))[: self.config.store_per_step]]] = True
        return MemoryContext(owners=owners.reshape(-1), positions=positions.reshape(-1), upto=upto.reshape(-1),
                             items=batch.targets.reshape(-1), store=store, value_table=self.item_emb.weight)

    def loss(self, batch: TrainBatch, objective, writes: list | None = None) -> torch.Tensor:
        """Next-item loss through the memories plus the gates' balance loss; in training mode, with
        ``writes``, it also asks to store transitions (applied by :meth:`write_memory`)."""
        self.check_items(batch.inputs)
        context = self.training_context(batch)
        store = writes is not None and self.training and self.config.store_per_step > 0
        hidden, balance = self._run(self.embed(batch.inputs), context, store=store, writes=writes)
        mask = batch.targets > 0
        return objective(hidden[mask], batch.targets[mask], self.item_embeddings()) + self.config.balance_weight * balance

    def memory_layers(self) -> list[MemoryEnhancedMoE]:
        return [block.moe for n, block in enumerate(self.blocks) if self._reads_memory(n)]

    @torch.no_grad()
    def few_shot_adapt(self, items, user: int = -1, importance: float = 0.95) -> dict:
        """The seed's ``few_shot_adapt`` for a recommender: adapt to a (new) user's first interactions
        without a gradient step. Each transition of ``items`` (n,) item indices in time order, the
        context up to item t (the memory layer's input at position t) -> item t + 1, is stored as an
        episodic memory of ``importance`` in the memory layers, owned by ``user`` (-1: nobody) at
        position t + 1. The last item is the context of the next prediction and recalls nothing.
        The memory changes (one storing step per memory layer); :meth:`memory_state` and
        :meth:`load_memory_state` undo it.

        Example:
            >>> cfg = MemoryMoEConfig(hidden_size=16, inner_size=32, num_layers=1, num_experts=2, dropout=0.0)
            >>> model = MemoryMoERec(num_items=30, max_len=8, config=cfg).eval()
            >>> model.few_shot_adapt(torch.tensor([4, 9, 2]), user=7)["memories_stored"]
            2
            >>> model.memory_statistics()["episodic_count"]
            2
        """
        items = torch.as_tensor(items, dtype=torch.int64).flatten()
        if len(items) < 2:
            raise MemoryInputError(f"few_shot_adapt needs at least 2 interactions (one transition), got {len(items)}")
        if not self.config.use_memory or not self.memory_layers():
            raise MemoryInputError("this model has no memory layers (use_memory=false or memory_layers=0): nothing to adapt")
        offset = max(0, len(items) - 1 - self.max_len)  # keep the last max_len transitions
        inputs = items[offset:-1][None]  # (1, n - 1)
        self.check_items(items[None], any_length=True)
        was_training = self.training
        self.eval()
        try:
            x, stored = self.embed(inputs), 0
            positions = torch.arange(offset + 1, len(items))  # where each recalled item sits in the sequence
            for n, block in enumerate(self.blocks):
                if self._reads_memory(n):
                    context = block.norm1(x + block.dropout(block.attn(x)))[0]  # (n - 1, d): the MoE's input
                    stored += block.moe.store_episodes(context, items[positions], importance, torch.full_like(positions, user),
                                                       positions, self.item_emb.weight)
                x = block(x, self._reads_memory(n))[0]
        finally:
            self.train(was_training)
        return {"num_examples": len(positions), "memories_stored": stored}

    def memory_state(self) -> list[dict]:
        """A copy of every memory layer's memories, step counter and gate statistics."""
        return [copy.deepcopy({"layer": moe.get_extra_state(), "gate": moe.gate.get_extra_state(),
                               "experts": [e.memory.get_extra_state() for e in moe.experts]}) for moe in self.memory_layers()]

    def load_memory_state(self, state: list[dict]) -> None:
        """Put back memories taken with :meth:`memory_state` (e.g. to undo :meth:`few_shot_adapt`)."""
        layers = self.memory_layers()
        if len(state) != len(layers):
            raise MemoryInputError(f"the state holds {len(state)} memory layers, this model has {len(layers)}")
        for moe, part in zip(layers, state):
            moe.set_extra_state(part["layer"])
            moe.gate.set_extra_state(part["gate"])
            for expert, memory in zip(moe.experts, part["experts"]):
                expert.memory.set_extra_state(memory)

    def memory_statistics(self) -> dict:
        """The seed's statistics summed over the memory layers (``per_layer`` keeps each)."""
        per_layer = [moe.get_memory_statistics() for moe in self.memory_layers()]
        keys = ("total_memories", "short_term_count", "long_term_count", "episodic_count", "semantic_count")
        return {**{k: sum(s[k] for s in per_layer) for k in keys}, "per_layer": per_layer}
