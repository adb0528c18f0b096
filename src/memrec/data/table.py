"""Interactions as read from a file, before filtering and sequencing."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memrec.data.dataset import PAD_ID, ItemInfo, SequenceDataset
from memrec.errors import DataFormatError


@dataclass
class InteractionTable:
    """One row per interaction, in file order, with the item side information found beside it."""

    users: list[str]
    items: list[str]
    source: str
    ratings: np.ndarray | None = None  # (n,) float
    timestamps: np.ndarray | None = None  # (n,) float
    item_text: dict[str, str] = field(default_factory=dict)
    item_title: dict[str, str] = field(default_factory=dict)
    item_category: dict[str, str] = field(default_factory=dict)
    item_image: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.users)


def build_dataset(
    table: InteractionTable,
    name: str,
    min_rating: float | None = None,
    user_core: int = 0,
    item_core: int = 0,
) -> SequenceDataset:
    """Filter (rating threshold, then k-core) and turn rows into per-user time-ordered sequences.

    Users and items are numbered by first appearance in the file. Within a user, rows are sorted by
    timestamp with a stable sort, so rows with equal timestamps keep their file order.

    Example:
        >>> t = InteractionTable(["u", "u", "v"], ["a", "b", "a"], "mem", timestamps=np.array([2.0, 1.0, 5.0]))
        >>> build_dataset(t, "toy").sequences[0].tolist()  # b (t=1) before a (t=2)
        [2, 1]
    """
    if len(table) == 0:
        raise DataFormatError(table.source, "no interactions: expected at least one user-item row")
    users = np.asarray(table.users, dtype=object)
    items = np.asarray(table.items, dtype=object)
    keep = np.ones(len(users), dtype=bool)
    filters: dict = {}
    if min_rating is not None:
        if table.ratings is None:
            raise DataFormatError(table.source, f"min_rating={min_rating} needs a rating column, and this file has none")
        keep &= table.ratings >= min_rating
        filters["min_rating"] = min_rating
    if user_core > 1 or item_core > 1:
        keep = _k_core(users, items, keep, user_core, item_core)
        filters.update(user_core=user_core, item_core=item_core)
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise DataFormatError(table.source, f"no interactions left after filtering {filters}")

    user_codes, user_ids = _codes_by_first_appearance(users[rows])
    item_codes, item_ids = _codes_by_first_appearance(items[rows])
    item_codes = item_codes + 1  # 0 is padding
    stamps = table.timestamps[rows] if table.timestamps is not None else None
    order = np.lexsort((np.arange(len(rows)), stamps, user_codes) if stamps is not None else (np.arange(len(rows)), user_codes))
    bounds = np.flatnonzero(np.diff(user_codes[order])) + 1
    sequences = [s.astype(np.int64) for s in np.split(item_codes[order], bounds)]
    timestamps = np.split(stamps[order], bounds) if stamps is not None else None

    info = ItemInfo(
        text=[""] + [table.item_text.get(i, "") for i in item_ids],
        category=[""] + [table.item_category.get(i, "") for i in item_ids],
        image=[""] + [table.item_image.get(i, "") for i in item_ids],
        title=[""] + [table.item_title.get(i, "") for i in item_ids],
    )
    return SequenceDataset(name, list(user_ids), [PAD_ID] + list(item_ids), sequences, timestamps, info, table.source, filters)


def _codes_by_first_appearance(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values))
    return codes, list(index)


def _k_core(users: np.ndarray, items: np.ndarray, keep: np.ndarray, user_core: int, item_core: int) -> np.ndarray:
    """Drop users and items with too few interactions until none is left to drop."""
    keep = keep.copy()
    _, u = np.unique(users, return_inverse=True)
    _, i = np.unique(items, return_inverse=True)
    while True:
        u_counts = np.bincount(u[keep], minlength=u.max() + 1)
        i_counts = np.bincount(i[keep], minlength=i.max() + 1)
        ok = keep & (u_counts[u] >= user_core) & (i_counts[i] >= item_core)
        if (ok == keep).all():
            return keep
        keep = ok
