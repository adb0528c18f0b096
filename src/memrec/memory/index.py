"""A small vector index shared by the memory models: exact torch search, FAISS when asked or large.

Every index stores ``(id, vector)`` pairs and answers top-k queries by inner product (``"ip"``) or
cosine similarity (``"cosine"``; vectors are L2-normalised on the way in). Results are padded with
id ``-1`` and score ``-inf`` where the index holds fewer than ``k`` vectors. State is plain tensors,
so an index round-trips through ``torch.save`` / ``torch.load(weights_only=True)``.

Two functions serve batched retrieval in models, where each row has its own small candidate set
(per-user memory banks): :func:`exact_search` and :func:`select_topk`. They are the same exact
search as :class:`TorchIndex`, written for ``(B, Q, n)`` tensors with masks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from memrec.errors import MemrecError

METRICS = ("ip", "cosine")
FAISS_THRESHOLD = 100_000  # "auto" picks FAISS from this many vectors on, when it is installed


class VectorIndexError(MemrecError, ValueError):
    """Bad input to a vector index: wrong shapes, NaN vectors, duplicate or unknown ids."""


class FaissMissingError(MemrecError, ImportError):
    """FAISS was asked for but is not installed."""


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


def exact_search(queries: torch.Tensor, keys: torch.Tensor, k: int, metric: str = "ip", valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k by matmul: queries (..., q, d), keys (..., n, d), valid (..., n) or (..., q, n) bool.

    Returns scores and positions (..., q, k'), k' = min(k, n); masked slots score ``-inf`` with position -1.

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
        self._id_set: set[int] = set()

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def vectors(self) -> torch.Tensor:  # (n, d), normalised for cosine
        return self._vectors.data

    @property
    def ids(self) -> torch.Tensor:  # (n,)
        return self._ids.data

    def _store(self, vectors: torch.Tensor, ids: torch.Tensor) -> None:
        """Hold exactly these vectors (n, d) and ids (n,), e.g. after a removal or a load."""
        self._vectors.replace(vectors)
        self._ids.replace(ids)
        self._id_set = set(ids.tolist())

    def add(self, vectors: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Store vectors (n, d) under ``ids`` (n,) or fresh ids; returns the ids."""
        vectors = check_vectors(vectors, self.dim)
        if ids is None:
            ids = torch.arange(self._next_id, self._next_id + len(vectors))
        ids = torch.as_tensor(ids, dtype=torch.int64).flatten()
        if len(ids) != len(vectors):
            raise VectorIndexError(f"got {len(vectors)} vectors but {len(ids)} ids")
        if (ids < 0).any():
            raise VectorIndexError("ids must be >= 0 (-1 marks an empty result slot)")
        new = ids.tolist()
        if len(set(new)) != len(new) or not self._id_set.isdisjoint(new):
            raise VectorIndexError("ids must be unique: remove an id before adding it again")
        if self.metric == "cosine":
            vectors = F.normalize(vectors, dim=-1)
        self._vectors.append(vectors)
        self._ids.append(ids)
        self._id_set.update(new)
        self._next_id = max(self._next_id, int(ids.max()) + 1) if len(ids) else self._next_id
        self._added(vectors, ids)
        return ids

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k scores and ids for each query: (q, d) -> (q, k), (q, k)."""
        queries = check_vectors(queries, self.dim, "queries")
        if k < 1:
            raise VectorIndexError(f"k must be >= 1, got {k}")
        if self.metric == "cosine":
            queries = F.normalize(queries, dim=-1)
        scores, ids = self._search(queries, k)  # stored vectors are normalised already for cosine
        if scores.size(1) < k:  # pad to k columns
            pad = k - scores.size(1)
            scores = torch.cat([scores, scores.new_full((len(scores), pad), float("-inf"))], 1)
            ids = torch.cat([ids, ids.new_full((len(ids), pad), -1)], 1)
        return scores, ids

    def _search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not len(self):
            return queries.new_zeros(len(queries), 0), torch.zeros(len(queries), 0, dtype=torch.int64)
        scores, pos = exact_search(queries, self.vectors, k, "ip")
        return scores, self.ids[pos]

    def remove(self, ids: torch.Tensor) -> int:
        """Drop the given ids (unknown ids are ignored); returns how many were removed."""
        drop = torch.isin(self.ids, torch.as_tensor(ids, dtype=torch.int64).flatten())
        self._store(self.vectors[~drop], self.ids[~drop])
        self._removed(drop)
        return int(drop.sum())

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
    """The same index answered by FAISS (``IndexFlatIP`` under an id map): for large indexes.

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
            raise FaissMissingError("the FAISS backend needs the faiss package: pip install 'memrec[faiss]' (faiss-cpu)") from None
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


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def make_index(dim: int, metric: str = "ip", backend: str = "auto", expected_size: int = 0) -> TorchIndex:
    """An index for ``dim``-dimensional vectors.

    ``backend``: ``"torch"`` (exact matmul), ``"faiss"`` (an error if FAISS is not installed) or
    ``"auto"``: FAISS when it is installed and ``expected_size >= FAISS_THRESHOLD``, else torch.

    Example:
        >>> make_index(8, "cosine").backend
        'torch'
    """
    if backend not in ("auto", "torch", "faiss"):
        raise VectorIndexError(f"backend must be 'auto', 'torch' or 'faiss', got {backend!r}")
    if backend == "faiss" or (backend == "auto" and expected_size >= FAISS_THRESHOLD and faiss_available()):
        return FaissIndex(dim, metric)
    return TorchIndex(dim, metric)


def load_index(path: str | Path, backend: str = "auto") -> TorchIndex:
    """Read an index written by ``save`` (tensors only, read with ``weights_only=True``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    metric = "cosine" if bool(state["cosine"]) else "ip"
    index = make_index(int(state["dim"]), metric, backend, expected_size=len(state["ids"]))
    index.load_state_dict(state)
    return index
