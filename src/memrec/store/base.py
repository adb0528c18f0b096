"""The store interface: where users' memories live between visits, versioned with the model.

A store maps a user id (the data set's raw id, a string) to one :class:`UserMemory`. It is opened
with the model's memory version (:meth:`MemoryCell.version`); every record carries the version it
was written with, and a record, a file or a database written under another version is refused with
a :class:`MemoryVersionError`: a memory only means something to the cell that wrote it.

Records are stored as bytes (:func:`encode_memory`): a small JSON header with the scalars and
shapes, then the vector and the history as little-endian float32. A back-end therefore only keeps
``user -> (version, bytes)``; it implements the ``_``-prefixed primitives at the end of
:class:`MemoryStore` and inherits everything else: versioning, validation, ``update`` and the JSON
export and import.

JSON layout of :meth:`MemoryStore.export_json` and :meth:`MemoryStore.import_json`::

    {"format": "memrec-memories/1",
     "model_version": "<MemoryCell.version() of the model that wrote them>",
     "memories": {"<user id>": <UserMemory.to_dict()>, ...}}
"""
from __future__ import annotations

import json
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from memrec.errors import DataFormatError, MemrecError
from memrec.memory.user_memory import MemoryVersionError, UserMemory

FORMAT = "memrec-memories/1"
Row = tuple[str, bytes]  # (model version, encoded record)


class StoreError(MemrecError, ValueError):
    """A store cannot be opened, or a record cannot be written or read back."""


class StoreNotAvailableError(MemrecError, NotImplementedError):
    """A store back-end that this installation of memrec does not provide."""


# ----------------------------------------------------------------------------- record codec
def encode_memory(memory: UserMemory) -> bytes:
    """One memory as bytes: a JSON header line, then vector and history as float32.

    Raises ValueError, saying what is wrong, for a memory that could not be read back.

    Example:
        >>> m = UserMemory.fresh(np.ones(3, dtype=np.float32))
        >>> decode_memory(encode_memory(m)).vector.tolist()
        [1.0, 1.0, 1.0]
    """
    if not isinstance(memory, UserMemory):
        raise TypeError(f"expected a UserMemory, got {type(memory).__name__}")
    vector = np.asarray(memory.vector, dtype="<f4")
    history = np.asarray(memory.history, dtype="<f4")
    if vector.ndim != 1 or history.ndim != 2 or history.shape[1] != len(vector):
        raise ValueError(f"expected a (D,) vector and a (H, D) history, got {vector.shape} and {history.shape}")
    if not (np.isfinite(vector).all() and np.isfinite(history).all()):
        raise ValueError("the memory vector or its history is not finite (NaN or infinity)")
    header = memory.to_dict()
    del header["vector"], header["history"]
    header["shape"] = list(history.shape)
    try:
        text = json.dumps(header, allow_nan=False, separators=(",", ":"))
    except ValueError:
        raise ValueError("a timestamp of the memory is not finite (NaN or infinity)") from None
    return text.encode() + b"\n" + vector.tobytes() + history.tobytes()


def decode_memory(data: bytes) -> UserMemory:
    """Inverse of :func:`encode_memory`, validated by :meth:`UserMemory.from_dict` (ValueError if bad)."""
    try:
        text, _, arrays = bytes(data).partition(b"\n")
        header = json.loads(text)
        h, d = header.pop("shape")
        floats = np.frombuffer(arrays, dtype="<f4").astype(np.float32)  # a writable copy
        if len(floats) != (h + 1) * d:
            raise ValueError(f"expected {(h + 1) * d} floats, found {len(floats)}")
        header["vector"], header["history"] = floats[:d], floats[d:].reshape(h, d)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"not a valid encoded user memory ({type(e).__name__}: {e})") from None
    return UserMemory.from_dict(header)


