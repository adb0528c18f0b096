#!/usr/bin/env python
"""An independent check of a memrec ML-100K result: split and metrics rebuilt here from the raw file.

Reads ``ml-100k.inter`` with the csv module (not memrec's readers), orders each user's ratings by
timestamp (ties in file order), holds out the last item for test, and ranks every item that is not
in the user's history with numpy, ties counted against the target. Only the model's user vectors
and item table come from memrec. The NDCG@10 / HR@10 printed here must equal the ``test`` figures
in the run's metrics.json. For models that read only the history (SASRec, GRU4Rec): models with
per-user state would need memrec's user indices.

    python benchmarks/audit_ml100k.py runs/sasrec-ml-100k/checkpoint.pt --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch


def raw_sequences(path: Path) -> dict[str, list[str]]:
    rows = defaultdict(list)
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)  # typed header
        for line, (user, item, _rating, stamp) in enumerate(reader):
            rows[user].append((float(stamp), line, item))
    return {u: [item for _, _, item in sorted(r)] for u, r in rows.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", default="../shared/data")
    args = p.parse_args()

    from bench_common import require_model
    from memrec.data.batching import make_eval_batch
    from memrec.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    require_model(args.checkpoint, ckpt.config, "sasrec", "gru4rec",
                  needs="a model that reads only the history, no per-user state, as it ranks the raw file's histories alone")
    model, max_len = ckpt.model.eval(), ckpt.config.data.max_len
    index = {item: i for i, item in enumerate(ckpt.item_ids)}  # 0 = padding
    sequences = raw_sequences(Path(args.data_dir) / "ml-100k" / "ml-100k.inter")

    ndcg, hit = [], []
    users = sorted(sequences)
    for start in range(0, len(users), 256):
        chunk = users[start : start + 256]
        histories = [np.array([index[i] for i in sequences[u][:-1]], dtype=np.int64) for u in chunk]
        targets = np.array([index[sequences[u][-1]] for u in chunk])
        batch = make_eval_batch(np.zeros(len(chunk), dtype=np.int64), histories, targets, max_len)  # users unused
        with torch.no_grad():
            scores = model.score_all(batch).numpy().astype(np.float64)  # (B, N + 1)
        for r, history in enumerate(histories):
            s = scores[r].copy()
            s[0] = -np.inf
            s[history] = -np.inf
            rank = int((s >= s[targets[r]]).sum()) - 1  # pessimistic: every other item at least as high
            hit.append(rank < 10)
            ndcg.append(1.0 / np.log2(rank + 2) if rank < 10 else 0.0)
    result = {"users": len(hit), "hit@10": float(np.mean(hit)), "ndcg@10": float(np.mean(ndcg))}
    metrics = Path(args.checkpoint).with_name("metrics.json")
    if metrics.exists():
        test = json.loads(metrics.read_text())["test"]
        result["metrics.json"] = {"hit@10": test["hit@10"], "ndcg@10": test["ndcg@10"]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
