#!/usr/bin/env python
"""The export equality check on a trained run (issue 21): ``memrec export`` to ONNX and to torch.export,
each compared with eager scores on sampled test users (largest score difference, same top 10).

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/export.py runs/sasrec-nb-beauty-42 --users 1024

writes ``benchmarks/results/export-RUN.json`` (RUN: the run folder's name).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_common import RESULTS, write_report
from memrec.export import export_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run folder of memrec train")
    parser.add_argument("--users", type=int, default=1024, help="sampled test users compared")
    args = parser.parse_args()
    run = Path(args.run)
    checks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".onnx", ".pt2"):
            report = export_run(run, Path(tmp) / f"model{suffix}", users=args.users)
            checks[report["format"]] = {**report["check"], "command": f"memrec export {run} --output model{suffix} --check-users {args.users}"}
            print(report["format"], checks[report["format"]], flush=True)
    print(write_report({"run": str(run), "model": report["model"], "checks": checks}, RESULTS / f"export-{run.name}.json"))


if __name__ == "__main__":
    main()
