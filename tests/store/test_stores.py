"""Memory stores: the same contract for the in-process and the SQLite store, on real SQLite files.

Round trips of real memories (made by a MemoryCell), all-or-nothing writes, versioning, the JSON
export and import, and concurrent writers (threads, and two real processes on one SQLite file).
"""
from __future__ import annotations

import json
import multiprocessing
import re
import sqlite3
import threading
import time

import numpy as np
import pytest
import torch

from memrec.errors import DataFormatError
from memrec.memory.user_memory import MemoryCell, MemoryConfig, MemoryVersionError, UserMemory
from memrec.store import (
    InProcessStore,
    SQLiteStore,
    StoreError,
    encode_memory,
    open_store,
)

KINDS = ["memory", "sqlite"]
DIM = 6


@pytest.fixture(scope="module")
def cell() -> MemoryCell:
    torch.manual_seed(0)
    return MemoryCell(item_dim=8, config=MemoryConfig(memory_dim=DIM, max_memory_size=3, interaction_threshold=2))


@pytest.fixture(scope="module")
def version(cell) -> str:
    return cell.version()


def real_memory(cell: MemoryCell, items=(3, 5, 7, 2, 9, 4, 1), t0: float = 100.0) -> UserMemory:
    """A memory after a few interactions: updated (with a history), pending items, timestamps."""
    emb = torch.randn(12, 8, generator=torch.Generator().manual_seed(sum(items)))
    memory = cell.new_memory()
    for i, item in enumerate(items):
        cell.observe(memory, item, emb, time=t0 + i)
    return memory


def make_store(kind: str, tmp_path, version: str, name: str = "memories.db"):
    return InProcessStore(version) if kind == "memory" else SQLiteStore(tmp_path / name, version)


@pytest.fixture(params=KINDS)
def store(request, tmp_path, version):
    with make_store(request.param, tmp_path, version) as s:
        yield s


def assert_same(a: UserMemory, b: UserMemory) -> None:
    assert a.vector.dtype == b.vector.dtype == np.float32
    np.testing.assert_array_equal(a.vector, b.vector)
    np.testing.assert_array_equal(a.history, b.history)
    assert a.to_dict() == b.to_dict()


def incremented(memory: UserMemory | None) -> UserMemory:
    memory = memory or UserMemory.fresh(np.zeros(DIM, dtype=np.float32))
    count = memory.interaction_count
    time.sleep(0)  # let another thread in between the read and the write, were they not serialised
    memory.interaction_count = count + 1
    return memory


# ----------------------------------------------------------------------------- the contract
def test_a_real_memory_round_trips_exactly(store, cell):
    memory = real_memory(cell)
    assert memory.updates == 3 and len(memory.history) == 3 and memory.pending_items == [1]
    store.put("u1", memory)
    back = store.get("u1")
    assert_same(back, memory)
    back.vector += 1  # a read is a copy
    assert_same(store.get("u1"), memory)


def test_get_delete_users_len_contains(store, cell):
    assert store.get("nobody") is None and len(store) == 0 and store.users() == []
    store.put("b", real_memory(cell))
    store.put("a", real_memory(cell, items=(4, 4)))
    store.put("b", real_memory(cell, items=(1, 2, 3)))  # replaces
    assert store.users() == ["a", "b"] and len(store) == 2
    assert "a" in store and "c" not in store and 1 not in store
    assert store.get("b").interaction_count == 3
    assert store.delete("a") is True and store.delete("a") is False
    assert store.users() == ["b"] and store.get("a") is None
    store.clear()
    assert len(store) == 0


def test_user_ids_must_be_strings(store, cell):
    with pytest.raises(TypeError, match="user ids are strings"):
        store.put(7, real_memory(cell))


def test_put_many_writes_all_or_nothing(store, cell):
    store.put("a", real_memory(cell))
    bad = real_memory(cell, items=(2, 3))
    bad.vector[1] = np.nan
    with pytest.raises(StoreError, match=r"user 'c'.*not finite"):
        store.put_many({"b": real_memory(cell, items=(5,)), "c": bad})
    assert store.users() == ["a"]
    assert_same(store.get("a"), real_memory(cell))
    store.put_many({"b": real_memory(cell, items=(5,)), "d": real_memory(cell, items=(6,))})
    assert store.users() == ["a", "b", "d"]


