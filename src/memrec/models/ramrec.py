"""RAMRec: a SASRec backbone plus per-user episodic memory, adaptive-K retrieval and cross-attention.

At position t the backbone's hidden state ``h_t`` retrieves K entries of the user's own memory and
reads them with multi-head cross-attention (K keys); a learned gate mixes the result in:

    z_t = h_t + g_t * o_t,   o_t = CrossAttn(q = h_t, keys = entry keys, values = E[entry items])
    g_t = sigmoid(W_g [h_t; o_t] + b_g)

An entry ``(h_j, i_{j+1})`` is a prefix representation of the user's sequence and the item that
followed it. Position t may use entries with ``j < t`` only, so it never sees its own target:

- **training**: the entries are the earlier positions of the same window, built on the fly (exact,
  differentiable: cross-attention, gate and backbone all learn through the memory). Each step also
  writes the window's entries, with their retrieval statistics, into the user's persistent bank
  (a :class:`~memrec.memory.transitions.TransitionMemory` owned by the user index, one entry per next
  item, at most ``bank_capacity`` per user, pruned by quality);
- **evaluation** (``encode``/``score_all`` with ``users``): the last position reads the window's
  entries plus the user's bank entries whose item is not in the window (older history). After
  training, banks hold training transitions only, all of which precede any validation or test target;
  while serving, each position a user's log gains becomes an entry too (:meth:`follow_log`).

K per position comes from the diversity (entropy) of the visible entries' items (see
:mod:`memrec.memory.adaptive_k`), or is fixed with ``fixed_k``. ``use_memory=False`` is the plain
backbone; ``public_code_mode=True`` mimics the public code for the ablation: memory unused in
training, one softmax-pooled vector per position (a single key), fusion weights never trained.

**Neighbour memory**: like every model, RAMRec can carry a memory of other users' training
positions (``memory.neighbours`` in the run config; :mod:`memrec.memory.neighbours`). Its key and
query is the window state, without the bank (:meth:`scores_and_states`): the user's own bank can only
point at items the user has seen, which full ranking masks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from memrec.data.batching import EvalBatch, TrainBatch
from memrec.errors import ConfigError
from memrec.memory.adaptive_k import adaptive_k, diversity
from memrec.memory.index import select_topk
from memrec.memory.transitions import QualityConfig, TransitionConfig, TransitionMemory
from memrec.models.sasrec import SASRec, SASRecConfig


@dataclass
class RAMRecConfig(SASRecConfig):
    """The backbone's settings (:class:`SASRecConfig`) plus the memory's."""

    use_memory: bool = True  # False: the backbone alone (ablation "no memory banks")
    memory_heads: int = 2  # heads of the cross-attention over the K retrieved entries
    fixed_k: int | None = None  # None: adaptive K from entropy; an int: always this K (ablation)
    k_min: int = 3
    k_max: int = 20
    bank_capacity: int = 100  # entries per user bank
    bank_at_eval: bool = True  # at evaluation also read the user's bank (history older than the window)
    w_frequency: float = 1.0  # quality weights for pruning, see memrec.memory.transitions
    w_recency: float = 1.0
    w_usefulness: float = 1.0
    recency_scale: float = 1000.0
    public_code_mode: bool = False  # ablation: pooled single vector, untrained fusion, no memory in training

    search_space: ClassVar[dict] = {**{k: v for k, v in SASRecConfig.search_space.items() if k != "train.train_windows"},  # banks are written from whole windows
                                    "k_max": [10, 20, 40], "bank_capacity": [50, 100, 200]}


class MemoryCrossAttention(nn.Module):
    """Multi-head attention of each query over its own selected entries: queries (B, Q, d),
    keys and values (B, E, d), selected (B, Q, E) bool -> output (B, Q, d), weights (B, Q, E).
    A query with no selected entry gets a zero output.

    Example:
        >>> att = MemoryCrossAttention(d=8, heads=2, dropout=0.0)
        >>> selected = torch.tensor([[[True, True, False], [False, False, False]]])  # (1, 2, 3)
        >>> out, weights = att(torch.randn(1, 2, 8), torch.randn(1, 3, 8), torch.randn(1, 3, 8), selected)
        >>> out.shape, weights[0, 0, 2].item(), weights[0, 1].abs().sum().item()
        (torch.Size([1, 2, 8]), 0.0, 0.0)
    """

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ConfigError(f"hidden_size {d} must be divisible by memory_heads {heads}")
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def forward(self, query, keys, values, selected):
        b, nq, d = query.shape
        h, dh = self.heads, d // self.heads
        q = self.q(query).view(b, nq, h, dh).transpose(1, 2)  # (B, h, Q, dh)
        k = self.k(keys).view(b, -1, h, dh).transpose(1, 2)  # (B, h, E, dh)
        v = self.v(values).view(b, -1, h, dh).transpose(1, 2)
        some = selected.any(-1, keepdim=True)  # (B, Q, 1)
        mask = (selected | ~some).unsqueeze(1)  # (B, 1, Q, E): empty rows attend anywhere, then are zeroed
        att = (q @ k.transpose(-1, -2) / math.sqrt(dh)).masked_fill(~mask, float("-inf")).softmax(-1)
        att = att * some.unsqueeze(1)  # (B, h, Q, E)
        y = (self.dropout(att) @ v).transpose(1, 2).reshape(b, nq, d)
        return self.out(y), att.mean(1)

    def pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """The public code's path: attention over one key is just the value path. (B, Q, d) -> (B, Q, d)."""
        return self.out(self.v(pooled))


