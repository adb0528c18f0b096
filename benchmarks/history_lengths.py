#!/usr/bin/env python
"""How much history lies beyond a model's window: per data set, the training sequences' mean length
and how many users have more training items than ``--window`` (what a memory could add).

    python benchmarks/history_lengths.py ml-100k amazon-scientific --data-dir ../shared/data
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", nargs="+")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--window", type=int, default=50)
    args = p.parse_args()
    from memrec.config import DataConfig
    from memrec.data import load_dataset, split_dataset

    for name in args.datasets:
        split = split_dataset(load_dataset(DataConfig(dataset=name, data_dir=args.data_dir, download=False)))
        lengths = np.array([len(s) for s in split.train])
        longer = int((lengths > args.window).sum())
        print(f"{name}: training sequences {lengths.mean():.1f} items on average; {longer} of {len(lengths)} users "
              f"({longer / len(lengths):.1%}) have more than {args.window}")


if __name__ == "__main__":
    main()
