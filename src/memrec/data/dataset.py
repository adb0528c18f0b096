"""The in-memory data set every model and protocol works on.

Items are numbered 1..N (0 is padding), users 0..U-1; each user has one item sequence in time
order. Interactions that share a timestamp keep the order of the source file (a stable sort), so
the order is deterministic and the same on every run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memrec.errors import UnknownItemError, UnknownUserError

PAD = 0  # the padding item index
PAD_ID = "[PAD]"


@dataclass
class ItemInfo:
    """Side information per item index (index 0 is padding): empty strings where unknown."""

    text: list[str]  # title, categories, genres, brand as one text
    category: list[str]
    image: list[str]  # image path, where a data set has one
    title: list[str] | None = None  # the title alone, where a data set names one (None: no titles)

    def __post_init__(self):
        if self.title is None:
            self.title = [""] * len(self.text)

    @classmethod
    def empty(cls, num_items: int) -> "ItemInfo":
        n = num_items + 1
        return cls(text=[""] * n, category=[""] * n, image=[""] * n)

    @property
    def has_text(self) -> bool:
        return any(self.text[1:])


@dataclass
class SequenceDataset:
    """Users' time-ordered item sequences plus item side information.

    Example:
        >>> ds = SequenceDataset.from_sequences({"u1": ["a", "b", "c"], "u2": ["b", "c"]}, name="toy")
        >>> ds.num_users, ds.num_items, ds.sequence("u1").tolist()
        (2, 3, [1, 2, 3])
    """

    name: str
    user_ids: list[str]  # raw id per user index
    item_ids: list[str]  # raw id per item index; item_ids[0] is padding
    sequences: list[np.ndarray]  # per user: int64 item indices in time order
    timestamps: list[np.ndarray] | None  # per user, aligned with sequences; None if the source has none
    items: ItemInfo
    source: str = ""
    filters: dict = field(default_factory=dict)
    origin: dict = field(default_factory=dict)  # where load_dataset read it: path, name, format, item_file (absolute paths)
    _user_index: dict[str, int] = field(init=False, repr=False)
    _item_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        self._item_index = {it: i for i, it in enumerate(self.item_ids) if i != PAD}

    @classmethod
    def from_sequences(cls, sequences: dict[str, list[str]], name: str = "custom") -> "SequenceDataset":
        """Build a data set from ``{user: [item, ...]}`` raw ids in time order."""
        item_index: dict[str, int] = {}
        seqs = []
        for items in sequences.values():
            seqs.append(np.array([item_index.setdefault(str(it), len(item_index) + 1) for it in items], dtype=np.int64))
        item_ids = [PAD_ID] + list(item_index)
        return cls(name, [str(u) for u in sequences], item_ids, seqs, None, ItemInfo.empty(len(item_index)))

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def user_index(self, user: str) -> int:
        try:
            return self._user_index[str(user)]
        except KeyError:
            example = ", ".join(self.user_ids[:3])
            raise UnknownUserError(f"unknown user {user!r} in data set {self.name!r} (known users look like: {example})") from None

    def item_index(self, item: str) -> int:
        try:
            return self._item_index[str(item)]
        except KeyError:
            example = ", ".join(self.item_ids[1:4])
            raise UnknownItemError(f"unknown item {item!r} in data set {self.name!r} (known items look like: {example})") from None

    def sequence(self, user: str) -> np.ndarray:
        return self.sequences[self.user_index(user)]

    def stats(self) -> dict:
        lengths = np.array([len(s) for s in self.sequences]) if self.sequences else np.zeros(1)
        n = self.num_interactions
        return {
            "dataset": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": n,
            "sparsity": 1.0 - n / max(1, self.num_users * self.num_items),
            "avg_sequence_length": float(lengths.mean()),
            "max_sequence_length": int(lengths.max()),
            "has_timestamps": self.timestamps is not None,
            "has_item_text": self.items.has_text,
            "filters": dict(self.filters),
        }

    def report(self) -> str:
        s = self.stats()
        return (
            f"{s['dataset']}: {s['users']:,} users, {s['items']:,} items, {s['interactions']:,} interactions, "
            f"sparsity {s['sparsity']:.4%}, avg length {s['avg_sequence_length']:.1f}, "
            f"timestamps: {'yes' if s['has_timestamps'] else 'no'}, item text: {'yes' if s['has_item_text'] else 'no'}"
        )

    def fingerprint(self) -> str:
        """A short hash of the item vocabulary: checkpoints refuse data sets that differ."""
        import hashlib

        return hashlib.sha1("\n".join(self.item_ids).encode()).hexdigest()[:16]
