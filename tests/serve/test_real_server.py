"""The service as it runs: `memrec serve` in real processes (uvicorn) on loopback.

- Crash safety: SIGKILL the service again and again while a client sends events; every event that
  was acknowledged is in the history after a restart, exactly once, and reflected in the memory.
- Concurrency: two service processes on one Redis or PostgreSQL store, the same users written
  through both at once; zero lost updates.
- Process settings: start-up objects frozen out of garbage collection, 256 worker threads.
"""
from __future__ import annotations

import random
import threading
import time

import httpx
import numpy as np
import pytest

from memrec.errors import ConfigError
from memrec.serve.app import ServeConfig
from memrec.serve.model import ServedModel
from memrec.serve.state import open_state
from memrec.serve.testing import ServiceProcess

from .conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
USERS = ["alice", "bob", "carol"]


def send_until_acknowledged(url_of, event: dict, acked: list, stop: threading.Event) -> None:
    """POST one event (with its idempotency key) until a 200 comes back, whatever happens to the service."""
    while not stop.is_set():
        try:
            reply = httpx.post(url_of() + "/events", json=event, headers=AUTH, timeout=5.0)
        except httpx.TransportError:  # the service is down: try again, same key
            time.sleep(0.02)
            continue
        assert reply.status_code == 200, reply.text
        acked.append(event["key"])
        return


def check_state(checkpoint, where, acked: list[str]) -> None:
    """Every acknowledged key once in its user's history; each memory equal to its history replayed."""
    served = ServedModel.load(checkpoint)
    with open_state(where, served.version) as store:
        keys = []
        for user in USERS:
            history, memory = store.snapshot(user)
            keys += [e.key for e in history]
            replayed = served.replay(history)
            assert memory.interaction_count == len(history)
            np.testing.assert_array_equal(memory.vector, replayed.vector)
            assert memory.to_dict() == replayed.to_dict()
    assert len(keys) == len(set(keys)), "an event was applied twice"
    assert set(acked) <= set(keys), f"{len(set(acked) - set(keys))} acknowledged events lost"


def test_sigkill_loses_no_acknowledged_event(checkpoints, tmp_path):
    checkpoint, where = checkpoints["ur4rec-moe"], str(tmp_path / "state.db")
    service = ServiceProcess(checkpoint, where, token=TOKEN).start()
    acked, stop, rng = [], threading.Event(), random.Random(0)

    def client():
        n = 0
        while not stop.is_set():
            user = USERS[n % len(USERS)]
            send_until_acknowledged(lambda: service.url, {"user": user, "item": f"i{rng.randint(1, 60)}", "timestamp": float(n), "key": f"e{n}"}, acked, stop)
            n += 1

    thread = threading.Thread(target=client)
    thread.start()
    try:
        for round_ in range(1, 4):  # kill once at least 10 more events were acknowledged, however slow the machine
            deadline = time.monotonic() + 60
            while len(acked) < 10 * round_ and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.05))  # the client is mid-request most of the time
            service.kill()
            service.start()
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=30)
        service.kill()
    assert len(acked) >= 30, f"only {len(acked)} events were acknowledged"
    check_state(checkpoint, where, acked)


@pytest.mark.parametrize("shared_store", ["redis", "postgres"], indirect=True)
def test_two_service_processes_on_one_shared_store_lose_no_update(checkpoints, shared_store):
    checkpoint = checkpoints["ur4rec-moe"]
    services = [ServiceProcess(checkpoint, shared_store, token=TOKEN) for _ in range(2)]
    starting = [threading.Thread(target=s.start) for s in services]
    for t in starting:
        t.start()
    for t in starting:
        t.join()
    acked, stop = [], threading.Event()

    def client(worker: int):
        with httpx.Client(base_url=services[worker].url, headers=AUTH, timeout=10.0) as http:
            for n in range(60):
                user = USERS[n % len(USERS)]
                reply = http.post("/events", json={"user": user, "item": f"i{(n * 7 + worker) % 60 + 1}", "timestamp": float(n), "key": f"w{worker}-{n}"})
                assert reply.status_code == 200, reply.text
                acked.append(f"w{worker}-{n}")

    try:
        threads = [threading.Thread(target=client, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for s in services:
            s.stop()
    assert len(acked) == 120
    check_state(checkpoint, shared_store, acked)


def test_the_service_applies_its_process_settings(checkpoints, tmp_path):
    """Start-up objects frozen: full collections would otherwise walk the ~200,000 objects of torch,
    FastAPI and the model and stall every request behind them for tens of milliseconds. Enough worker
    threads: each event reply holds one while it waits for its group commit."""
    for extra, threads in (([], ServeConfig.worker_threads), (["--worker-threads", "64"], 64)):
        with ServiceProcess(checkpoints["ur4rec-moe"], str(tmp_path / "state.db"), token=TOKEN, extra=extra) as service:
            text = httpx.get(service.url + "/metrics", timeout=5.0).text
        values = {line.split()[0]: float(line.split()[-1]) for line in text.splitlines() if line.startswith("memrec_") and " " in line}
        assert values.get("memrec_gc_frozen_objects", 0) > 50_000, values
        assert values.get("memrec_worker_threads") == threads
    assert ServeConfig.worker_threads == 256
    with pytest.raises(ConfigError, match="worker_threads must be >= 1"):
        ServeConfig(checkpoint="x.pt", worker_threads=0)
