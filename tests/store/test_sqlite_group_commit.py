"""Group commit in the SQLite event log: concurrent record() calls share a transaction, each returns
only after it is durable, a failing call fails alone, and a SIGKILL loses no acknowledged event."""
from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time

import numpy as np

from memrec.memory.user_memory import UserMemory
from memrec.store import StoreError
from memrec.store.events import Event
from memrec.store.sqlite_events import SQLiteStateStore

USERS = ["a", "b", "c"]


def counting(memory, new):
    """A memory that counts the events folded into it (depends on its arguments only)."""
    memory = memory or UserMemory.fresh(np.zeros(2, dtype=np.float32))
    memory.interaction_count += len(new)
    return memory


def groups(store: SQLiteStateStore) -> int:
    """How many transactions wrote the events: each group stamps its events with one recorded_at."""
    return store._conn().execute("SELECT COUNT(DISTINCT recorded_at) FROM events").fetchone()[0]


def check(store: SQLiteStateStore, acknowledged: set[str]) -> int:
    """Every acknowledged key is in the log exactly once and every memory counts its log; returns the events."""
    keys = []
    for user in USERS:
        history, memory = store.snapshot(user)
        keys += [e.key for e in history]
        assert memory is None and not history or memory.interaction_count == len(history), user
    assert len(keys) == len(set(keys)), "an event was recorded twice"
    assert acknowledged <= set(keys), f"{len(acknowledged - set(keys))} acknowledged events lost"
    return len(keys)


def as_one_group(store: SQLiteStateStore, call, calls: list[tuple]) -> None:
    """Run ``call(*args)`` for each of ``calls`` in its own thread, holding the writer lock until all are
    queued, so that they form one group; returns when every call has returned."""
    with store._writer:
        threads = [threading.Thread(target=call, args=args) for args in calls]
        for t in threads:
            t.start()
        while len(store._queue) < len(calls):
            time.sleep(0.001)
    for t in threads:
        t.join()


def test_concurrent_calls_share_transactions_and_all_are_kept(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db", "v1")
    start, acknowledged = threading.Barrier(12), set()

    def writer(w):
        start.wait()
        for i in range(25):
            key = f"w{w}-{i}"
            assert store.record(USERS[i % 3], [Event(str(i), float(i), key)], counting) == [True]
            acknowledged.add(key)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acknowledged) == 300 and check(store, acknowledged) == 300
    assert groups(store) < 300, "no two calls ever shared a transaction"


def test_a_failing_call_in_a_group_fails_alone(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db", "v1")
    store.record("a", [Event("0", 0.0, "first")], counting)
    results = {}

    def broken(memory, new):  # fails after its events were inserted: only its savepoint is rolled back
        return "not a memory"

    def call(name, user, apply):
        try:
            results[name] = store.record(user, [Event("1", 1.0, name)], apply)
        except StoreError as e:
            results[name] = e

    as_one_group(store, call, [("x", "a", counting), ("y", "a", broken), ("z", "b", counting)])
    assert results["x"] == [True] and results["z"] == [True] and "cannot store the memory of user 'a'" in str(results["y"])
    assert [e.key for e in store.history("a")] == ["first", "x"] and store.get("a").interaction_count == 2
    assert [e.key for e in store.history("b")] == ["z"]
    assert groups(store) == 2  # the first call, then one group of three


def test_a_group_whose_transaction_fails_fails_every_call(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db", "v1", timeout=0.2)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
    results = {}

    def call(user):
        try:
            results[user] = store.record(user, [Event("1", 1.0, "k")], counting)
        except StoreError as e:
            results[user] = e

    as_one_group(store, call, [(user,) for user in USERS])
    other.execute("ROLLBACK")
    assert all("cannot write to SQLite memory store" in str(results[user]) for user in USERS), results
    assert all(store.snapshot(user) == ([], None) for user in USERS)
    assert store.record("a", [Event("1", 1.0, "k")], counting) == [True]  # the key was not taken


def _record_until_killed(path, acks_path):
    store = SQLiteStateStore(path, "v1")
    acks = os.open(acks_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def writer(w):
        for i in range(100_000):
            key = f"{os.getpid()}-{w}-{i}"
            store.record(USERS[(w + i) % 3], [Event(str(i % 9), float(i), key)], counting)
            os.write(acks, f"{key}\n".encode())  # acknowledged: record() returned

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_sigkill_loses_no_acknowledged_event(tmp_path):
    path, acks = tmp_path / "state.db", tmp_path / "acks"
    SQLiteStateStore(path, "v1").close()
    ctx = multiprocessing.get_context("fork")  # the child opens its own store
    for round_ in range(3):
        child = ctx.Process(target=_record_until_killed, args=(str(path), str(acks)))
        child.start()
        time.sleep(1.5 + 0.3 * round_)  # a writer is mid-transaction most of the time
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        acknowledged = set(acks.read_text().split())
        with SQLiteStateStore(path, "v1") as store:
            assert check(store, acknowledged) >= len(acknowledged) > 0
    with SQLiteStateStore(path, "v1") as store:
        assert groups(store) < len(acknowledged), "the writers never shared a transaction"
