"""Where users' memories live: the store interface, its back-ends and :func:`open_store`.

==========================================  ===================================================
``None``, ``memory://``                     :class:`InProcessStore` (gone with the process)
``memories.db``, ``sqlite:///memories.db``  :class:`SQLiteStore` (relative path; the embedded default)
``sqlite:////abs/path.db``                  :class:`SQLiteStore` (absolute path: four slashes, as in SQLAlchemy)
``redis://...``, ``postgresql://...``       :class:`~memrec.store.redis.RedisStore`, :class:`~memrec.store.postgres.PostgresStore`
                                            (shared by several service processes; the ``serve`` extra)
==========================================  ===================================================

A back-end subclasses :class:`MemoryStore`, implements its ``_``-prefixed primitives and adds its
URL scheme with :func:`register_store`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from memrec.memory.user_memory import MemoryVersionError
from memrec.store.base import (
    FORMAT,
    MemoryStore,
    StoreError,
    StoreNotAvailableError,
    decode_memory,
    encode_memory,
    read_memories_json,
)
from memrec.store.memory import InProcessStore
from memrec.store.sqlite import SQLiteStore

Opener = Callable[..., MemoryStore]  # opener(url, model_version, **options) -> store


def _open_memory(url: str, model_version: str, reset: bool = False) -> MemoryStore:
    if url != "memory://":
        raise StoreError(f"an in-process store takes no path or options: use 'memory://', got {url!r}")
    return InProcessStore(model_version)  # always empty: nothing to reset


def _open_sqlite(url: str, model_version: str, **options) -> MemoryStore:
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
    if not path:
        raise StoreError(f"expected 'sqlite:///relative/path.db' or 'sqlite:////absolute/path.db', got {url!r}")
    return SQLiteStore(path, model_version, **options)


def _open_shared(url: str, model_version: str, **options) -> MemoryStore:
    """Redis and PostgreSQL, imported on first use; they need the ``serve`` extra."""
    scheme = url.split("://", 1)[0].lower()
    module, package = ("redis", "redis") if scheme.startswith("redis") else ("postgres", "psycopg[binary]")
    try:
        if module == "redis":
            import redis  # noqa: F401
            from memrec.store.redis import open_redis as opener
        else:
            import psycopg  # noqa: F401
            from memrec.store.postgres import open_postgres as opener
    except ImportError:
        raise StoreNotAvailableError(f"the {scheme} memory store needs {package}: pip install 'memrec[serve]'") from None
    return opener(url, model_version, **options)


_OPENERS: dict[str, Opener] = {
    "memory": _open_memory,
    "sqlite": _open_sqlite,
    **{s: _open_shared for s in ("redis", "rediss", "postgresql", "postgres")},
}


def register_store(scheme: str, opener: Opener) -> None:
    """Make ``open_store("SCHEME://...", version, **options)`` call ``opener(url, version, **options)``."""
    _OPENERS[scheme] = opener


def open_store(url_or_path: str | Path | None, model_version: str, **options) -> MemoryStore:
    """Open the store a URL or a file path names (see the table in the module docstring).

    ``options`` go to the store, e.g. ``reset=True`` (forget memories written under another model
    version) or ``timeout=`` (SQLite busy timeout, seconds).

    Example:
        >>> open_store(None, "abc")
        InProcessStore(model_version='abc')
        >>> open_store("ftp://x", "abc")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        memrec.store.base.StoreError: unknown memory store 'ftp://x': expected a file path or a URL starting with one of [...
    """
    if url_or_path is None:
        return InProcessStore(model_version)
    if isinstance(url_or_path, Path) or "://" not in str(url_or_path):
        return SQLiteStore(url_or_path, model_version, **options)
    scheme = str(url_or_path).split("://", 1)[0].lower()
    if scheme not in _OPENERS:
        raise StoreError(f"unknown memory store {str(url_or_path)!r}: expected a file path or a URL starting with one of {sorted(_OPENERS)} + '://'")
    return _OPENERS[scheme](str(url_or_path), model_version, **options)


__all__ = [
    "FORMAT", "InProcessStore", "MemoryStore", "MemoryVersionError", "SQLiteStore", "StoreError",
    "StoreNotAvailableError", "decode_memory", "encode_memory", "open_store", "read_memories_json",
    "register_store",
]
