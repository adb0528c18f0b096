"""The state stores the service shares between processes, against the real servers: SQLite (a file),
Redis and PostgreSQL (started by .ci/run; see memrec.serve.testing for how they are found).

The memory contract of memrec.store (round trips, all-or-nothing writes, serialised updates,
versions) and the event log (idempotency keys, one transaction with the memory, snapshots), with
two real processes writing one user at once.
"""
from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch

pytest.importorskip("redis", reason="the shared stores need the serve extra: pip install 'memrec[serve]'")
pytest.importorskip("psycopg", reason="the shared stores need the serve extra: pip install 'memrec[serve]'")

from memrec.memory.user_memory import MemoryCell, MemoryConfig, MemoryVersionError, UserMemory  # noqa: E402
from memrec.store.events import Event, KeyConflict  # noqa: E402
from memrec.serve.state import open_state  # noqa: E402
from memrec.serve.testing import fresh_store_url  # noqa: E402
from memrec.store import StoreError, open_store  # noqa: E402
from memrec.store.postgres import PostgresStore  # noqa: E402
from memrec.store.redis import RedisStore  # noqa: E402

KINDS = ["sqlite", "redis", "postgres"]
DIM = 6


@pytest.fixture(params=KINDS)
def where(request, tmp_path):
    """Where a fresh store lives: a SQLite path, or a Redis / PostgreSQL URL with a fresh prefix."""
    yield from _fresh(request.param, tmp_path)


@pytest.fixture(params=["redis", "postgres"])
def shared(request, tmp_path):
    yield from _fresh(request.param, tmp_path)


def _fresh(kind, tmp_path):
    if kind == "sqlite":
        yield str(tmp_path / "state.db")
        return
    with fresh_store_url(kind) as url:
        yield url


@pytest.fixture(scope="module")
def cell() -> MemoryCell:
    torch.manual_seed(0)
    return MemoryCell(item_dim=8, config=MemoryConfig(memory_dim=DIM, max_memory_size=3, interaction_threshold=2))


EMB = torch.randn(20, 8, generator=torch.Generator().manual_seed(0))


def real_memory(cell, items=(3, 5, 7, 2, 9)) -> UserMemory:
    memory = cell.new_memory()
    for t, item in enumerate(items):
        cell.observe(memory, item, EMB, time=float(t))
    return memory


def counting(memory: UserMemory | None, new: list[Event]) -> UserMemory:
    """apply(): one interaction per new event (the count is what a lost update would lose)."""
    memory = memory or UserMemory.fresh(np.zeros(DIM, dtype=np.float32))
    memory.interaction_count += len(new)
    memory.pending_items = (memory.pending_items + [int(e.item) for e in new])[-50:]
    return memory


def test_memory_contract(where, cell):
    with open_state(where, "v1") as store:
        assert store.get("u") is None and len(store) == 0
        memory = real_memory(cell)
        store.put("u", memory)
        assert store.get("u").to_dict() == memory.to_dict()
        np.testing.assert_array_equal(store.get("u").history, memory.history)
        bad = real_memory(cell, (1, 2))
        bad.vector[0] = np.nan
        with pytest.raises(StoreError, match="not finite"):
            store.put_many({"a": real_memory(cell), "b": bad})
        assert store.users() == ["u"] and "u" in store and "a" not in store
        store.update("u", lambda m: UserMemory(m.vector + 1, m.history, m.interaction_count + 1))
        assert store.get("u").interaction_count == 6
        with pytest.raises(RuntimeError):
            store.update("u", lambda m: (_ for _ in ()).throw(RuntimeError("boom")))
        assert store.get("u").interaction_count == 6
        assert dict(store._snapshot()).keys() == {"u"}
        assert store.delete("u") and not store.delete("u") and len(store) == 0


