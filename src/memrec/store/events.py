"""Users' event logs: the history the service keeps beside each user's memory.

An :class:`EventLog` appends a user's events and writes the user's memory **in one transaction**,
serialised per user: :meth:`EventLog.record` drops events whose idempotency key the user's log
already holds, appends the rest, calls ``apply(memory, new_events)`` and writes what it returns, all
or nothing, durable when it returns. The SQLite (:mod:`memrec.store.sqlite_events`), Redis
(:mod:`memrec.store.redis`) and PostgreSQL (:mod:`memrec.store.postgres`) stores implement it.

Idempotency keys are unique **per user**: a retried event (same user, same key) is applied once.
Events are kept in arrival order; their timestamps are the client's, stored as given.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

from memrec.memory.user_memory import UserMemory

# apply(memory or None, the events that are new) -> the memory to write, or None to leave it as is.
# A back-end may call it more than once (Redis retries on a conflict): it must depend on its arguments only.
Apply = Callable[[UserMemory | None, list["Event"]], UserMemory | None]


@dataclass(frozen=True)
class Event:
    """One interaction: a raw item id (the checkpoint's ``item_ids``), the client's timestamp and an
    optional idempotency key.

    Example:
        >>> Event.from_dict(Event("i1", 5.0, key="k").to_dict())
        Event(item='i1', timestamp=5.0, key='k')
    """

    item: str
    timestamp: float
    key: str | None = None

    def __post_init__(self):
        if not isinstance(self.item, str) or not self.item:
            raise ValueError(f"an event's item is a non-empty string, got {self.item!r}")
        if not isinstance(self.timestamp, (int, float)) or not math.isfinite(self.timestamp):
            raise ValueError(f"an event's timestamp is a finite number, got {self.timestamp!r}")
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise ValueError(f"an idempotency key is a non-empty string or None, got {self.key!r}")

    def to_dict(self) -> dict:
        return {"item": self.item, "timestamp": float(self.timestamp), "key": self.key}

    @classmethod
    def from_dict(cls, d: dict) -> "Event":
        return cls(str(d["item"]), float(d["timestamp"]), d.get("key"))


def new_events(events: list[Event], known_keys: set[str]) -> tuple[list[Event], list[bool]]:
    """The events to append (keys neither known nor repeated earlier in ``events``) and, for each
    input event, whether it is new.

    Example:
        >>> new, flags = new_events([Event("a", 1, "k1"), Event("b", 2, "k1"), Event("c", 3)], {"k0"})
        >>> [e.item for e in new], flags
        (['a', 'c'], [True, False, True])
    """
    seen = set(known_keys)
    new, flags = [], []
    for e in events:
        fresh = e.key is None or e.key not in seen
        if e.key is not None:
            seen.add(e.key)
        flags.append(fresh)
        if fresh:
            new.append(e)
    return new, flags


class EventLog(ABC):
    """The per-user event log of a store; mixed into a :class:`~memrec.store.MemoryStore`."""

    @abstractmethod
    def record(self, user: str, events: list[Event], apply: Apply) -> list[bool]:
        """Append the new ``events`` to the user's log and write ``apply(memory, new)``, atomically,
        serialised per user, durable on return. Returns, per event, whether it was new (False: its
        key was already recorded). If ``apply`` raises, nothing is written."""

    @abstractmethod
    def snapshot(self, user: str) -> tuple[list[Event], UserMemory | None]:
        """The user's whole log (oldest first) and memory, as of one moment."""

    def history(self, user: str) -> list[Event]:
        return self.snapshot(user)[0]

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreError if the store cannot be reached."""
