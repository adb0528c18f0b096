"""The memories of one expert: short-term, long-term, episodic and semantic tiers over a vector index.

Every entry is a **key** (the expert's input when it was stored, L2-normalised), a **value** (what
the memory recalls, in the expert's output space) and bookkeeping: its starting importance ``i0``,
the step it was created, how often it was retrieved, an optional item index (a recommender resolves
the value from its item table, so gradients reach the embeddings), an optional owner and position
(see *visibility*), and optional JSON metadata.

The tiers (capacities from :class:`ExpertMemoryConfig`, the seed's defaults):

- **short-term**: every experience stored by a forward pass lands here first; first in, first out.
  Entries pushed out by newer ones are consolidated if important enough, else forgotten;
- **long-term**: consolidated entries; over capacity the least important are evicted;
- **episodic**: specific experiences stored on purpose (``store_experience``, few-shot examples);
- **semantic**: prototypes, "general knowledge". Consolidation folds each consolidated entry into
  the nearest prototype of the same owner when their cosine is at least ``semantic_merge_threshold``
  (running mean of keys and values, ``count`` grows), else it starts a new prototype.

**Importance** of an entry at step ``clock`` (age and access)::

    I = min(1, i0 * 2 ** (-(clock - created) / importance_half_life) + access_gain * ln(1 + accesses))

**Consolidation** (every ``consolidation_interval`` storing steps, on demand, and on short-term
overflow) moves short-term entries with ``I >= consolidation_threshold`` to long-term and semantic.
**Pruning** (every ``prune_interval`` steps when ``enable_pruning``, or on demand) drops entries of
every tier with ``I < min_importance``.

**Retrieval**: the index of each tier (:func:`memrec.memory.index.make_index`: exact torch search, or
FAISS with ``use_faiss=True``) proposes candidates; they are re-scored exactly, row by row, so the
result of a query never depends on the other queries of its batch. The best ``k`` with cosine
``>= similarity_threshold`` are returned, ties broken by tier and age.

**Visibility**: a query may carry an owner ``o`` (a user) and a position ``p`` (it predicts what
comes after item ``p`` of ``o``'s sequence). An entry of owner ``o`` whose latest item (``upto``) lies
after ``p`` is invisible to it, so a memory never holds the item being predicted or anything after
it. Entries without an owner (``-1``) and queries without one see everything. This is the rule of
:func:`memrec.memory.transitions.visible`, and importance is its one quality score: the tiers hold
value vectors and prototypes, not next items, so they keep their own storage.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from memrec.errors import ConfigError
from memrec.memory.index import GrowingRows, VectorIndexError, check_vectors, exact_search, make_index
from memrec.memory.transitions import QualityConfig, quality, visible

TIERS = ("short_term", "long_term", "episodic", "semantic")
COLUMNS = ("values", "items", "importance", "created", "access", "owner", "upto", "count")
RESCORE_CHUNK = 256  # queries re-scored at once (bounds the (q, candidates, d) gather)


class MemoryInputError(VectorIndexError):
    """Bad input to an expert memory: wrong shapes, NaN values, k < 1, an empty memory searched."""


def checked(vectors: torch.Tensor, dim: int, what: str) -> torch.Tensor:
    """:func:`memrec.memory.index.check_vectors`, raising :class:`MemoryInputError`."""
    try:
        return check_vectors(vectors, dim, what)
    except VectorIndexError as exc:
        raise MemoryInputError(str(exc)) from None


@dataclass
class ExpertMemoryConfig:
    """Capacities, retrieval and maintenance of each expert's memory (the seed's names and defaults).

    Example:
        >>> ExpertMemoryConfig(top_k_retrieve=3).capacity("semantic")
        5000
    """

    short_term_capacity: int = 100  # recent memories
    long_term_capacity: int = 10000  # consolidated memories
    episodic_capacity: int = 5000  # specific experiences
    semantic_capacity: int = 5000  # prototypes (general knowledge)
    top_k_retrieve: int = 5
    similarity_threshold: float = 0.7  # minimum cosine
    consolidation_interval: int = 1000  # storing steps between consolidations (0: only on demand)
    consolidation_threshold: float = 0.8  # importance needed to move short -> long term
    enable_pruning: bool = True
    prune_interval: int = 5000  # storing steps between prunings (0: only on demand)
    min_importance: float = 0.1  # pruning keeps entries at or above this
    use_faiss: bool = False  # FAISS index (faiss-cpu) instead of exact torch search
    importance_half_life: float = 2000.0  # steps for i0 to halve
    access_gain: float = 0.1  # importance added per ln(1 + accesses)
    semantic_merge_threshold: float = 0.9  # cosine to fold into an existing prototype
    candidate_slack: int = 8  # extra candidates asked from the index before exact re-scoring

    def __post_init__(self):
        for name in ("short_term_capacity", "long_term_capacity", "episodic_capacity", "semantic_capacity", "top_k_retrieve"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("consolidation_interval", "prune_interval", "candidate_slack"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not -1.0 <= self.similarity_threshold <= 1.0:
            raise ConfigError(f"similarity_threshold is a cosine in [-1, 1], got {self.similarity_threshold}")
        for name in ("consolidation_threshold", "min_importance"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.importance_half_life <= 0 or self.access_gain < 0:
            raise ConfigError("expected importance_half_life > 0 and access_gain >= 0")

    def capacity(self, tier: str) -> int:
        return getattr(self, f"{tier}_capacity")


def importance(i0: torch.Tensor, created: torch.Tensor, access: torch.Tensor, clock: float, config: ExpertMemoryConfig) -> torch.Tensor:
    """Importance in [0, 1] now (see the module docstring); all arguments (n,). The one quality score of
    :func:`memrec.memory.transitions.quality`, as :meth:`QualityConfig.importance` sets it.

    Example:
        >>> cfg = ExpertMemoryConfig(importance_half_life=10.0, access_gain=0.1)
        >>> [round(v, 3) for v in importance(torch.tensor([0.8, 0.8]), torch.tensor([0.0, 0.0]), torch.tensor([0.0, 3.0]), 10.0, cfg).tolist()]
        [0.4, 0.539]
    """
    score = QualityConfig.importance(config.importance_half_life, config.access_gain)
    return quality(i0, clock - created, access, torch.zeros_like(access), score)


@dataclass
class Recall:
    """What a retrieval returns for ``Q`` queries and ``k`` slots; invalid slots are zero."""

    keys: torch.Tensor  # (Q, k, dk) normalised keys, no gradient
    values: torch.Tensor  # (Q, k, dv) stored values (item-bearing slots resolved by the caller)
    items: torch.Tensor  # (Q, k) item index or -1
    scores: torch.Tensor  # (Q, k) cosine, -inf where invalid
    valid: torch.Tensor  # (Q, k) bool
    where: list = field(default_factory=list)  # (tier number, slot mask (Q, k), rows (Q, k)) for access counts

    @property
    def count(self) -> int:
        return int(self.valid.sum())


class MemoryTier:
    """Entries of one tier: keys in a vector index, the other columns as tensors in the index's order."""

    def __init__(self, capacity: int, key_dim: int, value_dim: int, backend: str):
        self.capacity, self.key_dim, self.value_dim, self.backend = capacity, key_dim, value_dim, backend
        self.clear()

    def clear(self) -> None:
        self.index = make_index(self.key_dim, "cosine", self.backend, expected_size=self.capacity)
        self.columns = {
            "values": GrowingRows(torch.zeros(0, self.value_dim)),  # (n, dv)
            "items": GrowingRows(torch.zeros(0, dtype=torch.int64)),  # (n,) -1: no item
            "importance": GrowingRows(torch.zeros(0)),  # (n,) i0
            "created": GrowingRows(torch.zeros(0)),  # (n,) step
            "access": GrowingRows(torch.zeros(0)),  # (n,) retrievals
            "owner": GrowingRows(torch.zeros(0, dtype=torch.int64)),  # (n,) -1: nobody
            "upto": GrowingRows(torch.zeros(0, dtype=torch.int64)),  # (n,) position of the owner's latest item inside
            "count": GrowingRows(torch.zeros(0)),  # (n,) entries folded in (semantic prototypes)
        }
        self.meta: list[str | None] = []

    values = property(lambda self: self.columns["values"].data)
    items = property(lambda self: self.columns["items"].data)
    importance = property(lambda self: self.columns["importance"].data)
    created = property(lambda self: self.columns["created"].data)
    access = property(lambda self: self.columns["access"].data)  # a view: index_add_ on it counts in place
    owner = property(lambda self: self.columns["owner"].data)
    upto = property(lambda self: self.columns["upto"].data)
    count = property(lambda self: self.columns["count"].data)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def keys(self) -> torch.Tensor:  # (n, dk), unit length
        return self.index.vectors

    def add(self, keys: torch.Tensor, columns: dict[str, torch.Tensor], meta: list[str | None]) -> None:
        self.index.add(keys)
        for name in COLUMNS:
            self.columns[name].append(columns[name])
        self.meta.extend(meta)

    def take(self, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str | None]]:
        """Remove the entries where ``mask`` (n,) is True and return them (keys, columns, metadata)."""
        keys = self.keys[mask]
        columns = {name: getattr(self, name)[mask] for name in COLUMNS}
        meta = [m for m, drop in zip(self.meta, mask.tolist()) if drop]
        self.index.remove(self.index.ids[mask])
        for name in COLUMNS:
            self.columns[name].replace(getattr(self, name)[~mask])
        self.meta = [m for m, drop in zip(self.meta, mask.tolist()) if not drop]
        return keys, columns, meta

    def rows_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Row of each index id (ids ascend with the rows); -1 stays -1."""
        rows = torch.searchsorted(self.index.ids, ids.clamp(min=0))
        return rows.masked_fill(ids < 0, -1)

    def hidden_count(self, owners: torch.Tensor | None, positions: torch.Tensor | None) -> int:
        """Most entries any query of the batch may not see: how many extra candidates to fetch."""
        if owners is None or not len(self) or not (self.owner >= 0).any():
            return 0
        top = int(max(owners.max(), self.owner.max())) + 1
        first = torch.full((top,), torch.iinfo(torch.int64).max, dtype=torch.int64)
        known = owners >= 0
        first.scatter_reduce_(0, owners[known], positions[known], "amin")  # earliest position per owner
        mine = self.owner >= 0
        hidden = self.upto[mine] > first[self.owner[mine]]
        return int(torch.bincount(self.owner[mine][hidden], minlength=1).max()) if hidden.any() else 0

    def state(self) -> dict[str, torch.Tensor]:
        meta = json.dumps(self.meta).encode()
        return {"index": self.index.state_dict(), **{n: getattr(self, n).clone() for n in COLUMNS},
                "meta": torch.frombuffer(bytearray(meta), dtype=torch.uint8).clone()}

    def load(self, state: dict) -> None:
        self.clear()
        self.index.load_state_dict(state["index"])
        for name in COLUMNS:
            self.columns[name].replace(state[name].clone())
        self.meta = json.loads(bytes(state["meta"].tolist()).decode())
        if not len(self.index) == len(self.values) == len(self.meta):
            raise MemoryInputError(f"stored memory tier is inconsistent: {len(self.index)} keys, {len(self.values)} values, {len(self.meta)} metadata")


def encode_meta(metadata) -> str | None:
    """Metadata as JSON (tensors become lists), so it is saved with the model as bytes."""
    if metadata is None:
        return None
    return json.dumps(metadata, default=lambda o: o.tolist() if isinstance(o, torch.Tensor) else str(o))


class ExpertMemory(nn.Module):
    """The four memory tiers of one expert; saved with the model's ``state_dict`` (extra state).

    Example:
        >>> mem = ExpertMemory(key_dim=4, value_dim=2, config=ExpertMemoryConfig(similarity_threshold=0.5))
        >>> mem.store(torch.eye(4)[:2], torch.tensor([[1.0, 0.0], [0.0, 1.0]]), importance=0.9)
        2
        >>> recall = mem.search(torch.tensor([[1.0, 0.1, 0.0, 0.0]]), k=2)
        >>> recall.valid.tolist(), recall.values[0, 0].tolist()  # only the first key is similar enough
        ([[True, False]], [1.0, 0.0])
        >>> mem.consolidate()["moved"], mem.statistics()["long_term"], mem.statistics()["semantic"]
        (2, 2, 2)
    """

    def __init__(self, key_dim: int, value_dim: int, config: ExpertMemoryConfig | None = None):
        super().__init__()
        if key_dim < 1 or value_dim < 1:
            raise ConfigError(f"expected key_dim >= 1 and value_dim >= 1, got {key_dim} and {value_dim}")
        self.key_dim, self.value_dim = key_dim, value_dim
        self.config = config or ExpertMemoryConfig()
        backend = "faiss" if self.config.use_faiss else "torch"
        self.tiers = {t: MemoryTier(self.config.capacity(t), key_dim, value_dim, backend) for t in TIERS}
        self.clock = 0  # storing steps so far (the age unit)

    def __len__(self) -> int:
        return sum(len(t) for t in self.tiers.values())

    def tick(self) -> None:
        self.clock += 1

    # --- writing -----------------------------------------------------------------------------

    def store(self, keys: torch.Tensor, values: torch.Tensor, importance: float | torch.Tensor = 0.5, tier: str = "short_term",
              items: torch.Tensor | None = None, owners: torch.Tensor | None = None, upto: torch.Tensor | None = None,
              metadata: list | None = None) -> int:
        """Store ``n`` entries: keys (n, dk), values (n, dv), importance float or (n,) in [0, 1],
        items / owners / upto (n,) int64 or None. Returns how many were stored."""
        if tier not in TIERS:
            raise MemoryInputError(f"tier must be one of {TIERS}, got {tier!r}")
        keys = checked(keys, self.key_dim, "memory keys")
        values = checked(values, self.value_dim, "memory values")
        n = len(keys)
        if len(values) != n:
            raise MemoryInputError(f"got {n} keys but {len(values)} values")
        i0 = torch.as_tensor(importance, dtype=torch.float32).expand(n).clone() if not isinstance(importance, torch.Tensor) or importance.dim() == 0 else importance.detach().float()
        if i0.shape != (n,) or not torch.isfinite(i0).all() or (i0 < 0).any() or (i0 > 1).any():
            raise MemoryInputError(f"importance must be a number or ({n},) values in [0, 1]")
        if metadata is not None and len(metadata) != n:
            raise MemoryInputError(f"got {n} keys but {len(metadata)} metadata entries")

        def column(x, fill):
            if x is None:
                return torch.full((n,), fill, dtype=torch.int64)
            x = torch.as_tensor(x, dtype=torch.int64).flatten()
            if x.shape != (n,):
                raise MemoryInputError(f"expected ({n},) items / owners / positions, got {tuple(x.shape)}")
            return x

        columns = {"values": values, "items": column(items, -1), "importance": i0, "created": torch.full((n,), float(self.clock)),
                   "access": torch.zeros(n), "owner": column(owners, -1), "upto": column(upto, -1), "count": torch.ones(n)}
        self._put(tier, keys, columns, [encode_meta(m) for m in metadata] if metadata is not None else [None] * n)
        return n

    def _put(self, tier: str, keys, columns, meta) -> None:
        target = self.tiers[tier]
        target.add(keys, columns, meta)
        over = len(target) - target.capacity
        if over <= 0:
            return
        if tier == "short_term":  # first in, first out: the oldest are consolidated or forgotten
            oldest = torch.arange(len(target)) < over
            keys, columns, meta = target.take(oldest)
            keep = self._importance(columns) >= self.config.consolidation_threshold
            if keep.any():
                self._consolidate(keys[keep], {n: c[keep] for n, c in columns.items()}, [m for m, k in zip(meta, keep.tolist()) if k])
        else:  # evict the least important
            now = self._importance(self._columns(target))
            drop = torch.zeros(len(target), dtype=torch.bool)
            drop[now.argsort(stable=True)[:over]] = True
            target.take(drop)

    def _columns(self, tier: MemoryTier) -> dict[str, torch.Tensor]:
        return {name: getattr(tier, name) for name in COLUMNS}

    def _importance(self, columns) -> torch.Tensor:
        return importance(columns["importance"], columns["created"], columns["access"], float(self.clock), self.config)

    def _consolidate(self, keys, columns, meta) -> dict[str, int]:
        """Put entries into long-term and fold them into the semantic prototypes."""
        self._put("long_term", keys, columns, meta)
        semantic = self.tiers["semantic"]
        merged = torch.zeros(len(keys), dtype=torch.bool)
        if len(semantic):
            same_owner = columns["owner"][:, None] == semantic.owner[None, :]  # (m, n): never mix owners
            scores, pos = exact_search(keys, semantic.keys, 1, valid=same_owner)  # (m, 1)
            merged = scores[:, 0] >= self.config.semantic_merge_threshold
        if merged.any():
            targets = pos[merged, 0]
            hit = torch.zeros(len(semantic), dtype=torch.bool)
            hit[targets] = True
            old_keys, old, old_meta = semantic.take(hit)  # re-added with the merged key (the index cannot edit)
            slot = torch.cumsum(hit.long(), 0)[targets] - 1  # which taken prototype each merging entry joins
            n_in = torch.zeros(len(old_keys)).index_add_(0, slot, torch.ones(len(slot)))
            total = old["count"] + n_in
            new_keys = (old_keys * old["count"][:, None] + torch.zeros_like(old_keys).index_add_(0, slot, keys[merged])) / total[:, None]
            old["values"] = (old["values"] * old["count"][:, None] + torch.zeros_like(old["values"]).index_add_(0, slot, columns["values"][merged])) / total[:, None]
            old["importance"] = torch.maximum(old["importance"], torch.zeros_like(total).scatter_reduce_(0, slot, columns["importance"][merged], "amax"))
            old["upto"] = torch.maximum(old["upto"], torch.zeros_like(old["upto"]).scatter_reduce_(0, slot, columns["upto"][merged], "amax", include_self=False))
            old["created"] = torch.full_like(total, float(self.clock))
            old["items"] = torch.full_like(old["items"], -1)  # a prototype recalls a mean vector, not one item
            old["count"] = total
            self._put("semantic", new_keys, old, old_meta)
        fresh = ~merged
        if fresh.any():
            self._put("semantic", keys[fresh], {n: c[fresh] for n, c in columns.items()}, [m for m, f in zip(meta, fresh.tolist()) if f])
        return {"moved": len(keys), "merged": int(merged.sum()), "new_prototypes": int(fresh.sum())}

    def consolidate(self) -> dict[str, int]:
        """Move short-term entries with importance >= ``consolidation_threshold`` to long-term and semantic."""
        short = self.tiers["short_term"]
        move = self._importance(self._columns(short)) >= self.config.consolidation_threshold
        if not move.any():
            return {"moved": 0, "merged": 0, "new_prototypes": 0}
        return self._consolidate(*short.take(move))

    def prune(self, min_importance: float | None = None) -> dict[str, int]:
        """Drop entries of every tier whose importance is below ``min_importance`` (default: the config's)."""
        floor = self.config.min_importance if min_importance is None else min_importance
        removed = {}
        for name, tier in self.tiers.items():
            drop = self._importance(self._columns(tier)) < floor
            removed[name] = int(drop.sum())
            if drop.any():
                tier.take(drop)
        return removed

    def clear(self) -> None:
        for tier in self.tiers.values():
            tier.clear()

    # --- reading -----------------------------------------------------------------------------

    def search(self, queries: torch.Tensor, k: int | None = None) -> Recall:
        """Public retrieval for inspection: like :meth:`retrieve`, but an empty memory is an error."""
        if not len(self):
            raise MemoryInputError("this expert holds no memories yet: store experiences first (store_experience=True or store_experience())")
        return self.retrieve(queries, k)

    def retrieve(self, queries: torch.Tensor, k: int | None = None, threshold: float | None = None,
                 owners: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> Recall:
        """The best ``k`` visible entries with cosine >= ``threshold`` for each query (Q, dk).

        owners / positions (Q,) int64: see *visibility* in the module docstring. Reads never change
        the memory (see :meth:`record_access`)."""
        k = self.config.top_k_retrieve if k is None else k
        threshold = self.config.similarity_threshold if threshold is None else threshold
        if not isinstance(k, int) or k < 1:
            raise MemoryInputError(f"k must be an integer >= 1, got {k!r}")
        q = F.normalize(checked(queries, self.key_dim, "queries"), dim=-1)  # (Q, dk)
        if owners is not None:
            owners = torch.as_tensor(owners, dtype=torch.int64)
            positions = torch.full_like(owners, -1) if positions is None else torch.as_tensor(positions, dtype=torch.int64)
            if owners.shape != (len(q),) or positions.shape != (len(q),):
                raise MemoryInputError(f"owners and positions must have shape ({len(q)},)")
        parts = []  # per tier: (tier number, rows (Q, f))
        for t, tier in enumerate(self.tiers.values()):
            if len(tier) and len(q):
                fetch = min(len(tier), k + self.config.candidate_slack + tier.hidden_count(owners, positions))
                rows = tier.rows_of(tier.index.search(q, fetch)[1]).sort(dim=1).values  # ascending rows: a fixed tie order
                parts.append((t, rows))
        if not parts:
            return self._empty(len(q), k)
        tiers = list(self.tiers.values())
        scores = torch.cat([self._scores(q, tiers[t].keys, rows) for t, rows in parts], 1)  # (Q, F)
        ok = torch.cat([rows >= 0 for _, rows in parts], 1) & (scores >= threshold)
        if owners is not None:
            ok &= torch.cat([self._visible(tiers[t], rows, owners, positions) for t, rows in parts], 1)
        order = scores.masked_fill(~ok, float("-inf")).argsort(dim=1, descending=True, stable=True)[:, :k]  # (Q, k')
        valid = ok.gather(1, order)
        tier_of = torch.cat([torch.full_like(rows, t) for t, rows in parts], 1).gather(1, order)  # (Q, k')
        rows = torch.cat([rows for _, rows in parts], 1).gather(1, order)
        recall = self._empty(len(q), order.size(1))
        recall.valid, recall.scores = valid, scores.gather(1, order).masked_fill(~valid, float("-inf"))
        for t, _ in parts:  # fill the selected slots of each tier
            mask = valid & (tier_of == t)
            recall.keys[mask], recall.values[mask], recall.items[mask] = tiers[t].keys[rows[mask]], tiers[t].values[rows[mask]], tiers[t].items[rows[mask]]
            recall.where.append((t, mask, rows))
        return self._pad(recall, k)

    @staticmethod
    def _scores(q: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Exact cosine of each query with its own candidates, row by row: (Q, dk), (n, dk), (Q, f) -> (Q, f)."""
        out = torch.empty(rows.shape)
        for start in range(0, len(q), RESCORE_CHUNK):
            part = slice(start, start + RESCORE_CHUNK)
            out[part] = (q[part, None, :] * keys[rows[part].clamp(min=0)]).sum(-1)
        return out

    @staticmethod
    def _visible(tier: MemoryTier, rows, owners, positions) -> torch.Tensor:  # (Q, f) bool
        return visible(tier.owner[rows.clamp(min=0)], tier.upto[rows.clamp(min=0)], owners[:, None], positions[:, None])

    def _empty(self, q: int, k: int) -> Recall:
        return Recall(torch.zeros(q, k, self.key_dim), torch.zeros(q, k, self.value_dim), torch.full((q, k), -1, dtype=torch.int64),
                      torch.full((q, k), float("-inf")), torch.zeros(q, k, dtype=torch.bool))

    def _pad(self, recall: Recall, k: int) -> Recall:
        short = k - recall.valid.size(1)
        if short <= 0:
            return recall
        empty = self._empty(len(recall.valid), short)
        padded = Recall(*(torch.cat([getattr(recall, n), getattr(empty, n)], 1) for n in ("keys", "values", "items", "scores", "valid")))
        padded.where = [(t, torch.cat([m, empty.valid], 1), torch.cat([r, empty.items], 1)) for t, m, r in recall.where]
        return padded

    @torch.no_grad()
    def record_access(self, recall: Recall) -> None:
        """Count one access for every entry a retrieval returned (only calls that may write memory do this)."""
        tiers = list(self.tiers.values())
        for t, mask, rows in recall.where:
            if mask.any():
                tiers[t].access.index_add_(0, rows[mask], torch.ones(int(mask.sum())))

    # --- statistics and persistence ------------------------------------------------------------

    def statistics(self) -> dict:
        counts = {name: len(tier) for name, tier in self.tiers.items()}
        now = torch.cat([self._importance(self._columns(t)) for t in self.tiers.values()])
        return {**counts, "total": sum(counts.values()), "clock": self.clock,
                "mean_importance": float(now.mean()) if len(now) else 0.0,
                "accesses": int(sum(float(t.access.sum()) for t in self.tiers.values()))}

    def get_extra_state(self) -> dict:
        return {"clock": torch.tensor(self.clock), **{name: tier.state() for name, tier in self.tiers.items()}}

    def set_extra_state(self, state: dict) -> None:
        self.clock = int(state["clock"])
        for name, tier in self.tiers.items():
            tier.load(state[name])

    def extra_repr(self) -> str:
        return f"key_dim={self.key_dim}, value_dim={self.value_dim}, entries={len(self)}"

