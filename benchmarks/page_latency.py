#!/usr/bin/env python
"""Latency of the requests the page at ``/`` makes, against a real ``memrec serve``, beside the
service's own ``GET /recommend`` (the page reads the same endpoints, plus four small ones).

One client, sequential requests (a person clicking), after ``--users`` users have logged
``--events`` events each: per endpoint, p50 / p99 / max in milliseconds over ``--requests`` requests,
and whether p99 is under the service's 20 ms target (docs/service.md).

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/page_latency.py \\
        --checkpoint runs/sasrec-nb-beauty-42/checkpoint.pt

writes ``benchmarks/results/page-latency.json``. A checkpoint with a neighbour memory in use (as
this one) makes ``/users/{id}/neighbours`` search it.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench_common import RESULTS
from memrec.serve.testing import ServiceProcess
from memrec.train.checkpoint import load_checkpoint

TARGET_MS = 20.0


def timed(client: httpx.Client, method: str, path: str, **kwargs) -> float:
    tic = time.perf_counter()
    reply = client.request(method, path, **kwargs)
    took = (time.perf_counter() - tic) * 1000
    if reply.status_code != 200:
        raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.text[:200]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--users", type=int, default=50, help="users who log events before the measurement")
    parser.add_argument("--events", type=int, default=8, help="events per user")
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint")
    parser.add_argument("--output", default=str(RESULTS / "page-latency.json"))
    args = parser.parse_args()

    items = [i for i in load_checkpoint(args.checkpoint).item_ids[1:]]
    rng = np.random.default_rng(0)
    users = [f"page-user-{n}" for n in range(args.users)]
    with tempfile.TemporaryDirectory() as folder, ServiceProcess(args.checkpoint, str(Path(folder) / "state.db")) as service, \
            httpx.Client(base_url=service.url, timeout=30.0) as client:
        for n, user in enumerate(users):
            events = [{"user": user, "item": items[int(i)], "timestamp": float(n * 100 + j)}
                      for j, i in enumerate(rng.choice(len(items), args.events, replace=False))]
            client.post("/events", json={"events": events}).raise_for_status()
        shown = rng.choice(len(items), 10, replace=False)
        requests = {
            "GET /": lambda u: ("GET", "/", {}),
            "GET /model": lambda u: ("GET", "/model", {}),
            "GET /users?limit=6": lambda u: ("GET", "/users", {"params": {"limit": 6}}),
            "GET /recommend?k=10": lambda u: ("GET", "/recommend", {"params": {"user": u, "k": 10}}),
            "GET /users/{id}?limit=50": lambda u: ("GET", f"/users/{u}", {"params": {"limit": 50}}),
            "GET /users/{id}/neighbours?k=5": lambda u: ("GET", f"/users/{u}/neighbours", {"params": {"k": 5}}),
            "GET /items (10 ids)": lambda u: ("GET", "/items", {"params": [("id", items[int(i)]) for i in shown]}),
        }
        for make in requests.values():  # warm every path once (the titles are read in the background)
            method, path, kwargs = make(users[0])
            timed(client, method, path, **kwargs)
        results = {}
        for name, make in requests.items():
            took = np.array([timed(client, *make(users[r % len(users)])[:2], **make(users[r % len(users)])[2]) for r in range(args.requests)])
            results[name] = {"p50_ms": round(float(np.percentile(took, 50)), 2), "p99_ms": round(float(np.percentile(took, 99)), 2),
                             "max_ms": round(float(took.max()), 2), "under_target": bool(np.percentile(took, 99) < TARGET_MS)}
            print(f"{name:32s} p50 {results[name]['p50_ms']:7.2f}  p99 {results[name]['p99_ms']:7.2f}  max {results[name]['max_ms']:7.2f} ms")
    report = {"checkpoint": args.checkpoint, "users": args.users, "events_per_user": args.events, "requests_per_endpoint": args.requests,
              "target_p99_ms": TARGET_MS, "client": "one, sequential", "endpoints": results}
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
