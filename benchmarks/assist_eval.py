#!/usr/bin/env python
"""MR.Rec assistant: the memory-settings table on the synthetic Scientific requests and the TALLRec AUC.

    OMP_NUM_THREADS=1 python benchmarks/assist_eval.py --backend deterministic --data-dir ../shared/data
    OMP_NUM_THREADS=1 python benchmarks/assist_eval.py --backend smollm2 --memory-backend deterministic --queries 16 \
        --train-queries 200 --tallrec-limit 32 --max-new-tokens 96 --data-dir ../shared/data

Builds the request set (``--queries`` sampled users with ``--seed``; requests written from the target's
category path: SYNTHETIC), the memory with the chosen back-end (local memory of those users, global
memory from ``--train-queries`` validation items of other users), runs the four memory settings and
the TALLRec test file, prints Markdown tables and writes ``benchmarks/results/assist_BACKEND.json``.

``--request-detail`` sets how much of the target each synthetic request names: ``path`` (default: the
category path, and the brand when no brand word is in the title; the request alone usually finds the
item), ``leaf`` (the last two category words and the top-level category) or ``top`` (the top-level
category only, where the user's memory has to say what they want). ``--k-memory`` is the number of
summary chunks (category patterns, profile) the hierarchical setting retrieves (and the liked titles
in TALLRec's hierarchical row). Other than the defaults, the output is ``assist_BACKEND-DETAIL[-kK].json``:

    OMP_NUM_THREADS=1 python benchmarks/assist_eval.py --backend deterministic --data-dir ../shared/data --request-detail top
    OMP_NUM_THREADS=1 python benchmarks/assist_eval.py --backend deterministic --data-dir ../shared/data --request-detail top --k-memory 1

The deterministic back-end's choices (3 memory terms in the profile, aspects not written into the
profile; memories read clause by clause, a clause about the category the request names counts as
relevant when the request names nothing more, the reasoner's own template words never added) were
made on seed 0 (300 requests, details ``top`` and ``path``); the reported runs use seed 1.
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

from memrec.assist.pipeline import DEFAULT_K_MEMORY, SETTINGS
from memrec.assist.queries import DETAILS, scientific_queries


def default_name(backend: str, detail: str = "path", k_memory: int = DEFAULT_K_MEMORY) -> str:
    """The result file's name: ``assist_BACKEND.json`` for the defaults, else ``assist_BACKEND-DETAIL[-kK].json``.

    Example:
        >>> default_name("deterministic"), default_name("deterministic", "top"), default_name("deterministic", "top", 1)
        ('assist_deterministic.json', 'assist_deterministic-top.json', 'assist_deterministic-top-k1.json')
    """
    if detail == "path" and k_memory == DEFAULT_K_MEMORY:
        return f"assist_{backend}.json"
    return f"assist_{backend}-{detail}" + (f"-k{k_memory}" if k_memory != DEFAULT_K_MEMORY else "") + ".json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--backend", choices=("deterministic", "smollm2", "openai"), default="deterministic")
    parser.add_argument("--llm-url")
    parser.add_argument("--llm-model")
    parser.add_argument("--data-dir", default=os.environ.get("MEMREC_DATA_DIR"))
    parser.add_argument("--dataset", default="amazon-scientific", help="registry name or folder of a Scientific-format data set")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--train-queries", type=int, default=2000)
    parser.add_argument("--tallrec-limit", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-backend", choices=("same", "deterministic"), default="same",
                        help="who writes the memory (patterns, profile, aspects): the same back-end, or the deterministic one")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="LLM back-ends: tokens per answer")
    parser.add_argument("--no-repair", action="store_true",
                        help="LLM back-ends: count cut-off profile answers as malformed instead of closing them (counted as repaired)")
    parser.add_argument("--no-continue-flags", action="store_true",
                        help="openai back-end: leave vLLM's continue_final_message / add_generation_prompt out of requests")
    parser.add_argument("--request-detail", choices=DETAILS, default="path",
                        help="how much of the target a synthetic request names: category path (default), leaf category words, top-level category")
    parser.add_argument("--k-memory", type=int, default=DEFAULT_K_MEMORY,
                        help=f"summary chunks (patterns, profile) the hierarchical setting retrieves (default {DEFAULT_K_MEMORY})")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS), help="memory settings to run (default all)")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/assist_BACKEND.json, "
                                         "assist_BACKEND-DETAIL[-kK].json for another detail or k)")
    args = parser.parse_args(argv)
    if args.k_memory < 1:
        parser.error(f"--k-memory must be at least 1, got {args.k_memory}")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    from memrec.assist.cli import make_reasoner
    from memrec.assist.deterministic import DeterministicReasoner
    from memrec.assist.evaluate import EvalConfig, markdown, run, scientific_memory, scientific_setup

    start = time.perf_counter()
    config = EvalConfig(dataset=args.dataset, data_dir=args.data_dir, num_queries=args.queries, num_train=args.train_queries, seed=args.seed,
                        tallrec_limit=args.tallrec_limit, k_memory=args.k_memory, settings=tuple(args.settings))
    setup = scientific_setup(config)
    if args.request_detail != "path":  # same users, targets and histories; requests written with less detail
        ds, split = setup[0], setup[1]
        setup = (ds, split, scientific_queries(ds, split, config.num_queries, config.num_train, config.seed, detail=args.request_detail), *setup[3:])
    reasoner = make_reasoner(args, setup[3].texts)
    if hasattr(reasoner, "max_new_tokens"):
        reasoner.max_new_tokens = args.max_new_tokens
    if hasattr(reasoner, "repair"):
        reasoner.repair = not args.no_repair
    memory = None
    if args.memory_backend == "deterministic" and args.backend != "deterministic":
        built = time.perf_counter()
        memory = scientific_memory(setup[2], DeterministicReasoner(documents=setup[3].texts), setup[3], setup[4], config.memory)
        memory.meta["build_s"] = time.perf_counter() - built
    result = run(reasoner, config, setup=setup, memory=memory)
    result["request_detail"] = args.request_detail
    result["k_memory"] = args.k_memory
    result["memory_backend"] = "deterministic" if memory is not None else result["backend"]
    if memory is not None:
        result["scientific"]["memory_build_s"] = memory.meta["build_s"]
    result["max_new_tokens"] = getattr(reasoner, "max_new_tokens", None)
    result["repair"] = getattr(reasoner, "repair", None)
    result["prompt_versions"] = getattr(reasoner, "versions", None)
    result["wall_s"] = time.perf_counter() - start
    result["machine"] = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                         "cpus": os.cpu_count()}
    result["command"] = "python benchmarks/assist_eval.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.output or Path(__file__).resolve().parent / "results" / default_name(args.backend, args.request_detail, args.k_memory))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"Request detail: {args.request_detail}; hierarchical memory: top-{args.k_memory} chunks.")
    print(markdown(result))
    sci = result["scientific"]
    print(f"\nmemory build {sci['memory_build_s']:.1f} s ({sci['memory_chunks']} local chunks, {sci['aspects']} aspects); "
          f"total {result['wall_s']:.0f} s; written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
