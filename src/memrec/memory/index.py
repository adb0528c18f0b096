"""The one vector index of memrec: exact torch search, FAISS flat, and FAISS IVF / HNSW for large sizes.

Backends (:func:`make_index`): ``"torch"`` (:class:`TorchIndex`, exact matmul + ``topk``),
``"faiss"`` (:class:`FaissIndex`, FAISS's exact flat index), ``"ivf"`` (:class:`IVFIndex`,
``IndexIVFFlat`` trained on a seeded sample, approximate) and ``"hnsw"`` (:class:`HNSWIndex`,
``IndexHNSWFlat``, approximate); the approximate ones take their parameters (``nprobe``,
``ef_search``, ...) from an :class:`ApproximateConfig`. Every index answers :meth:`TorchIndex.search`
and :meth:`TorchIndex.search_excluding` (top-k among the ids outside a range of its own per query: the
neighbour memory skips the querying user's entries with it). :class:`SearchConfig` says which backend
a memory searches through, exact below a size and approximate from it.

Every index stores ``(id, vector)`` pairs and answers top-k queries by inner product (``"ip"``) or
cosine similarity (``"cosine"``; vectors are L2-normalised on the way in). Results are padded with
id ``-1`` and score ``-inf`` where the index holds fewer than ``k`` vectors. State is plain tensors,
so an index round-trips through ``torch.save`` / ``torch.load(weights_only=True)``.

Two functions serve batched retrieval in models, where each row has its own small candidate set
(per-user memory banks): :func:`exact_search` and :func:`select_topk`. They are the same exact
search as :class:`TorchIndex`, written for ``(B, Q, n)`` tensors with masks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from memrec.errors import MemrecError

METRICS = ("ip", "cosine")
BACKENDS = ("auto", "torch", "faiss", "ivf", "hnsw")
APPROXIMATE = ("ivf", "hnsw")
FAISS_THRESHOLD = 100_000  # "auto" picks FAISS from this many vectors on, when it is installed
APPROXIMATE_THRESHOLD = 1_000_000  # SearchConfig "auto" searches approximately from this many vectors on
EXACT_CHUNK = 1 << 27  # exact search scores at most this many (query, vector) pairs at a time (512 MiB of float32)


class VectorIndexError(MemrecError, ValueError):
    """Bad input to a vector index: wrong shapes, NaN vectors, duplicate or unknown ids."""


class FaissMissingError(MemrecError, ImportError):
    """FAISS was asked for but is not installed."""


@dataclass(frozen=True)
class ApproximateConfig:
    """Parameters of the approximate indexes: IVF (``nlist``, ``nprobe``, ``train_size``) and HNSW
    (``m``, ``ef_construction``, ``ef_search``). Larger ``nprobe`` / ``ef_search``: higher recall, fewer
    queries per second (see ``benchmarks/index_recall.py``).

    Example:
        >>> ApproximateConfig(nprobe=32).lists(1_000_000), ApproximateConfig().training_size(1_000_000)
        (1000, 64000)
        >>> ApproximateConfig(ef_search=0)
        Traceback (most recent call last):
        ...
        memrec.memory.index.VectorIndexError: ApproximateConfig: expected nlist >= 0, nprobe >= 1, train_size >= 0, m >= 2, ef_construction >= 1, ef_search >= 1 and seed >= 0, got nlist=0 nprobe=16 train_size=0 m=16 ef_construction=40 ef_search=0 seed=0
    """

    nlist: int = 0  # IVF cells; 0: round(sqrt(n)), at most n // 39 (FAISS's fewest training points per cell)
    nprobe: int = 16  # IVF cells visited per query
    train_size: int = 0  # vectors IVF's k-means is trained on, a seeded sample; 0: 64 per cell
    m: int = 16  # HNSW links per node
    ef_construction: int = 40  # HNSW candidate list while building
    ef_search: int = 128  # HNSW candidate list per query; raised to the number of results asked for
    seed: int = 0  # the IVF training sample

    def __post_init__(self):
        if not (self.nlist >= 0 and self.nprobe >= 1 and self.train_size >= 0 and self.m >= 2 and self.ef_construction >= 1
                and self.ef_search >= 1 and self.seed >= 0):
            shown = " ".join(f"{name}={getattr(self, name)}" for name in self.__dataclass_fields__)
            raise VectorIndexError(f"ApproximateConfig: expected nlist >= 0, nprobe >= 1, train_size >= 0, m >= 2, ef_construction >= 1, "
                                   f"ef_search >= 1 and seed >= 0, got {shown}")

    def lists(self, n: int) -> int:
        """IVF cells for ``n`` vectors."""
        return max(1, min(self.nlist or round(math.sqrt(n)), n // 39))

    def training_size(self, n: int) -> int:
        """Vectors IVF trains on, out of ``n``."""
        return min(n, self.train_size or 64 * self.lists(n))


@dataclass(frozen=True)
class SearchConfig:
    """Which index a memory searches through: ``backend`` ``"auto"`` is exact torch search below
    ``approximate_from`` vectors and ``approximate`` (``"ivf"`` or ``"hnsw"``) from there when FAISS is
    installed (exact torch search without it); or one of
    ``"torch"``, ``"faiss"`` (both exact), ``"ivf"``, ``"hnsw"``, whatever the size.

    The defaults follow ``benchmarks/results/index-recall.json`` (the neighbour memory of a SASRec on
    Beauty, one thread): exact search answers about 1,200 queries a second over the real 131,413 entries
    but 143 at 10^6 and 10 at 10^7 (copies of the real keys), where IVF at ``nprobe`` 16 answers 1,800
    and 680 with recall@128 0.93 and 0.99. IVF rather than HNSW: on these keys it has the higher recall
    at equal speed, builds in 4 s instead of 58 s at 10^6 (90 s instead of 20 min at 10^7), and HNSW
    (m 16) falls to recall 0.56-0.63 at 10^7. Searched through IVF at ``nprobe`` 16, the real memory
    changes Beauty's test NDCG@10 by -0.0002 (95% interval [-0.0005, +0.0000]; exact 0.0527).

    Example:
        >>> SearchConfig().choose(131_413), SearchConfig(backend="hnsw").choose(10)
        ('torch', 'hnsw')
    """

    backend: str = "auto"
    approximate_from: int = APPROXIMATE_THRESHOLD
    approximate: str = "ivf"
    params: ApproximateConfig = field(default_factory=ApproximateConfig)

    def __post_init__(self):
        if self.backend not in BACKENDS or self.approximate not in APPROXIMATE or self.approximate_from < 1:
            raise VectorIndexError(f"SearchConfig: expected backend in {BACKENDS}, approximate in {APPROXIMATE} and approximate_from >= 1, "
                                   f"got {self.backend!r}, {self.approximate!r}, {self.approximate_from}")
        if not isinstance(self.params, ApproximateConfig):
            raise VectorIndexError(f"SearchConfig: params must be an ApproximateConfig, got {type(self.params).__name__}")

    def choose(self, n: int) -> str:
        """The backend for ``n`` vectors."""
        if self.backend == "auto":
            return self.approximate if n >= self.approximate_from and faiss_available() else "torch"
        return self.backend


@runtime_checkable
class VectorIndex(Protocol):
    """What every index offers. ``vectors (n, d)``, ``ids (n,)`` int64, ``queries (q, d)``.

    Example:
        >>> isinstance(make_index(4), VectorIndex)
        True
    """

    dim: int
    metric: str

    def add(self, vectors: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor: ...
    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]: ...
    def remove(self, ids: torch.Tensor) -> int: ...
    def __len__(self) -> int: ...
    def state_dict(self) -> dict[str, torch.Tensor]: ...


def check_vectors(vectors: torch.Tensor, dim: int, what: str = "vectors") -> torch.Tensor:
    """Refuse anything but finite float ``(n, dim)`` tensors, with a message that says why."""
    if not isinstance(vectors, torch.Tensor) or vectors.dim() != 2 or vectors.size(1) != dim:
        shape = tuple(vectors.shape) if isinstance(vectors, torch.Tensor) else type(vectors).__name__
        raise VectorIndexError(f"{what} must have shape (n, {dim}), got {shape}")
    if not vectors.is_floating_point():
        raise VectorIndexError(f"{what} must be a float tensor, got {vectors.dtype}")
    if not torch.isfinite(vectors).all():
        raise VectorIndexError(f"{what} contain NaN or infinite values")
    return vectors.detach().float()


def exact_search(queries: torch.Tensor, keys: torch.Tensor, k: int, metric: str = "ip", valid: torch.Tensor | None = None,
                 stable: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k by matmul: queries (..., q, d), keys (..., n, d), valid (..., n) or (..., q, n) bool.

    Returns scores and positions (..., q, k'), k' = min(k, n); masked slots score ``-inf`` with position -1.
    ``stable``: equal scores keep the lower position first (a stable sort instead of ``topk``).

    Example:
        >>> keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
        >>> exact_search(torch.tensor([[1.0, 0.1]]), keys, k=2)[1].tolist()
        [[0, 2]]
    """
    if metric not in METRICS:
        raise VectorIndexError(f"metric must be one of {METRICS}, got {metric!r}")
    if metric == "cosine":
        queries, keys = F.normalize(queries, dim=-1), F.normalize(keys, dim=-1)
    scores = queries @ keys.transpose(-1, -2)  # (..., q, n)
    if valid is not None:
        scores = scores.masked_fill(~(valid if valid.dim() == scores.dim() else valid.unsqueeze(-2)), float("-inf"))
    if stable:
        order = scores.argsort(dim=-1, descending=True, stable=True)[..., : min(k, scores.size(-1))]
        values = scores.gather(-1, order)
        return values, order.masked_fill(torch.isinf(values), -1)
    top = scores.topk(min(k, scores.size(-1)), dim=-1)
    return top.values, top.indices.masked_fill(torch.isinf(top.values), -1)


