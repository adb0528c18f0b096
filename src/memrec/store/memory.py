"""The in-process store: a dict behind a lock, for tests, notebooks and single-process training.

Nothing survives the process; use :meth:`MemoryStore.export_json` or the SQLite store to keep memories.
"""
from __future__ import annotations

import threading
from typing import Callable, Iterator

from memrec.store.base import MemoryStore, Row


class InProcessStore(MemoryStore):
    """Memories in a dict of encoded records, so that a read returns a copy and a write is validated
    exactly as in the persistent stores. One lock serialises every write (and ``update``).

    Example:
        >>> import numpy as np
        >>> from memrec.memory.user_memory import UserMemory
        >>> store = InProcessStore(model_version="abc")
        >>> store.put("u1", UserMemory.fresh(np.zeros(4, dtype=np.float32)))
        >>> len(store), store.delete("u1"), store.delete("u1"), store.get("u1")
        (1, True, False, None)
    """

    def __init__(self, model_version: str):
        super().__init__(model_version)
        self._rows: dict[str, Row] = {}
        self._lock = threading.RLock()  # re-entrant: an update's fn may read the store

    def __repr__(self) -> str:
        return f"InProcessStore(model_version={self.model_version!r})"

    def _load(self, user: str) -> Row | None:
        return self._rows.get(user)

    def _save_many(self, rows: dict[str, Row]) -> None:
        with self._lock:
            self._rows.update(rows)

    def _transact(self, user: str, change: Callable[[Row | None], Row]) -> None:
        with self._lock:
            self._rows[user] = change(self._rows.get(user))

    def _remove(self, user: str) -> bool:
        with self._lock:
            return self._rows.pop(user, None) is not None

    def _clear(self) -> None:
        with self._lock:
            self._rows.clear()

    def _keys(self) -> list[str]:
        with self._lock:
            return list(self._rows)

    def _count(self) -> int:
        return len(self._rows)

    def _has(self, user: str) -> bool:
        return user in self._rows

    def _snapshot(self) -> Iterator[tuple[str, Row]]:
        with self._lock:
            return iter(list(self._rows.items()))
