"""Load on loopback: p50 / p99 latency and throughput of POST /events and GET /recommend at a fixed rate.

Open loop: requests are sent on a fixed schedule (``--rate`` per second) whatever the replies do,
and each latency is measured from its scheduled time, so a slow reply delays the ones behind it
in the figures too (no coordinated omission). The client runs on the same machine as the service.

    OMP_NUM_THREADS=1 python benchmarks/serve_load.py --store /tmp/state.db --rate 200 --seconds 10

Without ``--checkpoint`` it serves an untrained UR4Rec-MoE (the default config: 64-d, 2 layers,
max_len 50, memory updated every 10 events) over ML-100K's 1,682 items: latency depends on the
architecture and the catalogue, not on what the weights learned.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from memrec.serve.testing import ServiceProcess, tiny_checkpoint


def ml100k_item_ids(data_dir: str) -> list[str]:
    ids = sorted({line.split("\t")[1] for line in Path(data_dir, "ml-100k", "ml-100k.inter").read_text().splitlines()[1:]}, key=int)
    return ["[PAD]", *ids]


async def run_phase(url: str, make_request, rate: float, seconds: float) -> dict:
    """One open-loop phase. The client's own garbage collector is off while it runs: its full
    collections (the thousands of pending tasks) paused the client, and the figures would have
    charged those pauses to the service."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return await _run_phase(url, make_request, rate, seconds)
    finally:
        gc.enable()
        gc.unfreeze()


async def _run_phase(url: str, make_request, rate: float, seconds: float) -> dict:
    latencies, statuses = [], []
    async with httpx.AsyncClient(base_url=url, timeout=10.0, limits=httpx.Limits(max_connections=64)) as client:
        start = time.perf_counter() + 0.1
        tasks = []

        async def one(n: int, at: float):
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            method, path, kwargs = make_request(n)
            reply = await client.request(method, path, **kwargs)
            latencies.append(time.perf_counter() - at)
            statuses.append(reply.status_code)

        for n in range(int(rate * seconds)):
            tasks.append(asyncio.create_task(one(n, start + n / rate)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"requests": len(ms), "rate_asked": rate, "throughput": round(len(ms) / elapsed, 1), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2), "non_200": sum(s != 200 for s in statuses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--store", help="default: a fresh SQLite file")
    parser.add_argument("--data-dir", default=os.environ.get("MEMREC_DATA_DIR", "../shared/data"))
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--users", type=int, default=943)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of both requests at the rate before measuring")
    parser.add_argument("--output", help="write the results as JSON")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="memrec-load-"))
    items = ml100k_item_ids(args.data_dir)
    checkpoint = args.checkpoint or tiny_checkpoint(folder / "ur4rec.pt", "ur4rec-moe", items, max_len=50, hidden_size=64, num_layers=2,
                                                    inner_size=256, memory_dim=64, interaction_threshold=10)
    store = args.store or str(folder / "state.db")
    rng = random.Random(0)

    def event(n, prefix="u"):
        return "POST", "/events", {"json": {"user": f"{prefix}{n % args.users}", "item": rng.choice(items[1:]), "timestamp": float(n),
                                            "key": f"{prefix}e{n}"}}

    def recommend(n):
        return "GET", "/recommend", {"params": {"user": f"u{rng.randrange(args.users)}", "k": 10}}

    with ServiceProcess(checkpoint, store) as service:
        if args.warmup > 0:  # first requests build kernels and connections: not the steady state measured here
            asyncio.run(run_phase(service.url, lambda n: event(n, "warmup-") if n % 2 else recommend(n), args.rate, args.warmup))
        results = {"warmup_seconds": args.warmup, "store": store.split("?")[0] if "://" in store else "sqlite", "cpu_count": os.cpu_count(), "rate": args.rate, "seconds": args.seconds,
                   "events": asyncio.run(run_phase(service.url, event, args.rate, args.seconds)),
                   "recommend": asyncio.run(run_phase(service.url, recommend, args.rate, args.seconds))}
    print(json.dumps(results, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
