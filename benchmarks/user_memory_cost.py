#!/usr/bin/env python
"""Cost of the per-user memory (UR4Rec-MoE-Memory): bytes per user, and microseconds per online update.

- footprint: a user's memory (vector + ``max_memory_size`` past states, float32) as the seed
  counts it, and as stored (the SQLite store's record bytes, and its file size per user);
- one update: ``MemoryCell.observe`` of one event that fires the trigger (a GRU step on one user),
  alone and through the SQLite store (read, update, durable commit);
- batched: ``MemoryCell.update`` on B users at once, per user.

    OMP_NUM_THREADS=1 python benchmarks/user_memory_cost.py --users 1000 --dim 256 --history 10
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def per_call_us(fn, repeat: int) -> float:
    fn()
    tic = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - tic) / repeat * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--history", type=int, default=10)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(1)

    from memrec.memory.user_memory import MemoryCell, MemoryConfig
    from memrec.store import SQLiteStore, encode_memory

    config = MemoryConfig(memory_dim=args.dim, max_memory_size=args.history, interaction_threshold=1)  # every event fires
    cell = MemoryCell(args.dim, config)
    vectors = torch.randn(args.items + 1, args.dim)
    rng = np.random.default_rng(0)

    memories = {}
    for u in range(args.users):  # fill every user's history
        m = cell.new_memory()
        for item in rng.integers(1, args.items, size=args.history + 1):
            cell.observe(m, int(item), vectors)
        memories[str(u)] = m
    seed_bytes = (1 + args.history) * args.dim * 4
    record_bytes = float(np.mean([len(encode_memory(m)) for m in memories.values()]))

    one = memories["0"]
    items = iter(rng.integers(1, args.items, size=10**6).tolist())
    observe_us = per_call_us(lambda: cell.observe(one, next(items), vectors), 2000)

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "m.db", model_version=cell.version())
        store.put_many(memories)
        file_bytes = sum(f.stat().st_size for f in Path(tmp).iterdir())

        def stored_update():
            store.update("1", lambda m: (cell.observe(m, next(items), vectors), m)[1])

        sqlite_us = per_call_us(stored_update, 200)
        store.close()

    batched = {}
    for b in (1, 64, 1024):
        memory = torch.randn(b, args.dim)
        pending = torch.randn(b, args.dim)
        with torch.no_grad():
            batched[b] = per_call_us(lambda: cell.update(memory, pending), 200) / b

    result = {
        "users": args.users, "dim": args.dim, "history": args.history,
        "seed_formula_mb_per_1000_users": seed_bytes * 1000 / 2**20,
        "stored_record_bytes_per_user": record_bytes,
        "sqlite_file_mb_per_1000_users": file_bytes / args.users * 1000 / 2**20,
        "observe_one_event_us": observe_us,
        "observe_through_sqlite_us": sqlite_us,
        "gru_update_us_per_user": batched,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
