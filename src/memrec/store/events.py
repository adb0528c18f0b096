"""Users' event logs: the history the service keeps beside each user's memory.

An :class:`EventLog` appends a user's events and writes the user's memory **in one transaction**,
serialised per user: :meth:`EventLog.record` drops events whose idempotency key the user's log
already holds, appends the rest, calls ``apply(memory, new_events)`` and writes what it returns, all
or nothing, durable when it returns. The SQLite (:mod:`memrec.store.sqlite_events`), Redis
(:mod:`memrec.store.redis`) and PostgreSQL (:mod:`memrec.store.postgres`) stores implement it.

Idempotency keys are unique **per user**: a retried event (same user, same key, same item and
timestamp) is applied once; a key sent again with another item or timestamp is a
:class:`KeyConflict`, and the call records nothing. Events are kept in arrival order; their
timestamps are the client's, stored as given (or, ``received=True``, the service's receive time,
which a retry of the same key does not have to match).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

from memrec.errors import MemrecError
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
    received: bool = field(default=False, compare=False, repr=False)  # the timestamp is the service's, not stored as such

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


class KeyConflict(MemrecError, ValueError):
    """An idempotency key already recorded (or sent earlier in the same call) for another event."""

    def __init__(self, stored: Event, sent: Event):
        self.stored, self.sent = stored, sent
        super().__init__(f"idempotency key {sent.key!r} was already used for item {stored.item!r} at {float(stored.timestamp)}, "
                         f"not for item {sent.item!r} at {float(sent.timestamp)}")


def new_events(events: list[Event], known: dict[str, Event]) -> tuple[list[Event], list[bool]]:
    """The events to append (keys neither in ``known``, the user's recorded events by key, nor
    repeated earlier in ``events``) and, for each input event, whether it is new. A repeated key
    with another item or timestamp raises :class:`KeyConflict`.

    Example:
        >>> new, flags = new_events([Event("a", 1, "k1"), Event("a", 1, "k1"), Event("c", 3)], {"k0": Event("b", 0, "k0")})
        >>> [e.item for e in new], flags
        (['a', 'c'], [True, False, True])
        >>> new_events([Event("b", 5, "k0")], {"k0": Event("b", 0, "k0")})
        Traceback (most recent call last):
        ...
        memrec.store.events.KeyConflict: idempotency key 'k0' was already used for item 'b' at 0.0, not for item 'b' at 5.0
    """
    seen = dict(known)
    new, flags = [], []
    for e in events:
        before = seen.get(e.key) if e.key is not None else None
        if before is not None and (before.item != e.item or (before.timestamp != e.timestamp and not e.received)):
            raise KeyConflict(before, e)
        if e.key is not None:
            seen.setdefault(e.key, e)
        flags.append(before is None)
        if before is None:
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
    def changes(self, cursor: str | None = None) -> tuple[list[str], str]:
        """The users whose logs gained events after ``cursor`` (None: since the store began), and the
        cursor to pass next time. Every event a call returns no user for (committed before the call)
        is behind the returned cursor: ``changes`` in a loop sees every user that changes, once or more,
        across processes."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreError if the store cannot be reached."""
