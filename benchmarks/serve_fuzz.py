"""A long schema-driven fuzz run of the service: schemathesis against its own OpenAPI spec.

It starts ``memrec serve`` on an untrained model (by default UR4Rec-MoE with memory, the tiny test
model, over a catalogue of 60 items named "0".."59", so that generated events often name a real item), runs
``st run`` with every check but positive_data_acceptance over every operation and method, valid and
invalid data (see :func:`memrec.serve.testing.fuzz`), and prints the responses per endpoint and
status code. Exit status 1 if a check failed or a response was a 5xx.

    OMP_NUM_THREADS=1 python benchmarks/serve_fuzz.py --max-examples 500 --output benchmarks/results/serve_fuzz-sqlite.json
    OMP_NUM_THREADS=1 python benchmarks/serve_fuzz.py --store postgres --token secret   # also redis; servers as in tests/run.sh
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from memrec.serve.testing import TINY, ServiceProcess, drop_prefix, fresh_prefix, fuzz, server_url, tiny_checkpoint, with_prefix

CATALOGUE = ["[PAD]"] + [str(n) for n in range(60)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ur4rec-moe", choices=sorted(TINY))
    parser.add_argument("--store", default="sqlite", choices=["sqlite", "redis", "postgres"])
    parser.add_argument("--token", help="run the service with this bearer token (and send it)")
    parser.add_argument("--max-examples", type=int, default=500, help="cases per operation and phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", help="write the figures as JSON")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="memrec-fuzz-"))
    checkpoint = tiny_checkpoint(folder / f"{args.model}.pt", args.model, CATALOGUE)
    where, prefix = str(folder / "state.db"), None
    if args.store != "sqlite":
        prefix = fresh_prefix()
        where = with_prefix(server_url(args.store), prefix)
    tic = time.perf_counter()
    try:
        with ServiceProcess(checkpoint, where, token=args.token) as service:
            run = fuzz(service.url, folder, token=args.token, max_examples=args.max_examples, seed=args.seed, timeout=7200)
    finally:
        if prefix:
            drop_prefix(args.store, server_url(args.store), prefix)
    table: dict[str, dict[int, int]] = defaultdict(dict)
    operations = {(m, r) for m, r, s in run.counts() if s != 405}  # what the spec has; the fuzzer also tries every other method
    for (method, route, status), n in sorted(run.counts().items()):
        row = table[f"{method} {route}" if (method, route) in operations else "other methods"]
        row[status] = row.get(status, 0) + n
    server_errors = sum(n for row in table.values() for status, n in row.items() if status >= 500)
    results = {"model": args.model, "store": args.store, "token": bool(args.token), "max_examples": args.max_examples, "seed": args.seed,
               "schemathesis_exit_code": run.returncode, "requests": len(run.responses), "server_errors": server_errors,
               "seconds": round(time.perf_counter() - tic, 1), "responses": table}
    for endpoint, row in table.items():
        print(f"{endpoint:<40} " + "  ".join(f"{status}: {n}" for status, n in sorted(row.items())))
    print(f"{len(run.responses)} requests, {server_errors} 5xx; schemathesis exit code {run.returncode}")
    if run.returncode:
        print(run.output[run.output.find("FAILURES"):][:20000])
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return int(run.returncode != 0 or server_errors > 0)


if __name__ == "__main__":
    sys.exit(main())