def test_event_log_records_once_per_key_in_one_transaction_with_the_memory(where):
    with open_state(where, "v1") as store:
        calls = []

        def apply(memory, new):
            calls.append([e.item for e in new])
            return counting(memory, new)

        assert store.record("u", [Event("1", 1.0, "a"), Event("2", 2.0, "b"), Event("1", 1.0, "a")], apply) == [True, True, False]
        assert store.record("u", [Event("2", 2.0, "b"), Event("5", 5.0), Event("5", 5.0)], apply) == [False, True, True]
        assert store.record("u", [Event("1", 1.0, "a")], apply) == [False]  # nothing new: apply not called
        for reused in ([Event("6", 6.0, "a")], [Event("6", 6.0, "c"), Event("1", 9.0, "a")]):  # a key of another event: nothing
            with pytest.raises(KeyConflict, match="idempotency key 'a' was already used for item '1' at 1.0, not for"):
                store.record("u", reused, apply)
        assert store.record("v", [Event("7", 7.0, "a")], lambda m, new: None) == [True]  # keys are per user; None: no memory
        assert calls[-2:] == [["1", "2"], ["5", "5"]]
        history, memory = store.snapshot("u")
        assert history == [Event("1", 1.0, "a"), Event("2", 2.0, "b"), Event("5", 5.0), Event("5", 5.0)]
        assert memory.interaction_count == 4 and store.snapshot("v") == ([Event("7", 7.0, "a")], None)
        with pytest.raises(RuntimeError, match="boom"):  # apply fails: neither the events nor the memory are written
            store.record("u", [Event("8", 8.0, "c")], lambda m, new: (_ for _ in ()).throw(RuntimeError("boom")))
        assert len(store.history("u")) == 4 and store.get("u").interaction_count == 4
        assert store.record("u", [Event("8", 8.0, "c")], counting) == [True]  # the key was not taken by the failed call
        assert store.snapshot("nobody") == ([], None)
        store.ping()


def test_versions_are_checked_when_a_store_opens(where):
    with open_state(where, "v1") as store:
        store.record("u", [Event("1", 1.0, "a")], counting)
    with pytest.raises(MemoryVersionError, match="was written by a model with memory version 'v1'.*'v2'"):
        open_state(where, "v2")
    with open_state(where, "history-only") as plain:  # a model without memory adopts the stored version
        assert plain.model_version == "v1" and plain.get("u").interaction_count == 1
    with open_state(where, "v2", reset_memories=True) as store:  # memories forgotten, the event log kept
        assert store.get("u") is None and store.history("u") == [Event("1", 1.0, "a")]
        assert store.record("u", [Event("1", 1.0, "a")], counting) == [False]


def test_open_store_gives_the_shared_back_ends(shared):
    with open_store(shared, "v1") as store:
        assert isinstance(store, RedisStore if shared.startswith("redis") else PostgresStore)
        assert "prefix" in repr(store) and "v1" in repr(store)


def _record_in_another_process(where, barrier, n, worker):
    with open_state(where, "v1") as store:
        barrier.wait(timeout=60)
        for i in range(n):
            store.record("shared", [Event(str(i % 7 + 1), float(i), f"w{worker}-{i}")], counting)


def test_two_processes_recording_one_user_lose_nothing(where):
    open_state(where, "v1").close()
    ctx = multiprocessing.get_context("fork")  # the children open their own connections
    barrier = ctx.Barrier(2)
    workers = [ctx.Process(target=_record_in_another_process, args=(where, barrier, 100, w)) for w in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    with open_state(where, "v1") as store:
        history, memory = store.snapshot("shared")
        assert len(history) == 200 and len({e.key for e in history}) == 200
        assert memory.interaction_count == 200  # every event reached the memory exactly once


@pytest.mark.parametrize("shared", ["redis"], indirect=True)
def test_a_redis_that_does_not_fsync_is_refused_unless_allowed(shared):
    import redis

    where = shared
    client = redis.Redis.from_url(where.split("?")[0])
    client.config_set("appendfsync", "everysec")
    try:
        with pytest.raises(StoreError, match="does not fsync each write.*appendfsync=everysec.*durable=false"):
            open_state(where, "v1")
        open_state(where + "&durable=false", "v1").close()
    finally:
        client.config_set("appendfsync", "always")


def test_changes_name_every_user_whose_log_grew_since_the_cursor_across_stores(where):
    keep = lambda memory, new: None  # noqa: E731 (no memory: the log alone)
    with open_state(where, "v1") as one, open_state(where, "v1") as two:  # two handles, as two processes
        assert one.changes(None)[0] == []
        one.record("ann", [Event("i1", 1.0)], keep)
        two.record("bob", [Event("i2", 2.0), Event("i3", 3.0)], keep)
        users, cursor = two.changes(None)
        assert sorted(users) == ["ann", "bob"]
        assert one.changes(cursor) == ([], cursor)  # nothing new: the same cursor back
        two.record("ann", [Event("i4", 4.0)], keep)
        one.record("ann", [Event("i4", 4.0, key="k")], keep)
        one.record("ann", [Event("i4", 4.0, key="k")], keep)  # a retry appends nothing
        users, later = one.changes(cursor)
        assert users == ["ann"] and later != cursor
        assert two.changes(later)[0] == []
