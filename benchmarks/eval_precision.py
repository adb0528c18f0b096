#!/usr/bin/env python
"""Full-ranking validation in float32 against bfloat16 autocast of the encoder (scores stay float32):
seconds per evaluation, NDCG@10, and how many users keep the same rank. One thread.

    OMP_NUM_THREADS=1 python benchmarks/eval_precision.py runs/sasrec-ml-100k/checkpoint.pt --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import time

import torch


def timed(fn, repeat: int = 7):
    fn()
    times, result = [], None
    for _ in range(repeat):
        tic = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - tic)
    return result, sorted(times)[repeat // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", default="../shared/data")
    args = p.parse_args()
    torch.set_num_threads(1)
    from bench_common import require_model
    from memrec.data import load_dataset, split_dataset
    from memrec.train.checkpoint import load_checkpoint
    from memrec.train.evaluate import metrics_from_ranks, rank_evalset

    ckpt = load_checkpoint(args.checkpoint)
    require_model(args.checkpoint, ckpt.config, "sasrec", "gru4rec", "memory-moe",
                  needs="a model that ranks through encode_last, which it runs in bfloat16 (others would compare float32 with itself)")
    ckpt.config.data.data_dir = args.data_dir
    split = split_dataset(load_dataset(ckpt.config.data), ckpt.config.data.split)
    model, max_len = ckpt.model.eval(), ckpt.config.data.max_len
    fp32, fp32_s = timed(lambda: rank_evalset(model, split.valid, max_len, 256))

    encode_last = model.encode_last

    def bf16_encode_last(items, last, users=None):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return encode_last(items, last, users).float()

    model.encode_last = bf16_encode_last
    bf16, bf16_s = timed(lambda: rank_evalset(model, split.valid, max_len, 256))
    print(f"float32:  {fp32_s:.3f} s, NDCG@10 {metrics_from_ranks(fp32)['ndcg@10']:.4f}")
    print(f"bfloat16: {bf16_s:.3f} s, NDCG@10 {metrics_from_ranks(bf16)['ndcg@10']:.4f}")
    print(f"same rank: {(fp32 == bf16).mean():.1%} of users; same top-10 membership: {((fp32 < 10) == (bf16 < 10)).mean():.1%}")


if __name__ == "__main__":
    main()
