"""The PostgreSQL store: memories and event logs shared by several service processes.

``postgresql://user@host:port/db?prefix=memrec``. Tables, named after ``prefix``::

    P_meta(key TEXT PRIMARY KEY, value TEXT)            format = memrec-postgres/1, model_version = ...
    P_memories(user_id TEXT PRIMARY KEY, version TEXT, record BYTEA, updated_at DOUBLE PRECISION)
    P_events(seq BIGSERIAL PRIMARY KEY, user_id TEXT, item TEXT, ts DOUBLE PRECISION, key TEXT,
             recorded_at DOUBLE PRECISION, UNIQUE (user_id, key))

- Every write of a user runs in one transaction that first takes a transaction-level advisory lock
  on the user (``pg_advisory_xact_lock``), so updates of one user run one after the other across
  processes, whether or not the user has a row yet; nothing is lost.
- A write returns after ``COMMIT``; with ``synchronous_commit`` on (checked when the store opens,
  unless ``durable=False``) the commit is on disk.
- A small pool of connections (``pool_size``) is shared by the threads of a process.
"""
from __future__ import annotations

import queue
import re
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from memrec.memory.user_memory import MemoryVersionError, UserMemory
from memrec.store.events import Apply, Event, EventLog, new_events
from memrec.store.base import MemoryStore, Row, StoreError, version_message

SCHEMA_FORMAT = "memrec-postgres/1"


