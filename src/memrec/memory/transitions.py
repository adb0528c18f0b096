"""One transition memory: what followed a moment of a user's sequence, for every memory in memrec.

An **entry** records one moment of one user (its **owner**): ``key`` is a model's state after the
owner's items up to that moment, ``values`` are the items that followed (``H`` of them, -1 padded),
``upto`` is the position, in the owner's sequence, of the latest item the entry holds (-1: timeless,
e.g. a bank written from training sequences only). Retrieval statistics ride along: ``hits`` (times
retrieved), ``credit`` (attention share received, summed) and ``last_used`` (the write clock when it
was last written or retrieved). The neighbour memory (:mod:`memrec.memory.neighbours`, every training
position of every user), RAMRec's per-user banks (:mod:`memrec.models.ramrec`, at most ``capacity``
entries per owner, one per next item) and the kNN benchmark are all this one structure.

**Visibility** (:func:`visible`): a query of owner ``u`` that has read ``u``'s items through position
``t`` sees every entry of other owners and ``u``'s own entries with ``upto <= t``; never an entry
holding the item it predicts or anything after it. Memory-moe's expert memories use the same rule.

**Quality** (:func:`quality`), one score for pruning, each term in [0, 1] (``QualityConfig``)::

    R = prior * exp(-age / recency_scale)                  recency (age: clock - last_used)
    F = log(1 + hits) [/ log(1 + max hits of the owner)]   frequency (relative_frequency)
    U = c / (1 + c),  c = credit / max(hits, 1)            usefulness: mean attention share when retrieved
    q = (w_r R + w_f F + w_u U) [/ (w_r + w_f + w_u)]      a weighted mean (average) or a sum capped at 1

RAMRec's banks use the weighted mean with relative frequency; memory-moe's importance is the capped
sum with ``prior = i0``, ``w_f = access_gain`` and no usefulness. Over capacity, an owner's entries of
lowest quality are dropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from memrec.errors import ConfigError, UnknownUserError
from memrec.memory.index import IndexCache, SearchConfig

COLUMNS = ("keys", "values", "owners", "upto", "hits", "credit", "last_used")


@dataclass(frozen=True)
class QualityConfig:
    """Weights and scales of :func:`quality`.

    Example:
        >>> QualityConfig(w_usefulness=0.0).w_recency
        1.0
    """

    w_recency: float = 1.0
    w_frequency: float = 1.0
    w_usefulness: float = 1.0
    recency_scale: float = 1000.0  # in clock steps (writes)
    relative_frequency: bool = True  # frequency relative to the owner's most retrieved entry
    average: bool = True  # weighted mean of the terms; False: their weighted sum, capped at 1

    def __post_init__(self):
        weights = (self.w_recency, self.w_frequency, self.w_usefulness)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError(f"quality weights must be >= 0 and not all 0, got {weights}")
        if self.recency_scale <= 0:
            raise ConfigError(f"recency_scale must be > 0, got {self.recency_scale}")

    @classmethod
    def importance(cls, half_life: float, access_gain: float) -> "QualityConfig":
        """Memory-moe's importance ``min(1, i0 2^(-age / half_life) + access_gain ln(1 + accesses))``."""
        return cls(1.0, access_gain, 0.0, half_life / math.log(2.0), relative_frequency=False, average=False)


def quality(prior: torch.Tensor | float, age: torch.Tensor, hits: torch.Tensor, credit: torch.Tensor, config: QualityConfig,
            groups: torch.Tensor | None = None) -> torch.Tensor:
    """Quality in [0, 1] of ``n`` entries (module docstring): prior, age, hits, credit (n,); ``groups``
    (n,) owner of each entry, for the relative frequency (None: one group).

    Example:
        >>> cfg = QualityConfig(recency_scale=5.0)
        >>> quality(1.0, torch.tensor([0.0, 0.0]), torch.tensor([0.0, 9.0]), torch.tensor([0.0, 18.0]), cfg).tolist()
        [0.3333333432674408, 0.8888888955116272]
    """
    frequency = torch.log1p(hits)
    if config.relative_frequency and len(hits):
        if groups is None:
            top = hits.max().expand_as(hits)
        else:
            top = hits.new_zeros(int(groups.max()) + 1).scatter_reduce(0, groups, hits, "amax")[groups]
        frequency = torch.where(top > 0, frequency / torch.log1p(top).clamp(min=1e-12), torch.zeros_like(frequency))
    recency = prior * torch.exp(-age / config.recency_scale)
    share = credit / hits.clamp(min=1.0)
    total = config.w_recency * recency + config.w_frequency * frequency + config.w_usefulness * share / (1.0 + share)
    if config.average:
        return total / (config.w_recency + config.w_frequency + config.w_usefulness)
    return total.clamp(max=1.0)


