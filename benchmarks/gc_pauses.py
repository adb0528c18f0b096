#!/usr/bin/env python
"""What a full garbage collection costs the service, before and after it freezes its start-up objects.

Builds the service app as ``memrec serve`` does (model loaded, store open), counts the objects the
collector tracks, and times full collections (median of ``--repeats``) before and after
:func:`memrec.runtime.freeze_startup_objects`. Every request waits behind such a pause.

    OMP_NUM_THREADS=1 python benchmarks/gc_pauses.py --checkpoint runs/ur4rec-moe-ml-100k/checkpoint.pt

Without ``--checkpoint`` it uses an untrained UR4Rec-MoE over ML-100K's items, as serve_load.py does.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench_common import RESULTS, write_report
from serve_load import ml100k_item_ids

from memrec.runtime import freeze_startup_objects
from memrec.serve.app import ServeConfig, create_app
from memrec.serve.testing import tiny_checkpoint


def full_collection_ms(repeats: int) -> float:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        gc.collect()
        times.append(1000 * (time.perf_counter() - tic))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--data-dir", default=os.environ.get("MEMREC_DATA_DIR", "../shared/data"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=str(RESULTS / "gc-pauses.json"))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="memrec-gc-"))
    checkpoint = args.checkpoint or tiny_checkpoint(folder / "ur4rec.pt", "ur4rec-moe", ml100k_item_ids(args.data_dir), max_len=50,
                                                    hidden_size=64, num_layers=2, inner_size=256, memory_dim=64, interaction_threshold=10)
    create_app(ServeConfig(checkpoint=str(checkpoint), store=str(folder / "state.db")))
    report = {"checkpoint": str(args.checkpoint or "untrained ur4rec-moe"), "tracked_objects": len(gc.get_objects()),
              "full_collection_ms": full_collection_ms(args.repeats)}
    report["frozen_objects"] = freeze_startup_objects()
    report["tracked_objects_after_freeze"] = len(gc.get_objects())
    report["full_collection_ms_after_freeze"] = full_collection_ms(args.repeats)
    write_report(report, args.json)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
