#!/usr/bin/env python
"""memrec vs RecBole 1.2.1, side by side on one machine: SASRec (or GRU4Rec) on the same data
under the same protocol (leave-one-out, full ranking), alternating the two in one run.

Timing mode trains a few epochs of each, alternating peer and memrec `--rounds` times, and prints
seconds per training epoch, seconds for one full evaluation of all validation users and peak
memory (each side runs in its own process), with the ratios. Both sides use RecBole's default
SASRec (hidden 64, 2 layers, 2 heads, inner 256, dropout 0.5), max length 50, batch 256, Adam lr
1e-3, CE loss, one thread. Full mode trains both to early stopping and reports test HR@10 / NDCG@10
and the time each needed.

    python benchmarks/peer_sasrec.py --dataset ml-100k --epochs 3 --rounds 2
    python benchmarks/peer_sasrec.py --dataset beauty --epochs 1 --rounds 1
    python benchmarks/peer_sasrec.py --dataset ml-100k --mode full --max-minutes 40
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memrec.runtime import MMAP_THRESHOLD_MAX, TRIM_THRESHOLD

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("MEMREC_DATA_DIR", HERE.parent.parent / "shared" / "data"))
S3REC_FILES = {"beauty": "s3rec/Beauty.txt", "sports": "s3rec/Sports_and_Outdoors.txt", "lastfm": "s3rec/LastFM.txt"}
PEER_MODEL = {"sasrec": "SASRec", "gru4rec": "GRU4Rec"}
# RecBole 1.2.1 defaults for the two models, so that both sides train the same network
PEER_DEFAULTS = {
    "sasrec": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "inner_size": 256, "dropout": 0.5},
    "gru4rec": {"embedding_size": 64, "hidden_size": 128, "num_layers": 1, "dropout": 0.3},
}


def memrec_config(model: str, dataset: str, threads: int):
    from memrec.config import RunConfig

    return RunConfig.from_dict({
        "model": model,
        "data": {"dataset": dataset, "data_dir": str(DATA), "max_len": 50, "download": False},
        "train": {"batch_size": 256, "lr": 0.001, "loss": "ce", "threads": threads, "patience": 10, "seed": 2020},
        "model_config": PEER_DEFAULTS[model],
    })


def memrec_timing(args) -> dict:
    """Run in a child process: N timed epochs and one timed full validation evaluation."""
    import torch

    from memrec.data import load_dataset, split_dataset
    from memrec.models import build_model
    from memrec.runtime import keep_freed_memory
    from memrec.train import Trainer
    from memrec.train.trainer import seed_everything

    config = memrec_config(args.model, args.dataset, args.threads)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `memrec train` does
    seed_everything(config.train.seed)
    ds = load_dataset(config.data)
    split = split_dataset(ds)
    model = build_model(args.model, ds.num_items, config.data.max_len, config.model_config)
    trainer = Trainer(model, split, config, progress=False)
    epochs = []
    for epoch in range(1, args.epochs + 1):
        tic = time.perf_counter()
        trainer.train_epoch(epoch)
        epochs.append(time.perf_counter() - tic)
    eval_times = []
    for _ in range(args.eval_repeats):
        tic = time.perf_counter()
        valid = trainer.validate()
        eval_times.append(time.perf_counter() - tic)
    return {"peer": "memrec", "train_seconds_per_epoch": {"list": epochs, "mean": sum(epochs) / len(epochs)},
            "eval_seconds": sorted(eval_times)[len(eval_times) // 2], "eval_seconds_list": eval_times, "valid": valid, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def memrec_full(args) -> dict:
    from memrec.train import train_and_evaluate

    config = memrec_config(args.model, args.dataset, args.threads)
    config.train.max_minutes = args.max_minutes
    with tempfile.TemporaryDirectory() as out:
        tic = time.perf_counter()
        metrics = train_and_evaluate(config, out, log=lambda *_: None, progress=False)
        metrics["wall_seconds"] = time.perf_counter() - tic
    metrics["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return metrics


def peer_command(args, output: Path) -> list[str]:
    python = subprocess.run(["bash", str(HERE / "peer" / "setup_recbole.sh")], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    cmd = [python, str(HERE / "peer" / "recbole_runner.py"), "--model", PEER_MODEL[args.model], "--mode", args.mode,
           "--threads", str(args.threads), "--output", str(output)]
    if args.dataset in S3REC_FILES:
        cmd += ["--s3rec-file", str(DATA / S3REC_FILES[args.dataset]), "--dataset", args.dataset]
    else:
        cmd += ["--dataset-dir", str(DATA), "--dataset", args.dataset]
    if args.mode == "timing":
        cmd += ["--epochs", str(args.epochs), "--eval-repeats", str(args.eval_repeats)]
    elif args.max_minutes:
        cmd += ["--max-minutes", str(args.max_minutes)]
    return cmd


def run_side(args, side: str, tmp: Path, round_: int) -> dict:
    output = tmp / f"{side}-{round_}.json"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    if side == "recbole-malloc":  # glibc's tunables, set to what memrec.runtime.keep_freed_memory sets
        env.update(MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD_MAX), MALLOC_TRIM_THRESHOLD_=str(TRIM_THRESHOLD))
    if side.startswith("recbole"):
        cmd = peer_command(args, output)
    else:
        cmd = [sys.executable, __file__, "--child", "--output", str(output)] + [a for a in sys.argv[1:] if a != "--child"]
    tic = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL if not args.verbose else None)
    result = json.loads(output.read_text())
    result["process_seconds"] = time.perf_counter() - tic
    return result


def summarize(args, runs: dict[str, list[dict]]) -> dict:
    def mean(side, key):
        values = [r[key]["mean"] if isinstance(r[key], dict) else r[key] for r in runs[side]]
        return sum(values) / len(values)

    rows = {}
    if args.mode == "timing":
        keys = ("train_seconds_per_epoch", "eval_seconds", "peak_rss_mib")
    else:
        keys = ("train_seconds", "eval_seconds", "peak_rss_mib")
        for side in runs:
            for r in runs[side]:
                r.setdefault("train_seconds", sum(r.get("train_seconds_per_epoch", {}).get("list", [])) if side == "recbole" else r.get("train_seconds"))
    for key in keys:
        rows[key] = {"recbole": mean("recbole", key), "memrec": mean("memrec", key)}
        rows[key]["ratio"] = rows[key]["recbole"] / rows[key]["memrec"]
    if runs.get("recbole-malloc"):
        for key in keys:
            rows[f"{key} (RecBole with memrec's malloc settings)"] = row = {"recbole": mean("recbole-malloc", key), "memrec": mean("memrec", key)}
            row["ratio"] = row["recbole"] / row["memrec"]
    if args.mode == "full":
        for side in runs:
            rows[f"{side}_test"] = {k: runs[side][0]["test"].get(k) for k in ("hit@10", "ndcg@10")}
            rows[f"{side}_epochs"] = runs[side][0].get("epochs")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--model", default="sasrec", choices=sorted(PEER_MODEL))
    p.add_argument("--mode", default="timing", choices=["timing", "full"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--eval-repeats", type=int, default=5, help="timing: time this many full evaluations per side and report the median")
    p.add_argument("--peer-malloc", action="store_true",
                   help="also run RecBole with the glibc malloc settings that memrec applies to itself (like for like)")
    p.add_argument("--rounds", type=int, default=2, help="timing: alternate the two sides this many times")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the summary here")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        result = memrec_timing(args) if args.mode == "timing" else memrec_full(args)
        Path(args.output).write_text(json.dumps(result, default=float))
        return
    sides = ("recbole", "memrec", "recbole-malloc") if args.peer_malloc else ("recbole", "memrec")
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds if args.mode == "timing" else 1):
            for side in sides:
                runs[side].append(run_side(args, side, Path(tmp), round_))
                print(f"round {round_ + 1}: {side} done", file=sys.stderr)
    summary = {"dataset": args.dataset, "model": args.model, "mode": args.mode, "threads": args.threads, "epochs": args.epochs, **summarize(args, runs), "runs": runs}
    print(f"{args.model} on {args.dataset}, {args.threads} thread(s), {args.mode}:")
    print(f"{'':28s}{'RecBole 1.2.1':>14s}{'memrec':>12s}{'ratio':>9s}")
    for key, row in summary.items():
        if isinstance(row, dict) and "ratio" in row:
            print(f"{key:28s}{row['recbole']:14.3f}{row['memrec']:12.3f}{row['ratio']:8.1f}x")
    if args.mode == "full":
        for side in ("recbole", "memrec"):
            print(f"{side} test: {summary[side + '_test']} after {summary[side + '_epochs']} epochs")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, default=float))


if __name__ == "__main__":
    main()