class PostgresStore(MemoryStore, EventLog):
    """Memories and event logs in PostgreSQL.

    Example (needs a PostgreSQL server)::

        store = PostgresStore("postgresql://postgres@127.0.0.1:5432/postgres?prefix=demo", model_version="abc")
        store.put("u1", memory); store.get("u1")
    """

    def __init__(self, url: str, model_version: str, *, prefix: str = "memrec", reset: bool = False, adopt: bool = False,
                 durable: bool = True, pool_size: int = 8, timeout: float = 10.0):
        import psycopg

        super().__init__(model_version)
        self._psycopg = psycopg
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        mine = {k: v for k, v in query if k in ("prefix", "durable")}
        self.url = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k not in mine])))
        self.prefix = mine.get("prefix", prefix)
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", self.prefix):
            raise StoreError(f"a PostgreSQL store prefix is a lower-case SQL name ([a-z_][a-z0-9_]*), got {self.prefix!r}")
        self.timeout = timeout
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._all: list = []
        self._lock = threading.Lock()
        p = self.prefix
        self._t = {"meta": f"{p}_meta", "mem": f"{p}_memories", "ev": f"{p}_events"}
        try:
            self._open(reset, adopt, str(mine.get("durable", durable)).lower() not in ("0", "false", "no", "off"))
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({self._where()!r}, model_version={self.model_version!r})"

    def _where(self) -> str:
        parts = urlsplit(self.url)
        return f"postgresql://{parts.hostname}:{parts.port or 5432}{parts.path} (prefix {self.prefix!r})"

    # -- connections ---------------------------------------------------------------------------------
    @contextmanager
    def _connection(self):
        if not self._slots.acquire(timeout=self.timeout):
            raise StoreError(f"no free connection to {self._where()} within {self.timeout} s")
        conn = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.timeout)))
                with self._lock:
                    self._all.append(conn)
            yield conn
        except self._psycopg.OperationalError as e:
            raise StoreError(f"cannot use PostgreSQL at {self._where()}: {str(e).strip()}") from None
        finally:
            if conn is not None:
                if conn.closed or conn.broken:
                    with self._lock:
                        self._all = [c for c in self._all if c is not conn]
                else:
                    self._idle.put(conn)
            self._slots.release()

    @contextmanager
    def _transaction(self, user: str | None = None):
        """One transaction; with ``user``, holding that user's advisory lock until it ends."""
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            if user is not None:
                cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{self.prefix}:{user}",))
            yield cur

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def _open(self, reset: bool, adopt: bool, durable: bool) -> None:
        t = self._t
        with self._transaction() as cur:
            if durable:
                cur.execute("SELECT current_setting('synchronous_commit'), current_setting('fsync')")
                sync, fsync = cur.fetchone()
                if sync == "off" or fsync == "off":
                    raise StoreError(f"PostgreSQL at {self._where()} has synchronous_commit={sync}, fsync={fsync}: an acknowledged "
                                     f"event could be lost in a crash; turn them on, or add ?durable=false to the URL to accept that")
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{self.prefix}:schema",))
            cur.execute(f"CREATE TABLE IF NOT EXISTS {t['meta']} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {t['mem']} (user_id TEXT PRIMARY KEY, version TEXT NOT NULL, "
                        "record BYTEA NOT NULL, updated_at DOUBLE PRECISION NOT NULL)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {t['ev']} (seq BIGSERIAL PRIMARY KEY, user_id TEXT NOT NULL, item TEXT NOT NULL, "
                        "ts DOUBLE PRECISION NOT NULL, key TEXT, recorded_at DOUBLE PRECISION NOT NULL, UNIQUE (user_id, key))")
            cur.execute(f"CREATE INDEX IF NOT EXISTS {t['ev']}_user_seq ON {t['ev']} (user_id, seq)")
            cur.execute(f"SELECT key, value FROM {t['meta']}")
            meta = dict(cur.fetchall())
            if meta and meta.get("format") != SCHEMA_FORMAT:
                raise StoreError(f"{self._where()} is not a memrec store of format {SCHEMA_FORMAT!r} (found {meta.get('format')!r})")
            stored = meta.get("model_version")
            if adopt and stored:
                self.model_version = stored
            elif stored and stored != self.model_version:
                if not reset:
                    raise MemoryVersionError(version_message(f"PostgreSQL memory store {self._where()}", stored, self.model_version))
                cur.execute(f"DELETE FROM {t['mem']}")
            for key, value in (("format", SCHEMA_FORMAT), ("model_version", self.model_version)):
                cur.execute(f"INSERT INTO {t['meta']} (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (key, value))

    # -- memory primitives ----------------------------------------------------------------------------
    def _upsert(self, cur, rows: list[tuple[str, str, bytes]]) -> None:
        now = time.time()
        cur.executemany(
            f"INSERT INTO {self._t['mem']} (user_id, version, record, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (user_id) "
            "DO UPDATE SET version = excluded.version, record = excluded.record, updated_at = excluded.updated_at",
            [(user, version, data, now) for user, version, data in rows],
        )

    def _select(self, cur, user: str) -> Row | None:
        cur.execute(f"SELECT version, record FROM {self._t['mem']} WHERE user_id = %s", (user,))
        row = cur.fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def _load(self, user: str) -> Row | None:
        with self._transaction() as cur:
            return self._select(cur, user)

    def _save_many(self, rows: dict[str, Row]) -> None:
        with self._transaction() as cur:
            self._upsert(cur, [(user, version, data) for user, (version, data) in sorted(rows.items())])

    def _transact(self, user: str, change: Callable[[Row | None], Row]) -> None:
        with self._transaction(user) as cur:
            version, data = change(self._select(cur, user))
            self._upsert(cur, [(user, version, data)])

    def _remove(self, user: str) -> bool:
        with self._transaction(user) as cur:
            cur.execute(f"DELETE FROM {self._t['mem']} WHERE user_id = %s", (user,))
            return cur.rowcount > 0

    def _clear(self) -> None:
        with self._transaction() as cur:
            cur.execute(f"DELETE FROM {self._t['mem']}")

    def _keys(self) -> list[str]:
        with self._transaction() as cur:
            cur.execute(f"SELECT user_id FROM {self._t['mem']}")
            return [u for (u,) in cur.fetchall()]

    def _snapshot(self) -> Iterator[tuple[str, Row]]:
        with self._transaction() as cur:
            cur.execute(f"SELECT user_id, version, record FROM {self._t['mem']}")
            return iter([(u, (v, bytes(r))) for u, v, r in cur.fetchall()])

    # -- event log ------------------------------------------------------------------------------------
    def record(self, user: str, events: list[Event], apply: Apply) -> list[bool]:
        keys = [e.key for e in events if e.key is not None]
        with self._transaction(user) as cur:
            known: dict[str, Event] = {}
            if keys:
                cur.execute(f"SELECT item, ts, key FROM {self._t['ev']} WHERE user_id = %s AND key = ANY(%s)", (user, keys))
                known = {key: Event(item, ts, key) for item, ts, key in cur.fetchall()}
            new, flags = new_events(events, known)
            if not new:
                return flags
            row = self._select(cur, user)
            memory = apply(None if row is None else self._decode(user, row), new)
            now = time.time()
            # appends take turns from here to commit, so seq grows in commit order and is the cursor of changes()
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{self.prefix}:append",))
            cur.executemany(f"INSERT INTO {self._t['ev']} (user_id, item, ts, key, recorded_at) VALUES (%s, %s, %s, %s, %s)",
                            [(user, e.item, float(e.timestamp), e.key, now) for e in new])
            if memory is not None:
                self._upsert(cur, [(user, *self._encode(user, memory))])
        return flags

    def snapshot(self, user: str) -> tuple[list[Event], UserMemory | None]:
        with self._connection() as conn:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # both reads see one snapshot
                cur.execute(f"SELECT item, ts, key FROM {self._t['ev']} WHERE user_id = %s ORDER BY seq", (user,))
                events = [Event(item, ts, key) for item, ts, key in cur.fetchall()]
                row = self._select(cur, user)
        return events, None if row is None else self._decode(user, row)

    def changes(self, cursor: str | None = None) -> tuple[list[str], str]:
        after = int(cursor or 0)
        with self._transaction() as cur:
            cur.execute(f"SELECT user_id, MAX(seq) FROM {self._t['ev']} WHERE seq > %s GROUP BY user_id", (after,))
            rows = cur.fetchall()
        return [user for user, _ in rows], str(max([after, *(seq for _, seq in rows)]))

    def ping(self) -> None:
        with self._transaction() as cur:
            cur.execute("SELECT 1")


def open_postgres(url: str, model_version: str, **options) -> PostgresStore:
    """The opener :func:`memrec.store.register_store` installs for ``postgresql://`` and ``postgres://``."""
    return PostgresStore(url, model_version, **options)
