"""A file that is not a memrec store is refused before anything is written to it (issue 17, items 3 and 4).

Another app's SQLite database (rollback journal or WAL), a database with a ``meta`` table of another
shape, and a text file are each refused with one line, by the store API and by a real ``memrec serve``
process, and their bytes are the same afterwards, with no ``-wal`` or ``-shm`` file beside them. A new
path, an empty (0-byte) file and a SQLite database without tables become stores. A store that
another model wrote is refused with advice that names ``--reset-memories`` and ``reset=True``.
"""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memrec.memory.user_memory import MemoryVersionError, UserMemory
from memrec.store import SQLiteStore, StoreError
from memrec.store.sqlite_events import SQLiteStateStore

ITEMS = ["[PAD]"] + [f"i{n}" for n in range(1, 21)]
EXPECTED = "expected tables meta and memories of format 'memrec-sqlite/1'); give a new path or a memrec store"


def sqlite_file(path: Path, *statements: str, wal: bool = False) -> Path:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()  # the last connection of a WAL database removes its -wal and -shm
    return path


def another_apps_db(folder: Path) -> Path:
    return sqlite_file(folder / "shop.db", "CREATE TABLE users (id INTEGER, name TEXT)", "CREATE TABLE orders (id INTEGER)",
                       "INSERT INTO users VALUES (1, 'ann')")


def another_apps_wal_db(folder: Path) -> Path:
    return sqlite_file(folder / "notes.db", "CREATE TABLE notes (body TEXT)", "INSERT INTO notes VALUES ('hi')", wal=True)


def db_with_another_meta(folder: Path) -> Path:  # a meta table without memrec's key and value columns
    return sqlite_file(folder / "cache.db", "CREATE TABLE meta (name TEXT, size INTEGER)", "INSERT INTO meta VALUES ('a', 1)")


def text_file(folder: Path) -> Path:
    path = folder / "notes.txt"
    path.write_text("not a database\n" * 50)
    return path


# (make the file, the start of the refusal after the path, what comes after)
FOREIGN = {
    "sqlite": (another_apps_db, "is not a memrec store (it has tables orders, users; " + EXPECTED),
    "sqlite-wal": (another_apps_wal_db, "is not a memrec store (it has tables notes; " + EXPECTED),
    "other-meta": (db_with_another_meta, "is not a memrec store (it has tables meta; " + EXPECTED),
    "text": (text_file, "is not a SQLite database; give a new path or a memrec store"),
}


def refusal(path: Path, kind: str) -> str:
    _, tail = FOREIGN[kind]
    return f"cannot open SQLite memory store {path}: it {tail}" if kind == "text" else f"{path} {tail}"


def files_beside(path: Path) -> dict[str, bytes]:
    """The file and anything SQLite keeps beside it, by name."""
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir()) if p.name.startswith(path.name)}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
@pytest.mark.parametrize("opener", [
    lambda p: SQLiteStore(p, "abc"),
    lambda p: SQLiteStore(p, "abc", reset=True),
    lambda p: SQLiteStateStore(p, "abc"),
    lambda p: SQLiteStateStore(p, "abc", adopt=True),
], ids=["memories", "memories-reset", "state", "state-adopt"])
def test_a_foreign_file_is_refused_and_left_as_it_was(tmp_path, kind, opener):
    path = FOREIGN[kind][0](tmp_path)
    before = files_beside(path)
    assert list(before) == [path.name]
    with pytest.raises(StoreError) as e:
        opener(path)
    assert str(e.value) == refusal(path, kind)
    assert files_beside(path) == before  # same bytes, no -wal, no -shm, no -journal


@pytest.mark.parametrize("make", [
    lambda folder: folder / "new.db",
    lambda folder: (folder / "empty.db").write_bytes(b"") or folder / "empty.db",
    lambda folder: sqlite_file(folder / "blank.db"),  # a SQLite database without tables
], ids=["new", "empty", "no-tables"])
def test_a_new_or_empty_file_becomes_a_store(tmp_path, make):
    path = make(tmp_path)
    with SQLiteStateStore(path, "abc") as store:
        store.put("u", UserMemory.fresh(np.ones(2, dtype=np.float32)))
    with SQLiteStore(path, "abc") as store:
        assert store.users() == ["u"]
    assert dict(sqlite3.connect(path).execute("SELECT key, value FROM meta")) == {"format": "memrec-sqlite/1", "model_version": "abc"}


def test_a_memrec_store_in_use_is_read_through_its_wal(tmp_path):
    """The check reads the -wal of a store another connection holds open, and still accepts it."""
    path = tmp_path / "state.db"
    holder = SQLiteStateStore(path, "abc")
    holder._conn().execute("PRAGMA wal_autocheckpoint=0")  # the new rows stay in the -wal
    holder.put("u", UserMemory.fresh(np.ones(2, dtype=np.float32)))
    with SQLiteStateStore(path, "abc") as other:
        assert other.users() == ["u"]
    with pytest.raises(MemoryVersionError):
        SQLiteStateStore(path, "xyz")
    holder.close()


# ----------------------------------------------------------------------------- through memrec serve
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'memrec[serve]'")
    from memrec.serve.testing import tiny_checkpoint

    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "memory": tiny_checkpoint(folder / "ur4rec.pt", "ur4rec-moe", ITEMS, interaction_threshold=1),
        "other": tiny_checkpoint(folder / "ur4rec-other.pt", "ur4rec-moe", ITEMS, seed=1, interaction_threshold=1),
        "plain": tiny_checkpoint(folder / "sasrec.pt", "sasrec", ITEMS),
    }


def serve(checkpoint: Path, store: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run `memrec serve` on a port nothing answers on; a refusal exits before the server starts."""
    from memrec.serve.testing import free_port

    cmd = [sys.executable, "-m", "memrec.cli", "serve", str(checkpoint), "--store", str(store), "--port", str(free_port()),
           "--token", "t", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("model", ["memory", "plain"])  # plain: a model without memory adopts the store's version
@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_memrec_serve_refuses_a_foreign_file_in_one_line(tmp_path, checkpoints, kind, model):
    path = FOREIGN[kind][0](tmp_path)
    before = files_beside(path)
    done = serve(checkpoints[model], path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"memrec serve: error: {refusal(path, kind)}"]
    assert files_beside(path) == before


def test_memrec_serve_names_the_reset_flag_for_another_models_store(tmp_path, checkpoints):
    from memrec.serve.model import ServedModel
    from memrec.serve.testing import ServiceProcess
    from memrec.store.events import Event

    path = tmp_path / "state.db"
    mine = ServedModel.load(checkpoints["memory"])
    with SQLiteStateStore(path, mine.version) as store:
        store.record("u", [Event("i1", 1.0, "k1"), Event("i2", 2.0, "k2")], lambda memory, new: mine.replay(new))
    theirs = ServedModel.load(checkpoints["other"]).version
    done = serve(checkpoints["other"], path)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line == (
        f"memrec serve: error: SQLite memory store {path} was written by a model with memory version {mine.version!r}, but this "
        f"model's memory version is {theirs!r}: its memories mean nothing to this model. Load the model that wrote them, or "
        f"start every user over with `memrec serve --reset-memories` (reset=True in Python), which forgets the memories and "
        f"keeps the event logs."
    )
    assert not re.search(r"\bdelete\b", line)
    with ServiceProcess(checkpoints["other"], str(path), token="t", extra=["--reset-memories"]):  # the advice works
        pass
    with SQLiteStateStore(path, theirs) as store:
        assert [e.key for e in store.history("u")] == ["k1", "k2"] and store.get("u") is None  # logs kept, memories gone
