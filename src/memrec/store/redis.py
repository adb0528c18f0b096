"""The Redis store: memories and event logs shared by several service processes.

``redis://host:port/db?prefix=memrec`` (``rediss://`` for TLS). Keys, under ``prefix``::

    P:meta          hash   format = memrec-redis/1, model_version = ...
    P:users         set    users that have a memory
    P:mem:USER      hash   version, record (see memrec.store.base.encode_memory)
    P:ev:USER       list   the user's events as JSON, oldest first
    P:keys:USER     set    the user's idempotency keys

- Updates of one user are optimistic transactions (``WATCH`` the user's keys, read, ``MULTI`` ...
  ``EXEC``, retried on conflict), so two processes writing one user never lose an update. The
  function that computes the new memory may therefore run more than once.
- Durability is the server's: with ``appendonly yes`` and ``appendfsync always`` Redis writes each
  transaction to its append-only file and fsyncs it before it replies. The store checks this when it
  opens and refuses a server that does not, unless ``durable=False`` (``?durable=false``).
"""
from __future__ import annotations

import json
import time
from typing import Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from memrec.memory.user_memory import MemoryVersionError, UserMemory
from memrec.store.events import Apply, Event, EventLog, new_events
from memrec.store.base import MemoryStore, Row, StoreError, version_message

SCHEMA_FORMAT = "memrec-redis/1"


