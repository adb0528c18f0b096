#!/usr/bin/env python
"""MR.Rec assistant: the memory-settings table on the synthetic Scientific requests and the TALLRec AUC.

    OMP_NUM_THREADS=1 python benchmarks/assist_eval.py --backend deterministic --data-dir ../shared/data
    OMP_NUM_THREADS=1 python benchmarks/assist_eval.py --backend smollm2 --memory-backend deterministic --queries 16 \
        --train-queries 200 --tallrec-limit 32 --max-new-tokens 96 --data-dir ../shared/data

Builds the request set (``--queries`` sampled users with ``--seed``; requests written from the target's
category path: SYNTHETIC), the memory with the chosen back-end (local memory of those users, global
memory from ``--train-queries`` validation items of other users), runs the four memory settings and
the TALLRec test file, prints Markdown tables and writes ``benchmarks/results/assist_BACKEND.json``.
The deterministic back-end's two choices (3 memory terms in the profile, aspects not written into
the profile) were made on seed 0; the reported run uses seed 1.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--backend", choices=("deterministic", "smollm2", "openai"), default="deterministic")
    parser.add_argument("--llm-url")
    parser.add_argument("--llm-model")
    parser.add_argument("--data-dir", default=os.environ.get("MEMREC_DATA_DIR"))
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--train-queries", type=int, default=2000)
    parser.add_argument("--tallrec-limit", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-backend", choices=("same", "deterministic"), default="same",
                        help="who writes the memory (patterns, profile, aspects): the same back-end, or the deterministic one")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="LLM back-ends: tokens per answer")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/assist_BACKEND.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    from memrec.assist.cli import make_reasoner
    from memrec.assist.deterministic import DeterministicReasoner
    from memrec.assist.evaluate import EvalConfig, markdown, run, scientific_memory, scientific_setup

    start = time.perf_counter()
    config = EvalConfig(data_dir=args.data_dir, num_queries=args.queries, num_train=args.train_queries, seed=args.seed,
                        tallrec_limit=args.tallrec_limit)
    setup = scientific_setup(config)
    reasoner = make_reasoner(args, setup[3].texts)
    if hasattr(reasoner, "max_new_tokens"):
        reasoner.max_new_tokens = args.max_new_tokens
    memory = None
    if args.memory_backend == "deterministic" and args.backend != "deterministic":
        built = time.perf_counter()
        memory = scientific_memory(setup[2], DeterministicReasoner(documents=setup[3].texts), setup[3], setup[4], config.memory)
        memory.meta["build_s"] = time.perf_counter() - built
    result = run(reasoner, config, setup=setup, memory=memory)
    result["memory_backend"] = "deterministic" if memory is not None else result["backend"]
    if memory is not None:
        result["scientific"]["memory_build_s"] = memory.meta["build_s"]
    result["max_new_tokens"] = getattr(reasoner, "max_new_tokens", None)
    result["wall_s"] = time.perf_counter() - start
    result["machine"] = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                         "cpus": os.cpu_count()}
    result["command"] = "python benchmarks/assist_eval.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.output or Path(__file__).resolve().parent / "results" / f"assist_{args.backend}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(markdown(result))
    sci = result["scientific"]
    print(f"\nmemory build {sci['memory_build_s']:.1f} s ({sci['memory_chunks']} local chunks, {sci['aspects']} aspects); "
          f"total {result['wall_s']:.0f} s; written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
