"""The item pool the assistant recommends from: item texts embedded once, searched densely.

An ideal item profile (text) is embedded with the same sentence encoder and matched against every
item by cosine similarity: exact torch search for pools up to ``FAISS_THRESHOLD`` items, FAISS
beyond (see :func:`memrec.memory.index.make_index`). Ranks are pessimistic (ties rank the target
below), as in memrec's full-ranking protocol.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from memrec.errors import MemrecError
from memrec.memory.index import make_index


class UnknownItemError(MemrecError, KeyError):
    """An item id that is not in the catalogue."""


@dataclass
class Hit:
    item: str
    score: float


class ItemCatalog:
    """Item ids with their texts and embeddings.

    ``encode`` maps a list of texts to an (N, D) float tensor (e.g. a
    :class:`memrec.encoders.text.TextEncoder`); item vectors are L2-normalised here.

    Example:
        >>> import torch
        >>> vocab = {"red apple": [1.0, 0.0], "green pear": [0.0, 1.0], "apple": [1.0, 0.1]}
        >>> encode = lambda texts: torch.tensor([vocab[t] for t in texts])
        >>> catalog = ItemCatalog(["i1", "i2"], ["red apple", "green pear"], encode)
        >>> [h.item for h in catalog.search(["apple"], k=2)[0]]
        ['i1', 'i2']
        >>> catalog.ranks(["apple"], ["i2"]).tolist()
        [1]
        >>> catalog.ranks(["apple"], ["i2"], exclude=[["i1"]]).tolist(), [h.item for h in catalog.search(["apple"], 2, [["i1"]])[0]]
        ([0], ['i2'])
    """

    def __init__(self, item_ids: list[str], texts: list[str], encode, backend: str = "auto", vectors: torch.Tensor | None = None):
        if len(item_ids) != len(texts):
            raise ValueError(f"expected one text per item id, got {len(item_ids)} ids and {len(texts)} texts")
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("item ids must be unique")
        self.item_ids = list(item_ids)
        self.texts = list(texts)
        self.row = {item: i for i, item in enumerate(self.item_ids)}
        self.encode = encode
        vectors = encode(self.texts) if vectors is None else vectors
        if vectors.shape[0] != len(item_ids):
            raise ValueError(f"expected {len(item_ids)} item vectors, got shape {tuple(vectors.shape)}")
        self.vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)  # (N, D)
        self.index = make_index(self.vectors.shape[1], "ip", backend, expected_size=len(item_ids))
        self.index.add(self.vectors)

    def __len__(self) -> int:
        return len(self.item_ids)

    def text_of(self, item: str) -> str:
        return self.texts[self.rows([item])[0]]

    def rows(self, items: list[str]) -> list[int]:
        missing = [i for i in items if i not in self.row]
        if missing:
            raise UnknownItemError(f"items not in the catalogue of {len(self)} items: {missing[:5]}")
        return [self.row[i] for i in items]

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Texts -> (B, D) L2-normalised query vectors."""
        return torch.nn.functional.normalize(self.encode(list(texts)).float(), dim=-1)

    def search(self, profiles: list[str], k: int = 10, exclude: list[list[str]] | None = None) -> list[list[Hit]]:
        """The ``k`` items closest to each profile text, best first; ``exclude`` (per profile) is never returned.

        Unknown ids in ``exclude`` are ignored (an item the catalogue does not hold cannot be returned).
        """
        exclude = self._check_exclude(exclude, len(profiles))
        extra = max((len(e) for e in exclude), default=0)
        scores, rows = self.index.search(self.embed(profiles), min(k + extra, len(self)))  # (B, k + extra)
        out = []
        for srow, rrow, skip in zip(scores.tolist(), rows.tolist(), exclude):
            banned = {self.row[i] for i in skip if i in self.row}
            out.append([Hit(self.item_ids[r], float(s)) for s, r in zip(srow, rrow) if r >= 0 and r not in banned][:k])
        return out

    def ranks(self, profiles: list[str], targets: list[str], exclude: list[list[str]] | None = None) -> torch.Tensor:
        """0-based pessimistic rank of each target among all items for its profile: (B,).

        Items in ``exclude`` (per profile, e.g. the user's history) are masked; a target that is
        masked itself ranks behind every unmasked item (a miss), as in memrec's protocol.
        """
        if len(profiles) != len(targets):
            raise ValueError(f"expected one target per profile, got {len(profiles)} profiles and {len(targets)} targets")
        exclude = self._check_exclude(exclude, len(profiles))
        rows = torch.tensor(self.rows(targets), dtype=torch.long)
        scores = self.embed(profiles) @ self.vectors.T  # (B, N)
        for b, skip in enumerate(exclude):
            masked = [self.row[i] for i in skip if i in self.row]
            if masked:
                scores[b, masked] = float("-inf")
        target = scores.gather(1, rows[:, None])  # (B, 1)
        unmasked = torch.isfinite(scores).sum(dim=1)
        return torch.where(torch.isfinite(target[:, 0]), (scores >= target).sum(dim=1) - 1, unmasked)

    @staticmethod
    def _check_exclude(exclude, n: int) -> list[list[str]]:
        if exclude is None:
            return [[] for _ in range(n)]
        if len(exclude) != n:
            raise ValueError(f"expected one exclude list per profile, got {len(exclude)} for {n} profiles")
        return [list(e) for e in exclude]


class CachedEncoder:
    """Remembers the vector of every text it has encoded: memory records that repeat a catalogue
    text cost nothing, and a repeated request is embedded once.

    Example:
        >>> import torch
        >>> calls = []
        >>> enc = CachedEncoder(lambda texts: calls.append(list(texts)) or torch.ones(len(texts), 2))
        >>> enc(["a", "b"]).shape, enc(["b", "a", "c"]).shape, calls
        (torch.Size([2, 2]), torch.Size([3, 2]), [['a', 'b'], ['c']])
    """

    def __init__(self, encode, max_size: int = 500_000):
        self.encode = encode
        self.max_size = max_size
        self.cache: dict[str, torch.Tensor] = {}

    def add(self, texts: list[str], vectors: torch.Tensor) -> None:
        for t, v in zip(texts, vectors):
            self.cache[t] = v

    def __call__(self, texts: list[str]) -> torch.Tensor:
        texts = list(texts)
        new = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if new:
            if len(self.cache) + len(new) > self.max_size:
                self.cache.clear()
            self.add(new, self.encode(new).float())
        if not texts:
            return torch.zeros(0, 0)
        return torch.stack([self.cache[t] for t in texts])