# ----------------------------------------------------------------------------- the interface
class MemoryStore(ABC):
    """Users' memories, keyed by user id, written and read under one model version.

    Every method is safe to call from several threads. ``update`` serialises the updates of a user
    (in the SQLite store across processes too). Use a store as a context manager to close it.

    Example:
        >>> from memrec.store import InProcessStore
        >>> with InProcessStore(model_version="abc") as store:
        ...     store.put("u1", UserMemory.fresh(np.zeros(2, dtype=np.float32)))
        ...     m = store.update("u1", lambda m: UserMemory(m.vector + 1, m.history, m.interaction_count + 1))
        ...     store.get("u1").vector.tolist(), store.get("u1").interaction_count, store.users(), "u2" in store
        ([1.0, 1.0], 1, ['u1'], False)
    """

    def __init__(self, model_version: str):
        if not isinstance(model_version, str) or not model_version:
            raise StoreError(f"model_version must be a non-empty string (MemoryCell.version()), got {model_version!r}")
        self.model_version = model_version

    # -- reading and writing -----------------------------------------------------------------
    def get(self, user: str) -> UserMemory | None:
        """The user's memory, or None if the store has none; MemoryVersionError if written by another model."""
        row = self._load(_check_user(user))
        return None if row is None else self._decode(user, row)

    def put(self, user: str, memory: UserMemory) -> None:
        """Write (or replace) the user's memory; durable when it returns."""
        self.put_many({user: memory})

    def put_many(self, memories: dict[str, UserMemory]) -> None:
        """Write several memories in one transaction: all of them, or (if one is invalid) none."""
        rows = {_check_user(user): self._encode(user, memory) for user, memory in memories.items()}
        if rows:
            self._save_many(rows)

    def update(self, user: str, fn: Callable[[UserMemory | None], UserMemory]) -> UserMemory:
        """Read the user's memory, apply ``fn`` (None for a user without one) and write the result,
        atomically: two updates of one user never interleave, so none is lost. ``fn`` may be called
        while the store is locked: keep it short and do not write to the store from it.
        Returns the memory written."""
        _check_user(user)
        written = []

        def change(row: Row | None) -> Row:
            new = fn(None if row is None else self._decode(user, row))
            if not isinstance(new, UserMemory):
                raise TypeError(f"update of user {user!r}: fn must return a UserMemory, got {type(new).__name__}")
            written[:] = [new]
            return self._encode(user, new)

        self._transact(user, change)
        return written[0]

    def delete(self, user: str) -> bool:
        """Forget the user's memory; False if there was none."""
        return self._remove(_check_user(user))

    def clear(self) -> None:
        """Forget every memory."""
        self._clear()

    def users(self) -> list[str]:
        """The ids of the users with a memory, sorted."""
        return sorted(self._keys())

    def __len__(self) -> int:
        return self._count()

    def __contains__(self, user: object) -> bool:
        return isinstance(user, str) and self._has(user)

    # -- JSON export and import --------------------------------------------------------------
    def export_json(self, path: str | Path) -> int:
        """Write every memory to ``path`` in the layout of the module docstring, atomically (a
        temporary file renamed over ``path``). Returns the number of memories written."""
        memories = {user: self._decode(user, row).to_dict() for user, row in sorted(self._snapshot())}
        payload = {"format": FORMAT, "model_version": self.model_version, "memories": memories}
        write_atomic(Path(path), json.dumps(payload, separators=(",", ":"), allow_nan=False).encode())
        return len(memories)

    def import_json(self, path: str | Path) -> int:
        """Add the memories of a file written by :meth:`export_json` (replacing those of the same
        users) in one transaction. A malformed file raises DataFormatError naming the file and what
        was expected, a file written by another model MemoryVersionError; either way nothing is
        imported. Returns the number of memories imported."""
        memories = read_memories_json(path, self.model_version)
        self.put_many(memories)
        return len(memories)

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the store's resources (connections); the data stays where it is."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- records -----------------------------------------------------------------------------
    def _encode(self, user: str, memory: UserMemory) -> Row:
        try:
            return self.model_version, encode_memory(memory)
        except (TypeError, ValueError) as e:
            raise StoreError(f"cannot store the memory of user {user!r}: {e}") from None

    def _decode(self, user: str, row: Row) -> UserMemory:
        version, data = row
        if version != self.model_version:
            raise MemoryVersionError(version_message(f"the memory of user {user!r} in {self!r}", version, self.model_version))
        try:
            return decode_memory(data)
        except ValueError as e:
            raise StoreError(f"the stored memory of user {user!r} in {self!r} is damaged: {e}; delete it to start the user over") from None

    # -- what a back-end implements (users are checked strings; rows are (version, bytes)) ----
    @abstractmethod
    def _load(self, user: str) -> Row | None: ...

    @abstractmethod
    def _save_many(self, rows: dict[str, Row]) -> None:
        """Write all rows in one transaction, durable on return."""

    @abstractmethod
    def _transact(self, user: str, change: Callable[[Row | None], Row]) -> None:
        """Read the user's row, write ``change(row)``, atomically and serialised per user; if
        ``change`` raises, write nothing and let the error through."""

    @abstractmethod
    def _remove(self, user: str) -> bool: ...

    @abstractmethod
    def _clear(self) -> None: ...

    @abstractmethod
    def _keys(self) -> list[str]: ...

    @abstractmethod
    def _snapshot(self) -> Iterator[tuple[str, Row]]:
        """Every (user, row), as of one moment."""

    def _count(self) -> int:
        return len(self._keys())

    def _has(self, user: str) -> bool:
        return self._load(user) is not None