class RedisStore(MemoryStore, EventLog):
    """Memories and event logs in Redis.

    Example (needs a Redis server)::

        store = RedisStore("redis://127.0.0.1:6379/0?prefix=demo", model_version="abc")
        store.put("u1", memory); store.get("u1")
    """

    def __init__(self, url: str, model_version: str, *, prefix: str = "memrec", reset: bool = False, adopt: bool = False,
                 durable: bool = True, timeout: float = 5.0):
        import redis

        super().__init__(model_version)
        url, mine = _split_query(url)  # ours: prefix=, durable=; the rest is redis-py's
        prefix = mine.get("prefix", prefix)
        durable = _flag(mine.get("durable", durable))
        self.url, self.prefix = url, prefix
        self._redis = redis
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            self._open(reset, adopt, durable)
        except redis.RedisError as e:
            raise StoreError(f"cannot use the Redis memory store at {self._where()}: {e}") from None

    def __repr__(self) -> str:
        return f"RedisStore({self._where()!r}, model_version={self.model_version!r})"

    def _where(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        return urlunsplit(parts._replace(netloc=f"{host}:{parts.port or 6379}")) + f" (prefix {self.prefix!r})"

    def _key(self, kind: str, user: str | None = None) -> str:
        return f"{self.prefix}:{kind}" if user is None else f"{self.prefix}:{kind}:{user}"

    def _open(self, reset: bool, adopt: bool, durable: bool) -> None:
        if durable:
            config = {**self.client.config_get("appendonly"), **self.client.config_get("appendfsync")}
            config = {_text(k): _text(v) for k, v in config.items()}
            if config.get("appendonly") != "yes" or config.get("appendfsync") != "always":
                raise StoreError(
                    f"Redis at {self._where()} does not fsync each write (appendonly={config.get('appendonly')}, "
                    f"appendfsync={config.get('appendfsync')}): an acknowledged event could be lost in a crash. Start it "
                    f"with --appendonly yes --appendfsync always, or add ?durable=false to the URL to accept that"
                )
        meta = {_text(k): _text(v) for k, v in self.client.hgetall(self._key("meta")).items()}
        if meta and meta.get("format") != SCHEMA_FORMAT:
            raise StoreError(f"{self._where()} is not a memrec store of format {SCHEMA_FORMAT!r} (found {meta.get('format')!r})")
        stored = meta.get("model_version")
        if adopt and stored:
            self.model_version = stored
        elif stored and stored != self.model_version:
            if not reset:
                raise MemoryVersionError(version_message(f"Redis memory store {self._where()}", stored, self.model_version))
            self._clear()
        self.client.hset(self._key("meta"), mapping={"format": SCHEMA_FORMAT, "model_version": self.model_version})

    def close(self) -> None:
        self.client.close()

    # -- memory primitives -------------------------------------------------------------------------
    def _load(self, user: str) -> Row | None:
        return _row(self.client.hmget(self._key("mem", user), "version", "record"))

    def _save_many(self, rows: dict[str, Row]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for user, (version, data) in rows.items():
            pipe.hset(self._key("mem", user), mapping={"version": version, "record": data})
            pipe.sadd(self._key("users"), user)
        pipe.execute()

    def _transact(self, user: str, change: Callable[[Row | None], Row]) -> None:
        def attempt(pipe) -> None:
            version, data = change(_row(pipe.hmget(self._key("mem", user), "version", "record")))
            pipe.multi()
            pipe.hset(self._key("mem", user), mapping={"version": version, "record": data})
            pipe.sadd(self._key("users"), user)

        self._retrying(attempt, self._key("mem", user))

    def _remove(self, user: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._key("mem", user))
        pipe.srem(self._key("users"), user)
        return bool(pipe.execute()[0])

    def _clear(self) -> None:
        users = [_text(u) for u in self.client.smembers(self._key("users"))]
        pipe = self.client.pipeline(transaction=True)
        for user in users:
            pipe.delete(self._key("mem", user))
        pipe.delete(self._key("users"))
        pipe.execute()

    def _keys(self) -> list[str]:
        return [_text(u) for u in self.client.smembers(self._key("users"))]

    def _snapshot(self) -> Iterator[tuple[str, Row]]:
        users = self._keys()
        pipe = self.client.pipeline(transaction=True)  # MULTI: one moment
        for user in users:
            pipe.hmget(self._key("mem", user), "version", "record")
        rows = [(user, _row(r)) for user, r in zip(users, pipe.execute())]
        return iter([(user, row) for user, row in rows if row is not None])

    # -- event log ----------------------------------------------------------------------------------
    def record(self, user: str, events: list[Event], apply: Apply) -> list[bool]:
        mem, log, keys = self._key("mem", user), self._key("ev", user), self._key("keys", user)
        flags: list[bool] = []

        def attempt(pipe) -> None:
            wanted = [e.key for e in events if e.key is not None]
            hits = {k for k, hit in zip(wanted, pipe.smismember(keys, wanted)) if hit} if wanted else set()
            logged = (Event.from_dict(json.loads(x)) for x in pipe.lrange(log, 0, -1)) if hits else ()  # retries only
            new, flags[:] = new_events(events, {e.key: e for e in logged if e.key in hits})
            if not new:
                return
            memory = apply(self._decode_row(user, pipe.hmget(mem, "version", "record")), new)
            row = None if memory is None else self._encode(user, memory)
            pipe.multi()
            pipe.rpush(log, *[json.dumps(e.to_dict()) for e in new])
            pipe.xadd(self._key("changes"), {"user": user})  # stream ids grow in execution order: the cursor of changes()
            if any(e.key is not None for e in new):
                pipe.sadd(keys, *[e.key for e in new if e.key is not None])
            if row is not None:
                pipe.hset(mem, mapping={"version": row[0], "record": row[1]})
                pipe.sadd(self._key("users"), user)

        self._retrying(attempt, mem, log, keys)
        return flags

    def snapshot(self, user: str) -> tuple[list[Event], UserMemory | None]:
        pipe = self.client.pipeline(transaction=True)
        pipe.lrange(self._key("ev", user), 0, -1)
        pipe.hmget(self._key("mem", user), "version", "record")
        log, row = self._call(pipe.execute)
        return [Event.from_dict(json.loads(x)) for x in log], self._decode_row(user, row)

    def changes(self, cursor: str | None = None) -> tuple[list[str], str]:
        entries = self._call(lambda: self.client.xrange(self._key("changes"), f"({cursor}" if cursor else "-", "+"))
        users = list(dict.fromkeys(_text(fields[b"user"] if b"user" in fields else fields["user"]) for _, fields in entries))
        return users, _text(entries[-1][0]) if entries else (cursor or "0-0")

    def ping(self) -> None:
        self._call(self.client.ping)

    def _decode_row(self, user: str, values) -> UserMemory | None:
        row = _row(values)
        return None if row is None else self._decode(user, row)

    def _retrying(self, attempt, *watched: str) -> None:
        self._call(lambda: self.client.transaction(attempt, *watched))

    def _call(self, fn):
        try:
            return fn()
        except self._redis.ConnectionError as e:
            raise StoreError(f"cannot reach Redis at {self._where()}: {e}") from None
        except self._redis.TimeoutError as e:
            raise StoreError(f"Redis at {self._where()} did not answer in time: {e}") from None


def open_redis(url: str, model_version: str, **options) -> RedisStore:
    """The opener :func:`memrec.store.register_store` installs for ``redis://`` and ``rediss://``."""
    return RedisStore(url, model_version, **options)


def _row(values) -> Row | None:
    version, data = values
    return None if version is None or data is None else (_text(version), bytes(data))


def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _split_query(url: str) -> tuple[str, dict[str, str]]:
    """``redis://h/0?prefix=p&db=1`` -> (``redis://h/0?db=1``, {"prefix": "p"})."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    mine = {k: v for k, v in query if k in ("prefix", "durable")}
    rest = [(k, v) for k, v in query if k not in mine]
    return urlunsplit(parts._replace(query=urlencode(rest))), mine


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off"):
        return False
    raise StoreError(f"durable must be true or false, got {value!r}")
