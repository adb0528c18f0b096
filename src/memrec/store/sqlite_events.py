"""The service's SQLite state: :class:`~memrec.store.SQLiteStore`'s memories plus an events table.

An event and the memory update it causes commit in one ``BEGIN IMMEDIATE`` transaction (WAL,
``synchronous=FULL``), so after a crash either both are on disk or neither is. Extra schema::

    events(seq INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT, item TEXT, ts REAL, key TEXT, recorded_at REAL)
    UNIQUE (user, key) WHERE key IS NOT NULL             -- idempotency keys, per user

**Group commit.** Calls of :meth:`~SQLiteStateStore.record` from several threads of one process
share transactions: a call queues itself, and whichever call holds the writer lock takes every call
queued so far and runs them one after the other, each in its own savepoint, in one transaction with
one fsync. Each call returns only after that transaction has committed, so nothing is acknowledged
before it is durable; a call whose ``apply`` fails is rolled back to its savepoint and raises, and
the others of its group commit; a failed commit fails every call of the group. One call alone is
one transaction, as before; under a burst, the calls queued behind a commit share the next one.
``recorded_at`` is the time its group's transaction began.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from memrec.memory.user_memory import UserMemory
from memrec.store.events import Apply, Event, EventLog, new_events
from memrec.store.base import StoreError
from memrec.store.sqlite import _UPSERT, SQLiteStore, read_meta

_EVENTS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, item TEXT NOT NULL, "
    "ts REAL NOT NULL, key TEXT, recorded_at REAL NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_user_key ON events (user, key) WHERE key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS events_user_seq ON events (user, seq)",
)


class SQLiteStateStore(SQLiteStore, EventLog):
    """Memories and event logs in one SQLite file.

    ``adopt=True`` opens a file under the memory version it already has (for a model that reads no
    memories); otherwise a file of another version is refused as in :class:`SQLiteStore`.

    Example:
        >>> import tempfile
        >>> store = SQLiteStateStore(tempfile.mkdtemp() + "/state.db", model_version="abc")
        >>> store.record("u1", [Event("i1", 1.0, key="k"), Event("i1", 1.0, key="k")], lambda m, new: None)
        [True, False]
        >>> store.history("u1")
        [Event(item='i1', timestamp=1.0, key='k')]
    """

    def __init__(self, path: str | Path, model_version: str, *, adopt: bool = False, **options):
        if adopt:
            model_version = stored_version(path) or model_version
        super().__init__(path, model_version, **options)
        # Writers of this process queue here, not in SQLite's busy handler, which sleeps 1-100 ms between
        # tries and can dominate the tail latency under load. Other processes still queue there.
        self._writer = threading.Lock()
        self._queue: list[_Call] = []  # record() calls waiting for the next group commit
        self._queue_lock = threading.Lock()
        with self._transaction() as conn:
            for statement in _EVENTS_SCHEMA:
                conn.execute(statement)

    def __repr__(self) -> str:
        return f"SQLiteStateStore({str(self.path)!r}, model_version={self.model_version!r})"

    def record(self, user: str, events: list[Event], apply: Apply) -> list[bool]:
        call = _Call(user, events, apply)
        with self._queue_lock:
            self._queue.append(call)
        with self._writer:  # the holder commits every queued call: ours, unless an earlier holder already did
            if not call.done:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit(group)
        if call.error is not None:
            raise call.error
        return call.flags

    def _commit(self, group: list[_Call]) -> None:
        """Run the calls of ``group`` in one transaction, each in a savepoint; mark them all done."""
        now = time.time()
        try:
            with self._transaction() as conn:
                for call in group:
                    conn.execute("SAVEPOINT call")
                    try:
                        call.flags = self._append(conn, call, now)
                    except BaseException as e:  # this call's writes only are undone
                        conn.execute("ROLLBACK TO call")
                        call.error = e
                    conn.execute("RELEASE call")
        except BaseException as e:  # BEGIN or COMMIT failed: no call of the group is durable
            for call in group:
                call.flags, call.error = None, call.error or e
        finally:
            for call in group:
                call.done = True

    def _append(self, conn: sqlite3.Connection, call: _Call, now: float) -> list[bool]:
        user, events = call.user, call.events
        keys = [e.key for e in events if e.key is not None]
        known = {}
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT item, ts, key FROM events WHERE user = ? AND key IN ({marks})", (user, *chunk))
            known.update((key, Event(item, ts, key)) for item, ts, key in rows)
        new, flags = new_events(events, known)
        if not new:
            return flags
        row = self._load(user)
        memory = call.apply(None if row is None else self._decode(user, row), new)
        conn.executemany("INSERT INTO events (user, item, ts, key, recorded_at) VALUES (?, ?, ?, ?, ?)",
                         [(user, e.item, float(e.timestamp), e.key, now) for e in new])
        if memory is not None:
            version, data = self._encode(user, memory)
            conn.execute(_UPSERT, (user, version, data, now))
        return flags

    def snapshot(self, user: str) -> tuple[list[Event], UserMemory | None]:
        conn = self._conn()
        conn.execute("BEGIN")  # one read transaction: one snapshot of both tables
        try:
            rows = conn.execute("SELECT item, ts, key FROM events WHERE user = ? ORDER BY seq", (user,)).fetchall()
            row = self._load(user)
        finally:
            conn.execute("COMMIT")
        return [Event(item, ts, key) for item, ts, key in rows], None if row is None else self._decode(user, row)

    def changes(self, cursor: str | None = None) -> tuple[list[str], str]:
        """SQLite serialises writers (one write transaction at a time, across processes too), so
        ``seq`` grows in commit order and is the cursor."""
        after = int(cursor or 0)
        rows = self._conn().execute("SELECT user, MAX(seq) FROM events WHERE seq > ? GROUP BY user", (after,)).fetchall()
        return [user for user, _ in rows], str(max([after, *(seq for _, seq in rows)]))

    def ping(self) -> None:
        try:
            self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error as e:
            raise StoreError(f"{self!r} cannot be read: {e}") from None


@dataclass
class _Call:
    """One record() call waiting for, or done by, a group commit."""

    user: str
    events: list[Event]
    apply: Apply
    flags: list[bool] | None = None
    error: BaseException | None = None
    done: bool = False


def stored_version(path: str | Path) -> str | None:
    """The memory version a SQLite state file was written under, or None (no file, or no version yet);
    StoreError for a file that is not a memrec store. Reads only."""
    return read_meta(path).get("model_version")
