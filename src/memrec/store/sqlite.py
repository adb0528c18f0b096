"""The SQLite store: the embedded default, one file, nothing to start.

- WAL journal, ``synchronous=FULL``: a write returns after its transaction is committed to disk,
  and readers never wait for a writer.
- One transaction per write; :meth:`MemoryStore.update` runs in a ``BEGIN IMMEDIATE`` transaction,
  which takes the database's write lock before it reads, so two threads or processes updating the
  same user run one after the other and neither update is lost. A writer waits up to ``timeout``
  seconds for the lock (SQLite's busy timeout).
- One connection per thread (and per process, after a fork).

Schema::

    meta(key TEXT PRIMARY KEY, value TEXT)      -- format = memrec-sqlite/1, model_version = ...
    memories(user TEXT PRIMARY KEY, version TEXT, record BLOB, updated_at REAL)
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from memrec.memory.user_memory import MemoryVersionError
from memrec.store.base import MemoryStore, Row, StoreError, version_message

SCHEMA_FORMAT = "memrec-sqlite/1"
_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS memories (user TEXT PRIMARY KEY, version TEXT NOT NULL, "
    "record BLOB NOT NULL, updated_at REAL NOT NULL)",
)
_UPSERT = (
    "INSERT INTO memories (user, version, record, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(user) DO UPDATE SET version = excluded.version, record = excluded.record, updated_at = excluded.updated_at"
)


class SQLiteStore(MemoryStore):
    """Memories in one SQLite file, shared safely by threads and processes.

    Opening a file written under another model version raises MemoryVersionError, unless
    ``reset=True``, which deletes every memory in it and takes this model's version. A file that is
    not a memrec store (another app's database, a text file) is refused before anything is written
    to it (:func:`read_meta`); a new path or an empty file becomes a store.

    Example:
        >>> import tempfile, numpy as np
        >>> from memrec.memory.user_memory import UserMemory
        >>> path = tempfile.mkdtemp() + "/memories.db"
        >>> with SQLiteStore(path, model_version="abc") as store:
        ...     store.put("u1", UserMemory.fresh(np.zeros(4, dtype=np.float32)))
        >>> with SQLiteStore(path, model_version="abc") as store:  # durable: a new connection sees it
        ...     store.users()
        ['u1']
        >>> SQLiteStore(path, model_version="xyz")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        memrec.memory.user_memory.MemoryVersionError: SQLite memory store ... was written by a model with memory version 'abc', ...
    """

    def __init__(self, path: str | Path, model_version: str, *, timeout: float = 30.0, reset: bool = False):
        super().__init__(model_version)
        self.path = Path(path)
        if str(path) in ("", ":memory:") or str(path).startswith("file:"):
            raise StoreError(f"SQLiteStore needs a file path, got {str(path)!r}; use InProcessStore (memory://) for memories in memory")
        if not self.path.parent.is_dir():
            raise StoreError(f"cannot open SQLite memory store {self.path}: folder {self.path.parent} does not exist")
        read_meta(self.path)  # refuses a file that is not a memrec store before anything is written
        self.timeout = timeout
        self._local = threading.local()
        self._connections: list[tuple[int, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._open(reset)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, model_version={self.model_version!r})"

    # -- connections and transactions ----------------------------------------------------------
    def _open(self, reset: bool) -> None:
        try:
            mode = self._conn().execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open SQLite memory store {self.path}: {e}") from None
        if mode.lower() != "wal":
            raise StoreError(f"cannot put SQLite memory store {self.path} in WAL mode (journal mode is {mode!r})")
        with self._transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta and meta.get("model_version") != self.model_version:
                if not reset:
                    raise MemoryVersionError(version_message(f"SQLite memory store {self.path}", meta.get("model_version"), self.model_version))
                conn.execute("DELETE FROM memories")
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             [("format", SCHEMA_FORMAT), ("model_version", self.model_version)])

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a new one in a new thread or after a fork)."""
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != pid:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.DatabaseError as e:  # e.g. "file is not a database"
                conn.close()
                raise StoreError(f"cannot open SQLite memory store {self.path}: {e}") from None
            self._local.conn, self._local.pid = conn, pid
            with self._lock:
                self._connections.append((pid, conn))
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its start (BEGIN IMMEDIATE)."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:  # "database is locked" once the busy timeout has passed
            raise StoreError(f"cannot write to SQLite memory store {self.path} within {self.timeout} s: {e}") from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            mine = [conn for pid, conn in self._connections if pid == os.getpid()]
            self._connections.clear()
        for conn in mine:
            conn.close()

    # -- the primitives --------------------------------------------------------------------------
    def _load(self, user: str) -> Row | None:
        row = self._conn().execute("SELECT version, record FROM memories WHERE user = ?", (user,)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def _save_many(self, rows: dict[str, Row]) -> None:
        now = time.time()
        with self._transaction() as conn:
            conn.executemany(_UPSERT, [(user, version, data, now) for user, (version, data) in rows.items()])

    def _transact(self, user: str, change: Callable[[Row | None], Row]) -> None:
        with self._transaction() as conn:
            version, data = change(self._load(user))
            conn.execute(_UPSERT, (user, version, data, time.time()))

    def _remove(self, user: str) -> bool:
        with self._transaction() as conn:
            return conn.execute("DELETE FROM memories WHERE user = ?", (user,)).rowcount > 0

    def _clear(self) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM memories")

    def _keys(self) -> list[str]:
        return [user for (user,) in self._conn().execute("SELECT user FROM memories")]

    def _count(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM memories").fetchone()[0]

    def _has(self, user: str) -> bool:
        return self._conn().execute("SELECT 1 FROM memories WHERE user = ?", (user,)).fetchone() is not None

    def _snapshot(self) -> Iterator[tuple[str, Row]]:
        rows = self._conn().execute("SELECT user, version, record FROM memories").fetchall()  # one statement: one snapshot
        return iter([(user, (version, bytes(data))) for user, version, data in rows])


def read_meta(path: str | Path) -> dict[str, str]:
    """The meta table of the memrec store at ``path``, read without writing anything.

    A file that can become a store gives ``{}``: none yet, an empty (0-byte) file, or a SQLite
    database without tables. Any other file raises StoreError, saying what it is and what to do.

    Example:
        >>> import sqlite3, tempfile
        >>> path = tempfile.mkdtemp() + "/other.db"
        >>> sqlite3.connect(path).execute("CREATE TABLE orders (id INTEGER)").connection.commit()
        >>> read_meta(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        memrec.store.base.StoreError: .../other.db is not a memrec store (it has tables orders; expected tables meta and memories of format 'memrec-sqlite/1'); give a new path or a memrec store
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return {}
    with open(path, "rb") as f:
        if f.read(len(_HEADER)) != _HEADER:
            raise StoreError(f"cannot open SQLite memory store {path}: it is not a SQLite database; give a new path or a memrec store")
    # Without a -wal file the main file is the whole database: reading it as immutable leaves no -wal or -shm behind.
    mode = "ro" if Path(f"{path}-wal").exists() else "ro&immutable=1"
    tables, meta = [], {}
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True)
        try:
            tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")]
            if "meta" in tables:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()
    except sqlite3.Error as e:  # a damaged database (no tables read), or another app's meta table
        if not tables:
            raise StoreError(f"cannot open SQLite memory store {path}: {e}") from None
    if tables and meta.get("format") != SCHEMA_FORMAT:
        found = f"it has tables {', '.join(tables)}" + (f" and format {meta['format']!r}" if "format" in meta else "")
        raise StoreError(f"{path} is not a memrec store ({found}; expected tables meta and memories of format {SCHEMA_FORMAT!r}); "
                         "give a new path or a memrec store")
    return meta
