#!/usr/bin/env python
"""Latency of fsync on the disk that holds a folder: 200-byte appends, each fsync'd, 2 ms apart.
It tells whether the disk explains a service's slow durable writes.

    python benchmarks/fsync_probe.py --dir /tmp --count 1500
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=tempfile.gettempdir())
    p.add_argument("--count", type=int, default=1500)
    args = p.parse_args()
    with tempfile.NamedTemporaryFile(dir=args.dir) as f:
        latencies = []
        for _ in range(args.count):
            os.write(f.fileno(), b"x" * 200)
            tic = time.perf_counter()
            os.fsync(f.fileno())
            latencies.append((time.perf_counter() - tic) * 1000)
            time.sleep(0.002)
    ms = np.array(latencies)
    print(f"fsync in {args.dir}: p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, "
          f"max {ms.max():.2f} ms, over 20 ms: {(ms > 20).sum()} of {len(ms)}")


if __name__ == "__main__":
    main()