# ----------------------------------------------------------------------------- helpers
def _check_user(user) -> str:
    if not isinstance(user, str):
        raise TypeError(f"user ids are strings (the data set's raw ids), got {type(user).__name__} {user!r}")
    return user


def version_message(what: str, found: str, expected: str) -> str:
    """The one message for every version mismatch: both versions and what to do.

    Example:
        >>> print(version_message("store s.db", "abc", "xyz"))  # doctest: +NORMALIZE_WHITESPACE
        store s.db was written by a model with memory version 'abc', but this model's memory version is 'xyz':
        its memories mean nothing to this model. Load the model that wrote them, or start every user over with
        `memrec serve --reset-memories` (reset=True in Python), which forgets the memories and keeps the event logs.
    """
    return (
        f"{what} was written by a model with memory version {found!r}, but this model's memory version is "
        f"{expected!r}: its memories mean nothing to this model. Load the model that wrote them, or start every "
        f"user over with `memrec serve --reset-memories` (reset=True in Python), which forgets the memories and "
        f"keeps the event logs."
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk and rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_memories_json(path: str | Path, model_version: str) -> dict[str, UserMemory]:
    """Read and validate a whole memories file (the layout of the module docstring).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.json"
        >>> _ = p.write_text('{"format": "memrec-memories/1", "memories": []}')
        >>> read_memories_json(p, "abc")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        memrec.errors.DataFormatError: .../m.json: expected a JSON object {"format": "memrec-memories/1", "model_version": str, "memories": {user id: UserMemory.to_dict()}}; ...
    """
    path = Path(path)
    expected = f'expected a JSON object {{"format": "{FORMAT}", "model_version": str, "memories": {{user id: UserMemory.to_dict()}}}}'
    try:
        payload = json.loads(path.read_bytes())
    except OSError as e:
        raise StoreError(f"cannot read memories file {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise DataFormatError(path, f"{expected}; it is not valid JSON ({e})") from None
    problem = _layout_problem(payload)
    if problem:
        raise DataFormatError(path, f"{expected}; {problem}")
    if payload["model_version"] != model_version:
        raise MemoryVersionError(version_message(f"memories file {path}", payload["model_version"], model_version))
    memories = {}
    for user, record in payload["memories"].items():
        try:
            if not isinstance(record, dict):
                raise ValueError(f"found a JSON {type(record).__name__}, not an object")
            memories[user] = UserMemory.from_dict(record)
            encode_memory(memories[user])  # the checks a store makes on write
        except ValueError as e:
            raise DataFormatError(path, f"{expected}; the memory of user {user!r} is not valid: {e}") from None
    return memories


def _layout_problem(payload) -> str | None:
    if not isinstance(payload, dict):
        return f"found a JSON {type(payload).__name__}"
    if payload.get("format") != FORMAT:
        return f"found format {payload.get('format')!r}"
    if not isinstance(payload.get("model_version"), str):
        return "model_version is missing or not a string"
    if not isinstance(payload.get("memories"), dict):
        return f"memories is {type(payload.get('memories')).__name__}, not an object"
    return None