class RAMRec(SASRec):
    """SASRec with retrieval-augmented episodic memory per user (see the module docstring).

    Example:
        >>> import torch
        >>> model = RAMRec(num_items=50, max_len=8, config=RAMRecConfig(hidden_size=16, bank_capacity=4)).eval()
        >>> items, users = torch.tensor([[3, 4, 5, 0]]), torch.tensor([0])
        >>> model.encode_positions(items, users).shape
        torch.Size([1, 4, 16])
        >>> model.update_memory(users, [np.array([7, 8, 9, 10])])  # the user's past, into the bank
        >>> sorted(model.bank.entries(0)["values"][:, 0].tolist())
        [8, 9, 10]
        >>> model.encode(items, torch.tensor([3]), users).shape  # reads the window and the bank
        torch.Size([1, 16])
    """

    name = "ramrec"
    config_class = RAMRecConfig

    def __init__(self, num_items: int, max_len: int, config: RAMRecConfig):
        super().__init__(num_items, max_len, config)
        if config.fixed_k is not None and config.fixed_k < 1:
            raise ConfigError(f"fixed_k must be None (adaptive) or >= 1, got {config.fixed_k}")
        if not 1 <= config.k_min <= config.k_max:
            raise ConfigError(f"expected 1 <= k_min <= k_max, got {config.k_min} and {config.k_max}")
        d = config.hidden_size
        self.cross = MemoryCrossAttention(d, config.memory_heads, config.dropout)
        self.gate = nn.Linear(2 * d, d)
        self.cross.apply(self._init)
        self.gate.apply(self._init)
        quality = QualityConfig(config.w_recency, config.w_frequency, config.w_usefulness, config.recency_scale)
        self.bank = TransitionMemory(d, horizon=1, config=TransitionConfig(config.bank_capacity, unique=True, quality=quality))
        if config.public_code_mode:  # the public code never trains the fusion
            for p in [*self.cross.parameters(), *self.gate.parameters()]:
                p.requires_grad_(False)

    # --- memory read -------------------------------------------------------------------------

    def retrieval_k(self, values: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """K per query: values (B, E, d), visible (B, Q, E) -> (B, Q) int64."""
        n = visible.sum(-1)
        if self.config.fixed_k is not None:
            return n.clamp(max=self.config.fixed_k)
        return adaptive_k(diversity(values, visible), n, self.config.k_min, self.config.k_max)

    def read_memory(self, query, keys, items, visible):
        """Fuse retrieved memories into the queries.

        query (B, Q, d); entry keys (B, E, d) and items (B, E); visible (B, Q, E) bool: which entries
        each query may use. Returns fused (B, Q, d), selected (B, Q, E), weights (B, Q, E), k (B, Q).
        """
        values = self.item_emb(items)  # (B, E, d): what followed each prefix
        k = self.retrieval_k(values, visible)
        sim = query @ keys.transpose(1, 2)  # (B, Q, E): exact inner-product search
        selected = select_topk(sim.detach(), visible, k)
        if self.config.public_code_mode:
            weights = sim.masked_fill(~selected, float("-inf")).softmax(-1).nan_to_num(0.0)  # (B, Q, E)
            out = self.cross.pooled(weights @ values)  # one pooled vector, one key
        else:
            out, weights = self.cross(query, keys, values, selected)
        out = self.dropout(out)
        g = torch.sigmoid(self.gate(torch.cat([query, out], -1)))  # (B, Q, d)
        return query + g * out, selected, weights, k

    def _memory_in_use(self) -> bool:
        return self.config.use_memory and not (self.training and self.config.public_code_mode)

    @staticmethod
    def window_entries(hidden: torch.Tensor, items: torch.Tensor):
        """Entries of a window: entry j = (h_j, item j+1), visible to positions t > j.

        hidden (B, L, d), items (B, L) -> keys (B, L-1, d), items (B, L-1), visible (B, L, L-1)."""
        length = items.size(1)
        keys, followed = hidden[:, :-1], items[:, 1:]
        earlier = torch.arange(length - 1, device=items.device)[None, :] < torch.arange(length, device=items.device)[:, None]  # (L, L-1): j < t
        return keys, followed, earlier[None] & (followed > 0)[:, None, :]

    # --- SequentialRecommender ---------------------------------------------------------------

    def encode_positions(self, items: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.encoder(self.embed(items))  # (B, L, d)
        if not self._memory_in_use():
            return hidden
        return self.read_memory(hidden, *self.window_entries(hidden, items))[0]

    def encode_last(self, items: torch.Tensor, last: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        return self.last_states(items, last, users, window=False)[0]

    def last_states(self, items: torch.Tensor, last: torch.Tensor, users: torch.Tensor | None = None,
                    window: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """States at position ``last`` of each row, (B, L), (B,) -> two (B, d): the user vector (window
        and, at evaluation, the user's bank) and the window-only state, the neighbour memory's query
        (None when the bank was read and ``window`` is False)."""
        if not self._memory_in_use():
            state = super().encode_last(items, last, users)
            return state, state
        hidden = self.encoder(self.embed(items))  # (B, L, d)
        rows = torch.arange(len(last), device=items.device)
        keys, followed, visible = self.window_entries(hidden, items)
        visible = visible[rows, last].unsqueeze(1)  # (B, 1, L-1)
        query = hidden[rows, last].unsqueeze(1)  # (B, 1, d)
        if users is None or not self.config.bank_at_eval or self.training or not len(self.bank):
            state = self.read_memory(query, keys, followed, visible)[0][:, 0]
            return state, state
        window_state = self.read_memory(query, keys, followed, visible)[0][:, 0] if window else None
        bank_keys, bank_items = self.bank.gather(users)  # (B, C, d), (B, C, 1)
        bank_items = bank_items[..., 0].clamp(min=0)  # (B, C), 0: an empty slot
        in_window = ((bank_items[:, :, None] == followed[:, None, :]) & visible).any(-1)  # (B, C)
        keys = torch.cat([keys, bank_keys], 1)
        followed = torch.cat([followed, bank_items], 1)
        visible = torch.cat([visible, ((bank_items > 0) & ~in_window).unsqueeze(1)], 2)
        return self.read_memory(query, keys, followed, visible)[0][:, 0], window_state

    def scores_and_states(self, batch: EvalBatch, states: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores from the user vector (window and bank) and the window-only state (the neighbour state)."""
        self.check_items(batch.history)
        user, window = self.last_states(batch.history, (batch.lengths - 1).clamp(min=0), batch.users, window=states)
        return user @ self.item_embeddings().T, window

    def loss(self, batch: TrainBatch, objective, writes: list | None = None) -> torch.Tensor:
        """Next-item loss through the memory; in training, with ``writes``, it also asks for the window's
        entries to be written into the users' banks (applied by :meth:`write_memory`)."""
        self.check_items(batch.inputs)
        hidden = self.encoder(self.embed(batch.inputs))  # (B, L, d)
        stats = None
        if self._memory_in_use():
            keys, followed, visible = self.window_entries(hidden, batch.inputs)
            fused, selected, weights, k = self.read_memory(hidden, keys, followed, visible)
            stats = (selected.sum(1).float(), (weights * k.unsqueeze(-1)).sum(1))  # (B, L-1) hits, credit
        else:
            fused = hidden
        mask = batch.targets > 0
        loss = objective(fused[mask], batch.targets[mask], self.item_embeddings())
        if self.config.use_memory and self.training and writes is not None:
            writes.append(self._bank_write(batch.users, hidden, batch.targets, stats))
        return loss

    def _bank_write(self, users, hidden, targets, stats):
        """The bank write of a batch, to apply later: entry j of each row = (h_j, target_j), the prefix
        through j and the item that followed."""
        hits = credit = None
        if stats is not None:  # the last position's entry was not retrievable inside the window
            hits, credit = (F.pad(s.detach(), (0, 1)) for s in stats)
        hidden = hidden.detach()
        return lambda: self._write_bank(users, hidden, targets, hits, credit)

    def _write_bank(self, users, hidden, targets, hits=None, credit=None) -> None:
        """Each row's entries (h_j, target_j) into its user's bank: users (B,), hidden (B, L, d), targets,
        hits, credit (B, L); of an item repeated in a row, its last position (the latest prefix)."""
        b, length = targets.shape
        pos = torch.arange(length)
        later = ((targets[:, :, None] == targets[:, None, :]) & (pos[None, None, :] > pos[None, :, None])).any(-1)  # (B, L)
        keep = (targets > 0) & ~later
        stats = [None if x is None else x[keep] for x in (hits, credit)]
        self.bank.add(hidden[keep], targets[keep], users[:, None].expand(b, length)[keep], None, *stats)

    def keeps_banks(self) -> bool:
        """Whether ranking reads per-user banks written in training (memory on, read at evaluation, written)."""
        return self.config.use_memory and self.config.bank_at_eval and len(self.bank) > 0

    def ranks_training_users_apart(self) -> bool:
        return self.keeps_banks() or super().ranks_training_users_apart()

    def check_training_users(self, count: int) -> None:
        if (self.bank.owners >= count).any():
            raise ValueError(f"has banks for user indices beyond its {count} training users")

    def follows_logs(self) -> bool:
        return self.keeps_banks()

    @torch.no_grad()
    def follow_log(self, owner: int, items: list[int], start: int) -> int:
        """Each position t >= start of the log becomes an entry of the owner's bank: the window state
        after items[t - max_len : t] and the item at t (as training writes a window's entries)."""
        positions = range(max(1, start), len(items))
        if not self.follows_logs() or not positions:
            return 0
        width = min(max(positions), self.max_len)
        inputs = torch.zeros(len(positions), width, dtype=torch.int64)  # (P, W): each window left-aligned
        last = torch.zeros(len(positions), dtype=torch.int64)
        for r, t in enumerate(positions):
            window = items[max(0, t - self.max_len):t]
            inputs[r, :len(window)] = torch.as_tensor(window, dtype=torch.int64)
            last[r] = len(window) - 1
        targets = torch.as_tensor([items[t] for t in positions], dtype=torch.int64)[None]  # (1, P)
        self.check_items(inputs)
        self.check_items(targets, any_length=True)
        was = self.training
        self.eval()
        try:
            hidden = self.encoder(self.embed(inputs))[torch.arange(len(positions)), last]  # (P, d)
        finally:
            self.train(was)
        self._write_bank(torch.tensor([owner]), hidden[None], targets)  # one row: the owner's new entries in order
        return len(positions)

    @torch.no_grad()
    def update_memory(self, users: torch.Tensor, sequences: list[np.ndarray]) -> None:
        """Write the entries of each user's own sequence (its last ``max_len + 1`` items) into the
        user's bank, with the current weights and no dropout: for serving, or to refresh the banks
        after training. users (B,), sequences: B arrays of item indices in time order."""
        if len(users) != len(sequences):
            raise ValueError(f"got {len(users)} users but {len(sequences)} sequences")
        width = max([min(len(s), self.max_len + 1) for s in sequences] + [2]) - 1
        inputs = torch.zeros(len(sequences), width, dtype=torch.int64)
        targets = torch.zeros_like(inputs)
        for r, seq in enumerate(sequences):
            seq = torch.as_tensor(np.asarray(seq)[-(self.max_len + 1):], dtype=torch.int64)
            inputs[r, : len(seq) - 1], targets[r, : len(seq) - 1] = seq[:-1], seq[1:]
        self.check_items(inputs)
        self.check_items(targets)
        was = self.training
        self.eval()
        try:
            self._write_bank(torch.as_tensor(users, dtype=torch.int64), self.encoder(self.embed(inputs)), targets)
        finally:
            self.train(was)
