#!/usr/bin/env python
"""What a stream replay costs, side by side on one checkpoint: one event at a time (``batch_size=1``:
one model forward, one neighbour search and one log read per event) against the batched replay
(the events between two syncs in one batch, a user's consecutive events included), and the
neighbour memory synced every 25 / 100 / 400 events. Same events, same process, alternated runs;
only the ratios are reported (the machine is shared).

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/stream_speed.py \\
        runs/stream/stream-ml-100k-sasrec-0.8-seed42/model/checkpoint.pt --cut 0.8 --events 2000

writes ``benchmarks/results/stream-speed.json``.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from bench_common import RESULTS


def timed(make, stream, batch_size: int) -> tuple[float, np.ndarray]:
    from memrec.stream import replay

    policy = make()
    try:
        tic = time.perf_counter()
        ranks = replay(policy, stream, batch_size).ranks
        return time.perf_counter() - tic, ranks
    finally:
        policy.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--cut", default="0.8")
    p.add_argument("--events", type=int, default=2000, help="the first this many stream events")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    from memrec.api import run_config
    from memrec.data import load_dataset
    from memrec.stream import cut_dataset
    from memrec.stream.policies import make_policy

    torch.set_num_threads(1)
    c = cut_dataset(load_dataset(run_config("sasrec", args.dataset).data), args.cut)
    stream = c.stream[:args.events]
    cases = {"frozen, one event at a time": ("frozen", 100, 1), "frozen, batched": ("frozen", 100, 256),
             "neighbours sync 100, one event at a time": ("neighbours", 100, 1), "neighbours sync 100, batched": ("neighbours", 100, 256),
             "neighbours sync 25, batched": ("neighbours", 25, 256), "neighbours sync 400, batched": ("neighbours", 400, 256)}
    seconds = {name: [] for name in cases}
    ranks = {}
    for _ in range(args.repeats):  # alternated: load drifts hit every case alike
        for name, (policy, sync, batch) in cases.items():
            s, r = timed(lambda: make_policy(policy, args.checkpoint, c.before, stream, sync_every=sync), stream, batch)
            seconds[name].append(s)
            ranks[name] = r
    best = {name: min(v) for name, v in seconds.items()}
    out = {"checkpoint": args.checkpoint, "cut": args.cut, "events": len(stream), "repeats": args.repeats,
           "seconds_per_1000_events_best": {k: round(1000 * v / len(stream), 2) for k, v in best.items()},
           "speedup_batched_over_one_at_a_time": {"frozen": round(best["frozen, one event at a time"] / best["frozen, batched"], 1),
                                                  "neighbours": round(best["neighbours sync 100, one event at a time"] / best["neighbours sync 100, batched"], 1)},
           "same_ranks_batched_and_one_at_a_time": bool((ranks["frozen, batched"] == ranks["frozen, one event at a time"]).all()
                                                         and (ranks["neighbours sync 100, batched"] == ranks["neighbours sync 100, one event at a time"]).all()),
           "cost_vs_sync_100": {k: round(best[f"neighbours sync {k}, batched"] / best["neighbours sync 100, batched"], 2) for k in (25, 400)},
           "command": "python benchmarks/stream_speed.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:])}
    (RESULTS / "stream-speed.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