def select_topk(scores: torch.Tensor, valid: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """Mask of the ``k`` best valid candidates per row, where ``k`` may differ per row.

    scores (..., n), valid (..., n) bool, k int or (...) int64 -> (..., n) bool. Ties keep the lower
    position. A row with fewer than ``k`` valid candidates selects all of them.

    Example:
        >>> select_topk(torch.tensor([[0.1, 0.9, 0.5], [3.0, 2.0, 1.0]]), torch.ones(2, 3, dtype=torch.bool), torch.tensor([1, 2])).tolist()
        [[False, True, False], [True, True, False]]
    """
    order = scores.masked_fill(~valid, float("-inf")).argsort(dim=-1, descending=True, stable=True)
    rank = order.argsort(dim=-1)  # (..., n): 0 = best
    k = torch.as_tensor(k, device=scores.device)
    return valid & (rank < k.unsqueeze(-1) if k.dim() else rank < k)


class GrowingRows:
    """A tensor that grows at the end: appending m rows costs O(m) amortised, because the buffer
    doubles when it is full (re-concatenating would make n single appends cost O(n^2)).

    Example:
        >>> rows = GrowingRows(torch.zeros(0, 2))
        >>> for i in range(3):
        ...     rows.append(torch.full((1, 2), float(i)))
        >>> rows.data.tolist(), len(rows)
        ([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], 3)
    """

    def __init__(self, rows: torch.Tensor):
        self.replace(rows)

    def __len__(self) -> int:
        return self._size

    @property
    def data(self) -> torch.Tensor:  # (n, ...): a view, so in-place updates reach the buffer
        return self._buffer[: self._size]

    def replace(self, rows: torch.Tensor) -> None:
        """Hold exactly ``rows`` (n, ...) from now on."""
        self._buffer, self._size = rows, len(rows)

    def append(self, rows: torch.Tensor) -> None:
        size = self._size + len(rows)
        if size > len(self._buffer):
            grown = self._buffer.new_empty((max(size, 2 * len(self._buffer), 64), *self._buffer.shape[1:]))
            grown[: self._size] = self.data
            self._buffer = grown
        self._buffer[self._size : size] = rows
        self._size = size


class TorchIndex:
    """Exact search with a matmul and ``topk``: the default, and exact for every size.

    Example:
        >>> index = TorchIndex(dim=2, metric="cosine")
        >>> index.add(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([10, 20])).tolist()
        [10, 20]
        >>> scores, ids = index.search(torch.tensor([[0.0, 1.0]]), k=3)
        >>> ids.tolist(), scores[0, 0].item()
        ([[20, 10, -1]], 1.0)
        >>> index.search_excluding(torch.tensor([[0.0, 1.0]]), k=3, lo=torch.tensor([15]), hi=torch.tensor([25]))[1].tolist()
        [[10, -1]]
        >>> index.remove(torch.tensor([20])), len(index)
        (1, 1)
    """

    backend = "torch"

    def __init__(self, dim: int, metric: str = "ip"):
        if dim < 1:
            raise VectorIndexError(f"dim must be >= 1, got {dim}")
        if metric not in METRICS:
            raise VectorIndexError(f"metric must be one of {METRICS}, got {metric!r}")
        self.dim, self.metric = dim, metric
        self._next_id = 0
        self._vectors = GrowingRows(torch.zeros(0, dim))
        self._ids = GrowingRows(torch.zeros(0, dtype=torch.int64))
        self._id_set: set[int] | None = set()  # built when an add with given ids needs it (10^7 ids make a large set)
        self._order: torch.Tensor | None = None  # the ids sorted, when asked for (None: not known yet)
        self._in_order = True  # whether the stored ids ascend (known with _order)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def vectors(self) -> torch.Tensor:  # (n, d), normalised for cosine
        return self._vectors.data

    @property
    def ids(self) -> torch.Tensor:  # (n,)
        return self._ids.data

    def _store(self, vectors: torch.Tensor, ids: torch.Tensor) -> None:
        """Hold exactly these vectors (n, d) and ids (n,), e.g. after a removal or a load (no copy)."""
        self._vectors.replace(vectors)
        self._ids.replace(ids)
        self._id_set, self._order = None, None

    def _known_ids(self) -> set[int]:
        if self._id_set is None:
            self._id_set = set(self.ids.tolist())
        return self._id_set

    def _sorted_ids(self) -> torch.Tensor:
        """The stored ids in ascending order."""
        if self._order is None:
            ids = self.ids
            self._in_order = bool((ids[1:] > ids[:-1]).all())
            self._order = ids if self._in_order else ids.sort().values
        return self._order

    def add(self, vectors: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Store vectors (n, d) under ``ids`` (n,) or fresh ids; returns the ids."""
        vectors = check_vectors(vectors, self.dim)
        fresh = ids is None
        if fresh:
            ids = torch.arange(self._next_id, self._next_id + len(vectors))
        ids = torch.as_tensor(ids, dtype=torch.int64).flatten()
        if len(ids) != len(vectors):
            raise VectorIndexError(f"got {len(vectors)} vectors but {len(ids)} ids")
        if not fresh:  # fresh ids are above every stored one
            if (ids < 0).any():
                raise VectorIndexError("ids must be >= 0 (-1 marks an empty result slot)")
            new = ids.tolist()
            if len(set(new)) != len(new) or not self._known_ids().isdisjoint(new):
                raise VectorIndexError("ids must be unique: remove an id before adding it again")
        if self.metric == "cosine":
            vectors = F.normalize(vectors, dim=-1)
        self._vectors.append(vectors)
        self._ids.append(ids)
        if self._id_set is not None:
            self._id_set.update(ids.tolist())
        self._order = None
        self._next_id = max(self._next_id, int(ids.max()) + 1) if len(ids) else self._next_id
        self._added(vectors, ids)
        return ids

    def hold(self, vectors: torch.Tensor) -> "TorchIndex":
        """Hold exactly ``vectors`` (n, d) under ids 0..n-1 (the row numbers), replacing what was held;
        the tensor itself is kept, not copied, where the metric is ``"ip"``. Returns the index."""
        vectors = check_vectors(vectors, self.dim)
        self._reset()
        self._store(F.normalize(vectors, dim=-1) if self.metric == "cosine" else vectors, torch.arange(len(vectors)))
        self._next_id = len(vectors)
        self._added(self.vectors, self.ids)
        return self

    def _queries(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        queries = check_vectors(queries, self.dim, "queries")
        if k < 1:
            raise VectorIndexError(f"k must be >= 1, got {k}")
        return F.normalize(queries, dim=-1) if self.metric == "cosine" else queries  # stored vectors are normalised already

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k scores and ids for each query: (q, d) -> (q, k), (q, k)."""
        queries = self._queries(queries, k)
        scores, ids = self._search(queries, k)
        if scores.size(1) < k:  # pad to k columns
            pad = k - scores.size(1)
            scores = torch.cat([scores, scores.new_full((len(scores), pad), float("-inf"))], 1)
            ids = torch.cat([ids, ids.new_full((len(ids), pad), -1)], 1)
        return scores, ids

    def search_excluding(self, queries: torch.Tensor, k: int, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k among the ids outside ``[lo_i, hi_i)`` for each query i: (q, d), (q,), (q,) -> scores
        and ids (q, k'), k' = min(k, len(self)); slots with nothing left score ``-inf`` with id -1.

        Exact indexes mask the range (torch) or ask for ``k`` plus the number of ids in the range and
        drop those (FAISS); approximate ones do the latter, so they never return an id in the range.
        """
        queries = self._queries(queries, k)
        lo, hi = (torch.as_tensor(x, dtype=torch.int64).flatten() for x in (lo, hi))
        if not len(lo) == len(hi) == len(queries):
            raise VectorIndexError(f"expected one id range per query ({len(queries)}), got {len(lo)} and {len(hi)} bounds")
        k = min(k, len(self))
        if k == 0:
            return queries.new_zeros(len(queries), 0), torch.zeros(len(queries), 0, dtype=torch.int64)
        return self._search_excluding(queries, k, lo, hi)

    def _search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not len(self):
            return queries.new_zeros(len(queries), 0), torch.zeros(len(queries), 0, dtype=torch.int64)
        scores, pos = exact_search(queries, self.vectors, k, "ip")
        return scores, self.ids[pos]

    def _search_excluding(self, queries: torch.Tensor, k: int, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact: score every vector, mask the range, ``topk``; at most ``EXACT_CHUNK`` scores at a time."""
        parts = max(1, math.ceil(len(queries) * len(self) / EXACT_CHUNK))
        rows = max(1, math.ceil(len(queries) / parts))
        found = [self._exact_excluding(queries[s:s + rows], k, lo[s:s + rows], hi[s:s + rows]) for s in range(0, len(queries), rows)]
        if len(found) == 1:
            return found[0]
        return torch.cat([f[0] for f in found]), torch.cat([f[1] for f in found])

    def _exact_excluding(self, queries: torch.Tensor, k: int, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = queries @ self.vectors.T  # (q, n)
        ordered = self._sorted_ids()
        if self._in_order:  # ids stored in order: each range is one run of positions
            starts = torch.searchsorted(ordered, lo)
            counts = (torch.searchsorted(ordered, hi) - starts).clamp(min=0)
            rows = torch.repeat_interleave(torch.arange(len(queries)), counts)
            scores[rows, torch.repeat_interleave(starts - counts.cumsum(0) + counts, counts) + torch.arange(int(counts.sum()))] = float("-inf")
        else:
            scores.masked_fill_((self.ids >= lo.unsqueeze(1)) & (self.ids < hi.unsqueeze(1)), float("-inf"))
        top = scores.topk(k, dim=1)
        return top.values, self.ids[top.indices].masked_fill(torch.isinf(top.values), -1)

    def _fetch_excluding(self, queries: torch.Tensor, k: int, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ask :meth:`_search` for ``k`` plus the most ids any query's range holds, drop the ids in range, keep ``k``."""
        ordered = self._sorted_ids()
        inside = (torch.searchsorted(ordered, hi) - torch.searchsorted(ordered, lo)).clamp(min=0)
        scores, ids = self._search(queries, min(len(self), k + int(inside.max())))
        keep = (ids >= 0) & ~((ids >= lo.unsqueeze(1)) & (ids < hi.unsqueeze(1)))
        first = (~keep).to(torch.uint8).argsort(dim=1, stable=True)[:, :k]  # the kept ones, best first
        keep, scores, ids = keep.gather(1, first), scores.gather(1, first), ids.gather(1, first)
        return scores.masked_fill(~keep, float("-inf")), ids.masked_fill(~keep, -1)

    def remove(self, ids: torch.Tensor) -> int:
        """Drop the given ids (unknown ids are ignored); returns how many were removed."""
        drop = torch.isin(self.ids, torch.as_tensor(ids, dtype=torch.int64).flatten())
        self._store(self.vectors[~drop], self.ids[~drop])
        self._removed(drop)
        return int(drop.sum())

    def build(self) -> "TorchIndex":
        """Make the index ready to search (IVF trains here; the others are ready as vectors come). Returns the index."""
        return self

    def _added(self, vectors: torch.Tensor, ids: torch.Tensor) -> None:
        pass

    def _removed(self, drop: torch.Tensor) -> None:
        pass

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"vectors": self.vectors.clone(), "ids": self.ids.clone(), "next_id": torch.tensor(self._next_id),
                "cosine": torch.tensor(self.metric == "cosine")}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        vectors = check_vectors(state["vectors"], self.dim, "stored vectors")
        if bool(state["cosine"]) != (self.metric == "cosine"):
            raise VectorIndexError(f"the stored index was not built with metric {self.metric!r}")
        ids = state["ids"].to(torch.int64)
        if len(ids) != len(vectors) or len(torch.unique(ids)) != len(ids):
            raise VectorIndexError(f"the stored index has {len(vectors)} vectors and {len(ids)} ids, which must be unique")
        self._reset()
        self._store(vectors.clone(), ids.clone())
        self._added(self.vectors, self.ids)
        self._next_id = int(state["next_id"])

    def _reset(self) -> None:
        pass

    def save(self, path: str | Path) -> None:
        torch.save({"dim": torch.tensor(self.dim), **self.state_dict()}, path)


class FaissIndex(TorchIndex):
    """The same index answered by FAISS (``IndexFlatIP`` under an id map): exact, for large indexes.

    The vectors are also kept as a tensor, so saving, loading and removal work as for :class:`TorchIndex`.

    Example:
        >>> index = FaissIndex(dim=2)  # needs faiss-cpu (the ``faiss`` extra)
        >>> index.add(torch.eye(2))
        tensor([0, 1])
        >>> index.search(torch.tensor([[0.0, 1.0]]), k=1)[1].tolist()
        [[1]]
    """

    backend = "faiss"

    def __init__(self, dim: int, metric: str = "ip"):
        try:
            import faiss
        except ImportError:
            raise FaissMissingError(f"the {self.backend!r} backend needs the faiss package: pip install 'memrec[faiss]' (faiss-cpu)") from None
        super().__init__(dim, metric)
        self._faiss = faiss
        self._reset()

    def _reset(self) -> None:
        self._index = self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(self.dim))

    def _added(self, vectors: torch.Tensor, ids: torch.Tensor) -> None:
        if len(ids):
            self._index.add_with_ids(vectors.contiguous().numpy(), ids.numpy())

    def _removed(self, drop: torch.Tensor) -> None:
        self._reset()
        self._added(self.vectors, self.ids)  # rebuilding keeps the flat index exact and simple

    def _search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        scores, ids = self._index.search(queries.contiguous().numpy(), min(k, max(len(self), 1)))
        scores, ids = torch.from_numpy(scores), torch.from_numpy(ids).to(torch.int64)
        return scores.masked_fill(ids < 0, float("-inf")), ids

    def _search_excluding(self, queries: torch.Tensor, k: int, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._fetch_excluding(queries, k, lo, hi)


class IVFIndex(FaissIndex):
    """Approximate: FAISS ``IndexIVFFlat``, its ``nlist`` cells found by k-means on a seeded sample of the
    vectors when the index is first searched (or :meth:`build` is called); a query scans the ``nprobe``
    cells closest to it. Vectors added later go into the trained cells; :meth:`build` trains again.
    ``nprobe`` (and HNSW's ``ef_search``) are read at each search, so ``index.params`` may be replaced.

    Example:
        >>> index = IVFIndex(dim=2, params=ApproximateConfig(nprobe=1))
        >>> index.add(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]]))
        tensor([0, 1, 2])
        >>> index.search(torch.tensor([[1.0, 0.0]]), k=1)[1].tolist()
        [[0]]
    """

    backend = "ivf"

    def __init__(self, dim: int, metric: str = "ip", params: ApproximateConfig | None = None):
        self.params = params or ApproximateConfig()
        super().__init__(dim, metric)

    def _reset(self) -> None:
        self._index = None  # trained at the first search

    def build(self) -> "IVFIndex":
        faiss, n = self._faiss, len(self)
        self._quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(self._quantizer, self.dim, self.params.lists(n), faiss.METRIC_INNER_PRODUCT)
        sample = torch.randperm(n, generator=torch.Generator().manual_seed(self.params.seed))[: self.params.training_size(n)].sort().values
        index.train(self.vectors[sample].contiguous().numpy() if n else self.vectors.new_zeros(1, self.dim).numpy())
        self._index = index
        FaissIndex._added(self, self.vectors, self.ids)
        return self

    def _added(self, vectors: torch.Tensor, ids: torch.Tensor) -> None:
        if self._index is not None:
            super()._added(vectors, ids)

    def _removed(self, drop: torch.Tensor) -> None:
        if self._index is not None:
            self._index.reset()  # keeps the trained cells
            super()._added(self.vectors, self.ids)

    def _search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._index is None:
            self.build()
        self._index.nprobe = min(self.params.nprobe, self._index.nlist)  # read at each search: ``index.params`` may be replaced
        return super()._search(queries, k)


class HNSWIndex(FaissIndex):
    """Approximate: FAISS ``IndexHNSWFlat`` (a graph of ``m`` links per node, built as vectors are added)
    under an id map; a query walks the graph with a candidate list of ``max(ef_search, k)``. Removal
    rebuilds the graph.

    Example:
        >>> index = HNSWIndex(dim=2)
        >>> index.add(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]]))
        tensor([0, 1, 2])
        >>> index.search(torch.tensor([[1.0, 0.0]]), k=2)[1].tolist()
        [[0, 2]]
    """

    backend = "hnsw"

    def __init__(self, dim: int, metric: str = "ip", params: ApproximateConfig | None = None):
        self.params = params or ApproximateConfig()
        super().__init__(dim, metric)

    def _reset(self) -> None:
        self._graph = self._faiss.IndexHNSWFlat(self.dim, self.params.m, self._faiss.METRIC_INNER_PRODUCT)
        self._graph.hnsw.efConstruction = self.params.ef_construction
        self._index = self._faiss.IndexIDMap2(self._graph)

    def _search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        self._graph.hnsw.efSearch = max(self.params.ef_search, k)
        return super()._search(queries, k)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def make_index(dim: int, metric: str = "ip", backend: str = "auto", expected_size: int = 0,
               params: ApproximateConfig | None = None) -> TorchIndex:
    """An index for ``dim``-dimensional vectors.

    ``backend``: ``"torch"`` (exact matmul), ``"faiss"`` (exact, FAISS's flat index; an error if FAISS is
    not installed), ``"ivf"`` or ``"hnsw"`` (approximate FAISS indexes with ``params``) or ``"auto"``:
    FAISS's flat index when it is installed and ``expected_size >= FAISS_THRESHOLD``, else torch
    (``"auto"`` is always exact).

    Example:
        >>> make_index(8, "cosine").backend, make_index(8, backend="hnsw", params=ApproximateConfig(ef_search=64)).params.ef_search
        ('torch', 64)
    """
    if backend not in BACKENDS:
        raise VectorIndexError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend in APPROXIMATE:
        return (IVFIndex if backend == "ivf" else HNSWIndex)(dim, metric, params)
    if backend == "faiss" or (backend == "auto" and expected_size >= FAISS_THRESHOLD and faiss_available()):
        return FaissIndex(dim, metric)
    return TorchIndex(dim, metric)


def index_of(vectors: torch.Tensor, backend: str = "torch", metric: str = "ip", params: ApproximateConfig | None = None) -> TorchIndex:
    """An index holding ``vectors`` (n, d) under ids 0..n-1, built and ready to search (torch keeps
    the tensor itself, without a copy).

    Example:
        >>> index_of(torch.eye(3)).search_excluding(torch.tensor([[1.0, 0.0, 0.0]]), k=2, lo=torch.tensor([0]), hi=torch.tensor([1]))[1].tolist()
        [[1, 2]]
    """
    if not isinstance(vectors, torch.Tensor) or vectors.dim() != 2:
        raise VectorIndexError(f"vectors must have shape (n, d), got {getattr(vectors, 'shape', type(vectors).__name__)}")
    return make_index(vectors.size(1), metric, backend, len(vectors), params).hold(vectors).build()


class IndexCache:
    """The index over a tensor a memory owns, made by :func:`index_of` at the first search and made
    again when the tensor is replaced or changed in place or the choice changes. Copies and pickles of
    its owner start empty (FAISS indexes are neither copied nor pickled).

    Example:
        >>> cache, keys = IndexCache(), torch.eye(3)
        >>> cache.get(keys, SearchConfig()) is cache.get(keys, SearchConfig()), cache.get(keys, SearchConfig()).backend
        (True, 'torch')
    """

    def __init__(self):
        self._key, self._index = None, None

    def get(self, vectors: torch.Tensor, config: SearchConfig) -> TorchIndex:
        key = (vectors, vectors._version, config)
        if self._index is None or key[0] is not self._key[0] or key[1:] != self._key[1:]:
            self._index = None  # let the old one go before the new one is built
            self._index, self._key = index_of(vectors, config.choose(len(vectors)), params=config.params), key
        return self._index

    def __deepcopy__(self, memo) -> "IndexCache":
        return IndexCache()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()


def load_index(path: str | Path, backend: str = "auto", params: ApproximateConfig | None = None) -> TorchIndex:
    """Read an index written by ``save`` (tensors only, read with ``weights_only=True``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    metric = "cosine" if bool(state["cosine"]) else "ip"
    index = make_index(int(state["dim"]), metric, backend, expected_size=len(state["ids"]), params=params)
    index.load_state_dict(state)
    return index
