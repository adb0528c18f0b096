#!/usr/bin/env python
"""A finished `memrec tune` study as a results JSON: every trial (state, validation NDCG@10, epochs
reported, seconds, values), the best trial, and optionally the test figures of the best config
trained again over seeds (`memrec train --config STUDY/best.yaml --train.seed=S --output DIR`).

    memrec tune --model sasrec --dataset amazon-scientific --trials 20 --minutes 30 --output STUDY
    python benchmarks/tune_study.py STUDY --command "memrec tune ..." [--confirm DIR ...] \\
        --json benchmarks/results/tune-sasrec-scientific.json
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from bench_common import write_report


def study_report(study: Path, command: str, confirm: list[str]) -> dict:
    """The trials of ``study/trials.csv``, the best of them, and the confirming runs' metrics."""
    trials = list(csv.DictReader(open(study / "trials.csv")))
    done = [t for t in trials if t["state"] == "complete"]
    best = max(done, key=lambda t: float(t["valid_ndcg@10"])) if done else None
    runs = []
    for folder in confirm:
        m = json.loads((Path(folder) / "metrics.json").read_text())
        runs.append({"run": folder, "seed": m["seed"], "valid_ndcg@10": m["valid"]["ndcg@10"], "test": {k: m["test"][k] for k in ("ndcg@10", "hit@10")},
                     "best_epoch": m["best_epoch"], "epochs": m["epochs"]})
    return {"benchmark": "tune_study", "command": command, "trials": trials, "best": best, "confirm": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study", help="the --output folder of memrec tune")
    p.add_argument("--command", required=True, help="the memrec tune command that made the study, as run")
    p.add_argument("--confirm", nargs="*", default=[], help="run folders of memrec train --config STUDY/best.yaml")
    p.add_argument("--json", required=True, help="where to write the report")
    args = p.parse_args()
    print(write_report(study_report(Path(args.study), args.command, args.confirm), args.json))


if __name__ == "__main__":
    main()