def visible(entry_owner: torch.Tensor, entry_upto: torch.Tensor, query_owner: torch.Tensor, query_position: torch.Tensor) -> torch.Tensor:
    """Whether each query may see each entry (module docstring), by broadcasting: an entry of another
    owner, or without one (-1), or of a query without one, or holding nothing after the query's position.

    Example:
        >>> visible(torch.tensor([3, 3, 4]), torch.tensor([2, 5, 9]), torch.tensor([[3]]), torch.tensor([[4]])).tolist()
        [[True, False, True]]
    """
    other = (entry_owner < 0) | (query_owner < 0) | (entry_owner != query_owner)
    return other | (entry_upto <= query_position)


@dataclass(frozen=True)
class TransitionConfig:
    """Capacity per owner (None: unbounded), one entry per (owner, next item) or not, and the quality.

    Example:
        >>> TransitionConfig(capacity=100, unique=True).capacity
        100
    """

    capacity: int | None = None
    unique: bool = False
    quality: QualityConfig = QualityConfig()

    def __post_init__(self):
        if self.capacity is not None and self.capacity < 1:
            raise ConfigError(f"capacity must be None (unbounded) or >= 1, got {self.capacity}")


class TransitionMemory(nn.Module):
    """Entries ``keys (M, d)``, ``values (M, H)``, ``owners``, ``upto``, ``hits``, ``credit``, ``last_used``
    ``(M,)`` as buffers (saved with the model), kept grouped by owner and, within an owner, by ``upto``.

    Example:
        >>> mem = TransitionMemory(dim=2, config=TransitionConfig(capacity=2, unique=True))
        >>> mem.add(torch.randn(3, 2), torch.tensor([11, 12, 13]), owners=torch.tensor([7, 7, 7]), hits=torch.tensor([5.0, 0.0, 1.0]))
        >>> mem.entries(7)["values"][:, 0].tolist()  # item 12 (never retrieved) was pruned
        [11, 13]
        >>> keys, values = mem.gather(torch.tensor([7, 3]), width=2)
        >>> values[..., 0].tolist()  # owner 3 has no entries
        [[11, 13], [-1, -1]]
    """

    def __init__(self, dim: int = 0, horizon: int = 1, config: TransitionConfig | None = None):
        super().__init__()
        self.dim = dim  # 0: taken from the first keys added or loaded
        self.config = config or TransitionConfig()
        self.register_buffer("keys", torch.zeros(0, dim))
        self.register_buffer("values", torch.zeros(0, horizon, dtype=torch.int64))
        for name in ("owners", "upto"):
            self.register_buffer(name, torch.zeros(0, dtype=torch.int64))
        for name in ("hits", "credit", "last_used"):
            self.register_buffer(name, torch.zeros(0))
        self.register_buffer("clock", torch.zeros((), dtype=torch.float64))
        self._ordered = True

    def __len__(self) -> int:
        return len(self.values)

    @property
    def num_owners(self) -> int:
        return len(torch.unique(self.owners))

    # --- writing -----------------------------------------------------------------------------

    @torch.no_grad()
    def add(self, keys: torch.Tensor, values: torch.Tensor, owners: torch.Tensor, upto: torch.Tensor | None = None,
            hits: torch.Tensor | None = None, credit: torch.Tensor | None = None) -> None:
        """Add ``n`` entries: keys (n, d), values (n,) or (n, H), owners (n,), upto / hits / credit (n,) or None.
        One clock step; with ``unique``, an owner's entry for the same next item is refreshed instead
        (the new key, statistics summed); with ``capacity``, the owners written are pruned."""
        values = values if values.dim() == 2 else values.unsqueeze(1)
        self.dim = self.dim or (keys.size(1) if keys.dim() == 2 else 0)
        n = len(values)
        if keys.shape != (n, self.dim) or owners.shape != (n,):
            raise ValueError(f"expected keys (M, {self.dim}), values (M,) or (M, H) and owners (M,), "
                             f"got {tuple(keys.shape)}, {tuple(values.shape)}, {tuple(owners.shape)}")
        if not torch.isfinite(keys).all():
            raise ValueError("memory keys contain NaN or infinite values")
        if len(self) and values.size(1) != self.values.size(1):
            raise ValueError(f"this memory holds {self.values.size(1)} next items per entry, got {values.size(1)}")
        if (owners < 0).any() and (self.config.capacity or self.config.unique):
            raise UnknownUserError("owners must be user indices >= 0")
        self.clock += 1
        fill = lambda x, v: keys.new_full((n,), v) if x is None else x.detach().float()  # noqa: E731
        new = {"keys": keys.detach().float(), "values": values.to(torch.int64), "owners": owners.to(torch.int64),
               "upto": owners.new_full((n,), -1).to(torch.int64) if upto is None else upto.to(torch.int64),
               "hits": fill(hits, 0.0), "credit": fill(credit, 0.0), "last_used": keys.new_full((n,), float(self.clock))}
        old = {name: getattr(self, name) if len(self) else new[name][:0] for name in COLUMNS}  # (0, 0) keys do not concatenate
        if self.config.capacity is None and not self.config.unique:
            self._replace({name: torch.cat([old[name], new[name]]) for name in COLUMNS})
            return
        touched = torch.isin(old["owners"], new["owners"])
        settled = self._settle({name: torch.cat([old[name][touched], new[name]]) for name in COLUMNS})
        self._replace({name: torch.cat([old[name][~touched], settled[name]]) for name in COLUMNS})

    def _settle(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Merge repeated (owner, next item) rows of the touched owners and prune each owner to capacity,
        keeping the rows' order (older entries first)."""
        if self.config.unique:
            item = rows["values"][:, 0]
            pairs = rows["owners"] * (int(item.max()) + 2) + item + 1  # one int per (owner, next item)
            _, group = torch.unique(pairs, return_inverse=True)
            order = torch.arange(len(group))
            first = torch.full((int(group.max()) + 1,), len(group)).scatter_reduce(0, group, order, "amin")
            last = torch.full_like(first, -1).scatter_reduce(0, group, order, "amax")
            merged = {name: torch.zeros(len(first)).index_add_(0, group, rows[name]) for name in ("hits", "credit")}  # summed
            merged["last_used"] = torch.zeros(len(first)).scatter_reduce(0, group, rows["last_used"], "amax", include_self=False)
            keep = first.argsort()  # groups in the order of their first row
            rows = {name: rows[name][last[keep]] for name in COLUMNS}  # the latest key and item
            rows.update({name: merged[name][keep] for name in merged})
        cap = self.config.capacity
        if cap is None or not len(rows["owners"]):
            return rows
        counts = torch.bincount(rows["owners"])
        if counts.max() <= cap:
            return rows
        q = quality(1.0, float(self.clock) - rows["last_used"], rows["hits"], rows["credit"], self.config.quality, rows["owners"])
        order = torch.arange(len(q))
        by_quality = torch.argsort(-q, stable=True)  # best first, ties to the older
        by_owner = by_quality[torch.argsort(rows["owners"][by_quality], stable=True)]  # grouped by owner, best first
        rank = order - torch.searchsorted(rows["owners"][by_owner], rows["owners"][by_owner])  # rank within the owner
        kept = torch.zeros(len(q), dtype=torch.bool)
        kept[by_owner[rank < cap]] = True
        return {name: rows[name][kept] for name in COLUMNS}

    def _replace(self, columns: dict[str, torch.Tensor]) -> None:
        inference = torch.is_inference_mode_enabled()
        with torch.inference_mode(False):  # entries outlive the call: plain tensors, whose version the index cache reads
            for name in COLUMNS:
                setattr(self, name, columns[name].clone() if inference else columns[name])
        self._ordered = False

    def _order(self) -> None:
        """Group the entries by owner and, within an owner, by ``upto`` (stable: writes keep their order)."""
        if self._ordered:
            return
        if len(self):
            order = torch.argsort(self.upto, stable=True)
            order = order[torch.argsort(self.owners[order], stable=True)]
            self._replace({name: getattr(self, name)[order] for name in COLUMNS})
        self._ordered = True

    # --- reading -----------------------------------------------------------------------------

    search_config = SearchConfig()  # exact torch below 10^6 entries, FAISS IVF from there (memrec.memory.index)

    def nearest(self, queries: torch.Tensor, owners: torch.Tensor, k: int, positions: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` best visible entries by inner product: queries (B, d), owners (B,), positions (B,)
        (None: none of the owner's own entries) -> scores and entry rows (B, k'), k' = min(k, M);
        missing slots score -inf with row -1. Rows index the memory's columns (``values[rows]``)."""
        self._order()
        if not len(self):
            return queries.new_zeros(len(owners), 0), owners.new_zeros(len(owners), 0)
        index = self.__dict__.setdefault("_index", IndexCache()).get(self.keys, self.search_config)
        lo, hi = self.own_range(owners, positions)
        return index.search_excluding(queries.float(), k, lo, hi)

    def own_range(self, owners: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``[lo, hi)`` of each query's invisible entries: the owner's own entries after ``positions``
        (all of them when None). One contiguous range, since entries are ordered by owner, then ``upto``."""
        self._order()
        hi = torch.searchsorted(self.owners, owners, right=True)
        start = torch.searchsorted(self.owners, owners)
        if positions is None:
            return start, hi
        span = int(max(self.upto.max(), positions.max())) + 2 if len(self) and len(positions) else 1
        ordered = self.owners * span + self.upto + 1  # ascending: entries are ordered by owner, then upto
        lo = torch.searchsorted(ordered, owners * span + positions.clamp(min=-1) + 1, right=True).clamp(min=start)
        return lo, hi

    def gather(self, owners: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every owner's entries for a batch: owners (B,) -> keys (B, W, d), values (B, W, H) (-1: empty
        slot), in stored order; W = ``width`` (default: the capacity). An owner without entries (new,
        unknown, or negative = anonymous) gets empty slots."""
        self._order()
        width = width or self.config.capacity or int(torch.bincount(self.owners).max() if len(self) else 0)
        start, stop = torch.searchsorted(self.owners, owners), torch.searchsorted(self.owners, owners, right=True)
        slot = torch.arange(width)
        rows = start[:, None] + slot[None, :]  # (B, W)
        ok = (rows < stop[:, None]) & (owners[:, None] >= 0)
        rows = rows.clamp(max=max(len(self) - 1, 0))
        if not len(self):
            return self.keys.new_zeros(len(owners), width, self.dim), self.values.new_full((len(owners), width, self.values.size(1)), -1)
        keys = torch.where(ok[..., None], self.keys[rows], 0.0)
        values = torch.where(ok[..., None], self.values[rows], -1)
        return keys, values

    def entries(self, owner: int) -> dict[str, torch.Tensor]:
        """The entries of one owner with their quality; an error if the owner has none."""
        self._order()
        lo, hi = (int(x) for x in self.own_range(torch.tensor([int(owner)])))
        if lo == hi:
            raise UnknownUserError(f"user {owner} has no memory entries (entries exist for {self.num_owners} users)")
        out = {name: getattr(self, name)[lo:hi] for name in COLUMNS}
        out["quality"] = quality(1.0, float(self.clock) - out["last_used"], out["hits"], out["credit"], self.config.quality)
        return out

    # --- persistence -------------------------------------------------------------------------

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        self._order()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    @staticmethod
    def upgrade_state(state_dict: dict, prefix: str) -> None:
        """Rewrite, in place, entries this memory's ``prefix`` holds in an older checkpoint format (the
        checkpoint reader calls it on every module that has it, before comparing keys)."""
        if prefix + "slot_of_user" in state_dict:
            legacy_banks(state_dict, prefix)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        if prefix + "keys" not in state_dict:  # a checkpoint from before this memory existed: stay empty
            return
        stored = state_dict[prefix + "keys"]
        if self.dim and stored.size(-1) != self.dim:
            error_msgs.append(f"{prefix}keys: stored entries have {stored.size(-1)} dimensions, this memory expects {self.dim}")
            return
        m = len(stored)
        defaults = {"upto": torch.full((m,), -1, dtype=torch.int64), "hits": torch.zeros(m), "credit": torch.zeros(m),
                    "last_used": torch.zeros(m), "clock": torch.zeros((), dtype=torch.float64)}
        for name, default in defaults.items():  # saved before these columns existed
            state_dict.setdefault(prefix + name, default)
        for name in COLUMNS:  # entries vary in number: take the stored sizes
            setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        self.dim = stored.size(1)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        self._ordered = False
        self._order()


def legacy_banks(state_dict: dict, prefix: str) -> None:
    """Rewrite, in place, RAMRec banks saved as ``(slots, capacity)`` tensors (before this memory) as
    entries: each user's live slots in slot order, users ascending, as the banks were read."""
    slot_of_user = state_dict.pop(prefix + "slot_of_user")
    users = (slot_of_user >= 0).nonzero().flatten()  # (U,)
    slots = slot_of_user[users]
    items = state_dict.pop(prefix + "items")[slots]  # (U, C)
    live = items > 0
    for name in ("keys", "hits", "credit", "last_used"):
        state_dict[prefix + name] = state_dict[prefix + name][slots][live]
    state_dict[prefix + "values"] = items[live].unsqueeze(1)
    state_dict[prefix + "owners"] = users[:, None].expand_as(items)[live]
    state_dict[prefix + "upto"] = torch.full((int(live.sum()),), -1, dtype=torch.int64)
