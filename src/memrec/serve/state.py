"""Where the service keeps its state: every user's event log and memory, in one store.

================================  =================================================================
``state.db``, ``sqlite:///...``   :class:`~memrec.store.sqlite_events.SQLiteStateStore` (the embedded default)
``redis://host:6379/0``           :class:`~memrec.store.redis.RedisStore` (several processes)
``postgresql://user@host/db``     :class:`~memrec.store.postgres.PostgresStore` (several processes)
================================  =================================================================

The store is opened under the model's memory version. A store whose memories another model wrote
is refused (:class:`~memrec.memory.user_memory.MemoryVersionError`) unless ``reset_memories``, which
forgets the memories and keeps the event logs. A model without memory adopts whatever version the
store has, so serving a plain model never disturbs the memories of another.
"""
from __future__ import annotations

from pathlib import Path

from memrec.store.events import EventLog
from memrec.serve.model import HISTORY_ONLY
from memrec.store.sqlite_events import SQLiteStateStore
from memrec.store import MemoryStore, StoreError, open_store


def open_state(where: str | Path, version: str, reset_memories: bool = False) -> MemoryStore:
    """Open the state store a path or URL names (see the table above); it is a MemoryStore and an EventLog.

    Example:
        >>> import tempfile
        >>> open_state(tempfile.mkdtemp() + "/state.db", "abc")  # doctest: +ELLIPSIS
        SQLiteStateStore('.../state.db', model_version='abc')
        >>> open_state("memory://", "abc")
        Traceback (most recent call last):
        ...
        memrec.store.base.StoreError: the service needs a store that keeps event logs: a SQLite file path, sqlite:///..., redis://... or postgresql://...; got 'memory://'
    """
    options = {"adopt": True} if version == HISTORY_ONLY else {"reset": reset_memories}
    where = str(where)
    if "://" not in where:
        return SQLiteStateStore(where, version, **options)
    if where.startswith("sqlite:///") and len(where) > len("sqlite:///"):
        return SQLiteStateStore(where.removeprefix("sqlite:///"), version, **options)
    if where.split("://", 1)[0].lower() in ("redis", "rediss", "postgresql", "postgres"):
        store = open_store(where, version, **options)
        assert isinstance(store, EventLog)
        return store
    raise StoreError(f"the service needs a store that keeps event logs: a SQLite file path, sqlite:///..., redis://... or postgresql://...; got {where!r}")
