#!/usr/bin/env python
"""Item encoders on one thread: MiniLM texts per second on ML-100K and Amazon Scientific (no cache),
EfficientNet-Lite0 images per second (preprocessing and forward) on 640x480 images.

    OMP_NUM_THREADS=1 python benchmarks/encoder_speed.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--images", type=int, default=96)
    args = p.parse_args()
    torch.set_num_threads(1)
    from PIL import Image

    from memrec.config import DataConfig
    from memrec.data import load_dataset
    from memrec.encoders import ImageEncoder, TextEncoder, encode_item_texts

    tic = time.perf_counter()
    text = TextEncoder()
    print(f"MiniLM load (import included): {time.perf_counter() - tic:.1f} s")
    for name in ("ml-100k", "amazon-scientific"):
        ds = load_dataset(DataConfig(dataset=name, data_dir=args.data_dir, download=False))
        tic = time.perf_counter()
        encode_item_texts(ds, text, cache=False)
        seconds = time.perf_counter() - tic
        print(f"{name}: {ds.num_items} texts in {seconds:.1f} s ({ds.num_items / seconds:.0f} texts/s)")

    image = ImageEncoder()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for _ in range(args.images)]
    image(images[:8])  # warm-up
    tic = time.perf_counter()
    pixels = image.pixels(images)
    prep = time.perf_counter() - tic
    tic = time.perf_counter()
    image(pixels)
    forward = time.perf_counter() - tic
    n = len(images)
    print(f"EfficientNet-Lite0: preprocessing {n / prep:.0f} images/s, forward {n / forward:.1f} images/s, both {n / (prep + forward):.1f} images/s")


if __name__ == "__main__":
    main()
