"""Sampled softmax against full cross-entropy on real data: does the logQ correction matter?

Trains SASRec (its frozen ML-100K config, neighbour memory off, at most ``--epochs`` epochs) once per loss: full cross-entropy,
then sampled softmax with popularity-drawn or in-batch negatives, each with and without the logQ
correction (``train.loss=sampled_softmax``, ``train.sampler``, ``train.logq``). The comparison is on
validation NDCG@10 (full ranking, history masked, pessimistic ties); test figures are recorded too.
Writes ``benchmarks/results/scale-loss-DATASET.json``.

Run: OMP_NUM_THREADS=1 python benchmarks/scale_loss.py --dataset ml-100k
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from memrec.api import run_config
from memrec.train.run import train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {  # name -> train overrides (the loss runs below were run in this order)
    "ce": {"loss": "ce"},
    "popularity-logq": {"loss": "sampled_softmax", "sampler": "popularity", "logq": True},
    "popularity-no-logq": {"loss": "sampled_softmax", "sampler": "popularity", "logq": False},
    "in_batch-logq": {"loss": "sampled_softmax", "sampler": "in_batch", "logq": True},
    "in_batch-no-logq": {"loss": "sampled_softmax", "sampler": "in_batch", "logq": False},
    "uniform": {"loss": "sampled_softmax", "sampler": "uniform"},
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=30, help="the same epoch budget for every loss (early stopping may end sooner)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args(argv)
    out = ROOT / "benchmarks" / "results" / f"scale-loss-{args.dataset}.json"
    results = json.loads(out.read_text())["variants"] if out.exists() else {}
    for name in args.variants:
        train = {**VARIANTS[name], "num_negatives": args.negatives, "seed": args.seed, "epochs": args.epochs}
        cfg = run_config("sasrec", args.dataset, memory="off", settings={"train": train})
        folder = ROOT / "runs" / f"scale-loss-{args.dataset}-{name}-{args.seed}"
        metrics = train_and_evaluate(cfg, folder, progress=False, overwrite=True)
        results[name] = {"train": train, "valid_ndcg@10": round(metrics["valid"]["ndcg@10"], 4), "valid_hit@10": round(metrics["valid"]["hit@10"], 4),
                         "test_ndcg@10": round(metrics["test"]["ndcg@10"], 4), "test_hit@10": round(metrics["test"]["hit@10"], 4),
                         "epochs": metrics["epochs"], "best_epoch": metrics["best_epoch"],
                         "seconds_per_epoch": round(metrics["train_seconds_per_epoch"], 2)}
        print(name, results[name], flush=True)
        out.write_text(json.dumps({"benchmark": "benchmarks/scale_loss.py", "dataset": args.dataset, "model": "sasrec (frozen ML-100K config, memory off)",
                                   "command": "OMP_NUM_THREADS=1 python benchmarks/scale_loss.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                                   "protocol": "leave-one-out, full ranking, history masked, pessimistic ties; compared on validation",
                                   "variants": results}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
