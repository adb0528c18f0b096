#!/usr/bin/env python
"""How often the drift trigger fires for a trained UR4Rec-MoE-Memory checkpoint: interactions per
memory update for several drift thresholds, over the training sequences of its data set.

    python benchmarks/drift_rates.py runs/ur4rec-moe-ml-100k/checkpoint.pt --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import dataclasses

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.6, 0.9, 1.0, 1.1, 1.2])
    args = p.parse_args()
    torch.set_num_threads(1)
    from bench_common import require_model
    from memrec.data import load_dataset, split_dataset
    from memrec.memory.user_memory import UpdateTrigger
    from memrec.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    needs = "a per-user memory with a drift trigger (use_memory: true)"
    require_model(args.checkpoint, ckpt.config, "ur4rec-moe", needs=needs)
    cell = ckpt.model.user_memory_cell()  # None: a ur4rec-moe trained without its memory
    if cell is None:
        raise SystemExit(f"drift_rates.py: error: {args.checkpoint} is a ur4rec-moe checkpoint without its memory; this benchmark needs {needs}")
    ckpt.config.data.data_dir = args.data_dir
    ds = load_dataset(ckpt.config.data)
    split = split_dataset(ds, ckpt.config.data.split)
    train = [s for s in split.train[: args.users] if len(s)]
    items = torch.zeros(len(train), max(map(len, train)), dtype=torch.long)
    for r, s in enumerate(train):
        items[r, : len(s)] = torch.from_numpy(s)
    with torch.no_grad():
        vectors = ckpt.model.item_embeddings()[items]
    for threshold in args.thresholds:
        cell.config = dataclasses.replace(cell.config, update_trigger=UpdateTrigger.DRIFT_THRESHOLD, drift_threshold=threshold)
        fires = cell.fire_mask(items, vectors, None)
        per_update = float((items > 0).sum()) / max(1, int(fires.sum()))
        print(f"drift_threshold {threshold}: {per_update:.2f} interactions per update")


if __name__ == "__main__":
    main()