def test_update_creates_reads_and_writes(store, cell):
    seen = []
    first = store.update("u", lambda m: seen.append(m) or real_memory(cell))
    assert seen == [None]
    assert_same(store.get("u"), first)
    second = store.update("u", incremented)
    assert second.interaction_count == first.interaction_count + 1 == store.get("u").interaction_count


def test_a_failing_update_writes_nothing(store, cell):
    store.put("u", real_memory(cell))

    def fails(memory):
        memory.interaction_count = 999
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.update("u", fails)
    with pytest.raises(TypeError, match="must return a UserMemory"):
        store.update("u", lambda m: None)
    assert_same(store.get("u"), real_memory(cell))
    store.update("u", incremented)  # the store still works after a failed transaction
    assert store.get("u").interaction_count == 8


# ----------------------------------------------------------------------------- versions
def test_a_record_of_another_model_version_is_refused_on_get(store, cell, version):
    store._save_many({"old": ("0123456789abcdef", encode_memory(real_memory(cell)))})  # the back-end primitive
    with pytest.raises(MemoryVersionError) as e:
        store.get("old")
    message = str(e.value)
    assert "0123456789abcdef" in message and version in message and "user 'old'" in message
    assert "Load the model that wrote them" in message and "reset" in message
    with pytest.raises(MemoryVersionError):
        store.update("old", incremented)


def test_importing_a_file_of_another_model_version_is_refused(tmp_path, cell, version):
    path = tmp_path / "memories.json"
    with InProcessStore("0123456789abcdef") as other:
        other.put("u", real_memory(cell))
        other.export_json(path)
    for kind in KINDS:
        with make_store(kind, tmp_path, version) as store:
            with pytest.raises(MemoryVersionError, match=rf"memories file .*memories.json.*'0123456789abcdef'.*'{version}'"):
                store.import_json(path)
            assert len(store) == 0


def test_opening_a_sqlite_file_of_another_model_version_is_refused(tmp_path, cell, version):
    path = tmp_path / "memories.db"
    with SQLiteStore(path, version) as store:
        store.put("u", real_memory(cell))
    with pytest.raises(MemoryVersionError, match=rf"SQLite memory store .*memories.db.*'{version}'.*'fedcba9876543210'"):
        SQLiteStore(path, "fedcba9876543210")
    with SQLiteStore(path, version) as store:  # refused without touching anything
        assert store.users() == ["u"]
    with SQLiteStore(path, "fedcba9876543210", reset=True) as store:
        assert len(store) == 0
    with pytest.raises(MemoryVersionError):
        SQLiteStore(path, version)


# ----------------------------------------------------------------------------- JSON
@pytest.mark.parametrize("source", KINDS)
@pytest.mark.parametrize("target", KINDS)
def test_export_then_import_into_a_fresh_store_gives_identical_records(tmp_path, cell, version, source, target):
    memories = {f"user {i}": real_memory(cell, items=tuple(range(1, 2 + i)), t0=10.0 * i) for i in range(5)}
    memories["é/ü"] = cell.new_memory()  # any string is a user id; a fresh memory has an empty history
    path = tmp_path / "export.json"
    with make_store(source, tmp_path, version, "a.db") as a:
        a.put_many(memories)
        assert a.export_json(path) == len(memories)
    payload = json.loads(path.read_text())
    assert payload["format"] == "memrec-memories/1" and payload["model_version"] == version
    assert payload["memories"]["user 2"] == memories["user 2"].to_dict()
    assert sorted(p.name for p in tmp_path.iterdir() if "export" in p.name) == ["export.json"]  # no temporary left
    with make_store(target, tmp_path, version, "b.db") as b:
        assert b.import_json(path) == len(memories)
        assert b.users() == sorted(memories)
        for user, memory in memories.items():
            assert_same(b.get(user), memory)
            assert encode_memory(b.get(user)) == encode_memory(memory)


