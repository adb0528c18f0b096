"""Top-k items through the one vector index, for catalogues too large to score whole per request.

``/recommend`` and batch inference rank every item for a user: exact, that is a (B, N) product per
request, about 10 ms a user at 10^6 items on one thread. :class:`ItemSearch` puts the item table
(padding left out) into a :mod:`memrec.memory.index` index chosen by a
:class:`~memrec.memory.index.SearchConfig`: exact below ``approximate_from`` items (then nothing
changes: callers score the whole catalogue as before), FAISS IVF (or HNSW) from there. A row's history
is excluded by over-fetching: the index is asked for ``k`` plus the row's history size, the history
dropped, the best ``k`` kept (asked again with twice as many where an approximate index returned too
few). It serves models whose scores are dot products of a user vector with the item table
(:meth:`~memrec.models.SequentialRecommender.user_vectors`); others are ranked exactly.
``benchmarks/scale.py ann`` measures the recall@10 of its top-10 against exact.
"""
from __future__ import annotations

import torch

from memrec.memory.index import APPROXIMATE, SearchConfig, index_of

ITEMS = SearchConfig()  # exact below 10^6 items, IVF (nprobe 16) from there


class ItemSearch:
    """An index over the item table (N + 1, d); row 0, padding, is never returned.

    Example:
        >>> table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
        >>> search = ItemSearch(table, SearchConfig(backend="hnsw"))
        >>> items, scores = search.topk(torch.tensor([[1.0, 0.2]]), k=2, seen=(torch.tensor([0]), torch.tensor([1])))
        >>> items.tolist()  # item 1 scores best but was seen
        [[3, 2]]
    """

    def __init__(self, table: torch.Tensor, config: SearchConfig = ITEMS):
        self.num_items = table.size(0) - 1
        self.backend = config.choose(self.num_items)
        self.index = index_of(table[1:].detach().contiguous(), self.backend, params=config.params)  # ids 0..N-1 = items 1..N

    @property
    def approximate(self) -> bool:
        return self.backend in APPROXIMATE

    def topk(self, users: torch.Tensor, k: int, seen: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The best ``k`` items by inner product for each user vector (B, d), never the ``seen`` (row,
        item) pairs: items and scores (B, k'), k' = ``k`` or the fewest any row found."""
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        rows, items = seen if seen is not None else (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        width = self.num_items + 1
        keys = (rows * width + items).unique()  # sorted (row, item) codes of the seen pairs
        history = torch.bincount(keys // width, minlength=len(users)) if len(keys) else torch.zeros(len(users), dtype=torch.long)
        wanted = torch.clamp(self.num_items - history, max=k)  # (B,) rankable items each row can have
        fetch = min(self.num_items, k + int(history.max()) if len(users) else k)
        while True:
            scores, ids = self.index.search(users, fetch)  # (B, F)
            found = ids + 1  # items; 0 where the index found nothing
            code = torch.arange(len(users))[:, None] * width + found
            position = torch.searchsorted(keys, code).clamp(max=max(len(keys) - 1, 0))
            valid = (found > 0) & ~((keys[position] == code) if len(keys) else torch.zeros_like(code, dtype=torch.bool))
            if (valid.sum(dim=1) >= wanted).all() or fetch >= self.num_items:
                break
            fetch = min(self.num_items, 2 * fetch)
        order = (~valid).to(torch.int8).sort(dim=1, stable=True).indices  # valid first, best score first
        count = int(torch.clamp(valid.sum(dim=1), max=k).min()) if len(users) else 0
        take = order[:, :count]
        return found.gather(1, take), scores.gather(1, take)

    def recommend(self, model, batch, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``model.recommend(batch, k)`` through this index (history excluded), or None where the model's
        scores are not dot products with its item table (then rank exactly)."""
        users = model.user_vectors(batch)  # (B, d) or None
        return None if users is None else self.topk(users, k, (batch.seen_rows, batch.seen_items))


def approximate_search(model, config: SearchConfig = ITEMS) -> ItemSearch | None:
    """An :class:`ItemSearch` over ``model``'s item table when ``config`` searches that many items
    approximately (by default from 10^6); else None: rank the catalogue exactly.

    Example:
        >>> from memrec.models import build_model
        >>> approximate_search(build_model("sasrec", 50, 5)) is None, approximate_search(build_model("sasrec", 50, 5), SearchConfig(backend="hnsw")).backend
        (True, 'hnsw')
    """
    if config.choose(model.num_items) not in APPROXIMATE:
        return None
    with torch.inference_mode():
        return ItemSearch(model.item_embeddings().detach(), config)
