#!/usr/bin/env python
"""Training in 1 and 2 processes side by side (issue 21): seconds per epoch, test metrics, peak memory.

Each run is ``memrec train`` with the frozen SASRec config of the data set, in one process or with
``--nproc 2`` (torchrun, DDP over gloo), the runs of one seed interleaved (1, 2, 1, 2, ...) so that
both see the same load. Per run: training seconds per epoch (mean over epochs), evaluation seconds,
epochs, best epoch, validation and test NDCG@10 / HR@10 (full ranking, the real protocol), the peak
resident memory of the largest process (the launcher's children, ``ru_maxrss``), and for 2 processes
whether one process's evaluation of the checkpoint equals the run's gathered metrics exactly.

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/distributed.py --dataset ml-100k --seeds 42 43
    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/distributed.py --dataset beauty --epochs 4

write ``benchmarks/results/distributed-DATASET.json`` (``--epochs``: a capped run, said in the file).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_common import RESULTS, markdown_table, write_report

PEAK = "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)"


def train(dataset: str, nproc: int, seed: int, epochs: int | None, out: Path) -> dict:
    """One ``memrec train`` run in ``nproc`` processes; its figures."""
    cmd = [sys.executable, "-m", "memrec", "train", "--model", "sasrec", "--dataset", dataset, "--output", str(out), f"--train.seed={seed}"]
    cmd += ["--nproc", str(nproc)] if nproc > 1 else []
    cmd += [f"--train.epochs={epochs}"] if epochs else []
    done = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    m = json.loads((out / "metrics.json").read_text())
    row = {"processes": nproc, "seed": seed, "epochs": m["epochs"], "best_epoch": m["best_epoch"],
           "train_seconds_per_epoch": round(m["train_seconds_per_epoch"], 2), "eval_seconds": round(m["eval_seconds"], 2),
           "valid": {k: m["valid"][k] for k in ("ndcg@10", "hit@10")}, "test": {k: m["test"][k] for k in ("ndcg@10", "hit@10")},
           "peak_rss_mib": round(int(done.stdout.split()[-1]) / 1024), "command": " ".join(cmd[2:]).replace(str(out), "DIR")}
    if nproc > 1:
        row["gathered_equals_one_process"] = one_process_equal(out, m)
    return row


def one_process_equal(out: Path, metrics: dict) -> bool:
    """Whether one process's evaluation of the run's checkpoint equals the run's (sharded, gathered) metrics exactly."""
    from memrec.api import load

    rec = load(out)
    return rec.evaluate("valid") == metrics["valid"] and rec.evaluate("test") == metrics["test"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--epochs", type=int, help="cap the epochs (a capped run: not the frozen config's result)")
    parser.add_argument("--output", help="default: benchmarks/results/distributed-DATASET.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for nproc in (1, 2):
                rows.append(train(args.dataset, nproc, seed, args.epochs, Path(tmp) / f"{nproc}-{seed}"))
                print(json.dumps(rows[-1]), flush=True)
                report(args, rows)  # written after every run: an interrupted benchmark keeps its finished runs


def report(args, rows: list[dict]) -> None:
    table = markdown_table(["processes", "seed", "epochs", "s / epoch", "eval s", "test NDCG@10", "test HR@10", "peak MiB"],
                           [[r["processes"], r["seed"], r["epochs"], r["train_seconds_per_epoch"], r["eval_seconds"], r["test"]["ndcg@10"],
                             r["test"]["hit@10"], r["peak_rss_mib"]] for r in rows])
    print(table)
    result = {"dataset": args.dataset, "model": "sasrec", "config": f"the frozen sasrec-{args.dataset} config",
              "capped_epochs": args.epochs, "machine": "2 CPU cores shared with other jobs, one torch thread per process",
              "runs": rows, "markdown": table}
    print(write_report(result, args.output or RESULTS / f"distributed-{args.dataset}.json"))


if __name__ == "__main__":
    main()