GOOD = {"vector": [0.5] * DIM, "history": [], "interaction_count": 1, "pending_items": [3]}


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "found a JSON list"),
        ('{"format": "something-else", "model_version": "V", "memories": {}}', "found format 'something-else'"),
        ('{"format": "memrec-memories/1", "memories": {}}', "model_version is missing"),
        ('{"format": "memrec-memories/1", "model_version": "V", "memories": [1]}', "memories is list"),
        ('{"format": "memrec-memories/1", "model_version": "V", "memories": {"ok": GOOD, "bad": {"vector": [1.0]}}}',
         r"the memory of user 'bad' is not valid: .*KeyError"),
        ('{"format": "memrec-memories/1", "model_version": "V", "memories": {"ok": GOOD, "bad": [1.0]}}',
         r"the memory of user 'bad' is not valid: found a JSON list"),
        ('{"format": "memrec-memories/1", "model_version": "V", "memories": {"ok": GOOD, "bad": NAN}}',
         r"the memory of user 'bad' is not valid: .*finite"),
    ],
)
def test_a_malformed_file_gives_one_clear_error_and_imports_nothing(store, tmp_path, cell, version, content, problem):
    store.put("kept", real_memory(cell))
    nan = dict(GOOD, vector=[float("nan")] * DIM)
    content = content.replace('"V"', json.dumps(version)).replace("GOOD", json.dumps(GOOD)).replace("NAN", json.dumps(nan))
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataFormatError) as e:
        store.import_json(path)
    message = str(e.value)
    assert message.startswith(f"{path}: expected a JSON object") and '"format": "memrec-memories/1"' in message
    assert re.search(problem, message), message
    assert store.users() == ["kept"]


def test_a_missing_file_is_a_store_error(store, tmp_path):
    with pytest.raises(StoreError, match="cannot read memories file .*absent.json"):
        store.import_json(tmp_path / "absent.json")


# ----------------------------------------------------------------------------- SQLite specifics
def test_sqlite_is_durable_wal_full_and_has_the_documented_schema(tmp_path, cell, version):
    path = tmp_path / "memories.db"
    with SQLiteStore(path, version) as store:
        store.put("u", real_memory(cell))
        conn = store._conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    raw = sqlite3.connect(path)  # another connection, after close: committed
    assert dict(raw.execute("SELECT key, value FROM meta")) == {"format": "memrec-sqlite/1", "model_version": version}
    columns = [row[1] for row in raw.execute("PRAGMA table_info(memories)")]
    assert columns == ["user", "version", "record", "updated_at"]
    user, record_version, updated_at = raw.execute("SELECT user, version, updated_at FROM memories").fetchone()
    assert (user, record_version) == ("u", version) and abs(updated_at - time.time()) < 60
    raw.close()


def test_sqlite_errors_are_clear(tmp_path, version):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open SQLite memory store .*junk.db"):
        SQLiteStore(junk, version)
    with pytest.raises(StoreError, match="folder .* does not exist"):
        SQLiteStore(tmp_path / "no" / "such.db", version)
    with pytest.raises(StoreError, match="use InProcessStore"):
        SQLiteStore(":memory:", version)
    store = SQLiteStore(tmp_path / "m.db", version)
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.get("u")


def test_open_store_picks_the_back_end(tmp_path, monkeypatch, version):
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_store(None, version), InProcessStore)
    assert isinstance(open_store("memory://", version), InProcessStore)
    for where, expected in [
        (tmp_path / "a.db", tmp_path / "a.db"),
        (str(tmp_path / "b.db"), tmp_path / "b.db"),
        ("sqlite:///c.db", tmp_path / "c.db"),  # relative
        (f"sqlite:///{tmp_path}/d.db", tmp_path / "d.db"),  # absolute: four slashes
    ]:
        with open_store(where, version, timeout=5) as s:
            assert isinstance(s, SQLiteStore) and s.path.resolve() == expected and s.timeout == 5
        assert expected.exists()
    with pytest.raises(StoreError, match="unknown memory store 'ftp://x'"):
        open_store("ftp://x", version)


# ----------------------------------------------------------------------------- concurrency
def test_threads_updating_one_user_lose_nothing(store):
    def work():
        for _ in range(200):
            store.update("shared", incremented)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("shared").interaction_count == 400


def _increment_in_another_process(path, version, barrier, n):
    with SQLiteStore(path, version) as store:
        barrier.wait(timeout=60)
        for _ in range(n):
            store.update("shared", incremented)


def test_two_processes_updating_one_user_of_a_sqlite_file_lose_nothing(tmp_path, version):
    path = tmp_path / "memories.db"
    SQLiteStore(path, version).close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    workers = [ctx.Process(target=_increment_in_another_process, args=(path, version, barrier, 200)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    with SQLiteStore(path, version) as store:
        assert store.get("shared").interaction_count == 400
