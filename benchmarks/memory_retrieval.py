#!/usr/bin/env python
"""Retrieval cost of the expert memories: memories stored per second and queries answered per second
for 10^4, 10^5 and 10^6 memories, exact torch search against FAISS, through memrec's own code.

For each size, dimension and backend (``torch``: :class:`memrec.memory.index.TorchIndex`, exact
matmul + top-k; ``faiss``: :class:`memrec.memory.index.FaissIndex`, FAISS ``IndexFlatIP``):

- **index store**: ``make_index(d, "cosine", backend).add`` in chunks of ``--chunk`` vectors;
- **memory store**: :meth:`memrec.memory.expert_memory.ExpertMemory.store` into a long-term tier of
  that capacity (the whole entry: key, value, importance, owner, ...), in the same chunks;
- **index query**: ``index.search(q, k=10)``, a batch of ``--batch`` queries per call and one query
  per call;
- **memory query**: :meth:`ExpertMemory.retrieve` (k = 8 plus ``candidate_slack`` candidates, exact
  re-scoring, similarity threshold), batch and single, as memory-moe calls it;
- **recall@10** of FAISS's results against exact torch search on the same queries (memrec's FAISS
  index is flat, i.e. exact; the recall is measured, not assumed).

Vectors are Gaussian (unit length after the cosine normalisation): a flat search costs the same
for any data, so throughput does not depend on them. One thread.

    OMP_NUM_THREADS=1 python benchmarks/memory_retrieval.py                  # 10^4..10^6 at d=64, 10^4..10^5 at d=384
    OMP_NUM_THREADS=1 python benchmarks/memory_retrieval.py --sizes 10000 --dims 64 --json /tmp/r.json
"""
from __future__ import annotations

import argparse
import time

import torch

from bench_common import RESULTS, markdown_table, write_report
from memrec.memory.expert_memory import ExpertMemory, ExpertMemoryConfig
from memrec.memory.index import faiss_available, make_index


def throughput(fn, items_per_call: int, min_seconds: float, max_calls: int) -> float:
    """Items per second of ``fn`` after one warm-up call, over at least ``min_seconds`` (or ``max_calls``)."""
    fn()
    calls, tic = 0, time.perf_counter()
    while calls < max_calls and (calls == 0 or time.perf_counter() - tic < min_seconds):
        fn()
        calls += 1
    return items_per_call * calls / (time.perf_counter() - tic)


def stored_per_second(store, keys: torch.Tensor, values: torch.Tensor, chunk: int) -> float:
    tic = time.perf_counter()
    for start in range(0, len(keys), chunk):
        store(keys[start:start + chunk], values[start:start + chunk])
    return len(keys) / (time.perf_counter() - tic)


def measure(size: int, dim: int, backend: str, batch: int = 256, chunk: int = 10_000, min_seconds: float = 1.0,
            reference: dict | None = None, seed: int = 0) -> dict:
    """One row: store and query throughput of an index and an expert memory of ``size`` entries."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(size, dim, generator=g)
    queries = torch.randn(batch, dim, generator=g)
    row = {"size": size, "dim": dim, "backend": backend, "batch": batch}

    make_index(dim, "cosine", backend).add(keys[:100])  # warm-up: first calls pay for allocations and imports
    ExpertMemory(dim, dim).store(keys[:100], keys[:100])
    index = make_index(dim, "cosine", backend, expected_size=size)
    row["index_store_per_s"] = stored_per_second(lambda k, v: index.add(k), keys, keys, chunk)
    row["index_query_batch_per_s"] = throughput(lambda: index.search(queries, 10), batch, min_seconds, 200)
    row["index_query_single_per_s"] = throughput(lambda: index.search(queries[:1], 10), 1, min_seconds, 2000)
    ids = index.search(queries, 10)[1]
    row["recall@10_vs_exact"] = None if reference is None else recall(ids, reference["ids"])

    config = ExpertMemoryConfig(long_term_capacity=size, top_k_retrieve=8, similarity_threshold=0.0,
                                use_faiss=backend == "faiss", enable_pruning=False, consolidation_interval=0)
    memory = ExpertMemory(dim, dim, config)
    del index  # bound the peak memory at 10^6 entries
    row["memory_store_per_s"] = stored_per_second(lambda k, v: memory.store(k, v, 0.9, "long_term"), keys, keys, chunk)
    row["memory_query_batch_per_s"] = throughput(lambda: memory.retrieve(queries), batch, min_seconds, 200)
    row["memory_query_single_per_s"] = throughput(lambda: memory.retrieve(queries[:1]), 1, min_seconds, 2000)
    row["memory_entries"] = len(memory)
    row["_ids"] = ids
    return row


def recall(ids: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean share of the exact top-k ids that ``ids`` found, over the queries (both (Q, k))."""
    hits = [len(set(a.tolist()) & set(b.tolist())) / exact.size(1) for a, b in zip(ids, exact)]
    return sum(hits) / len(hits)


def run(sizes=(10_000, 100_000, 1_000_000), dims=(64,), large_dims=(384,), large_dim_max=100_000, backends=None,
        batch: int = 256, chunk: int = 10_000, min_seconds: float = 1.0, log=print) -> dict:
    """Every (size, dim, backend); dimensions in ``large_dims`` only up to ``large_dim_max`` entries."""
    torch.set_num_threads(1)
    backends = backends or (("torch", "faiss") if faiss_available() else ("torch",))
    rows = []
    for dim in (*dims, *large_dims):
        for size in sizes:
            if dim in large_dims and size > large_dim_max:
                continue
            exact = None
            for backend in backends:
                tic = time.perf_counter()
                row = measure(size, dim, backend, batch, chunk, min_seconds, exact)
                exact = exact or {"ids": row["_ids"]}
                row.pop("_ids")
                row["seconds"] = round(time.perf_counter() - tic, 1)
                rows.append(row)
                log({k: (round(v, 1) if isinstance(v, float) else v) for k, v in row.items()})
    return {"threads": 1, "torch": torch.__version__, "faiss": faiss_available(), "rows": rows}


def table(report: dict) -> str:
    rows = [[r["size"], r["dim"], r["backend"], f"{r['index_store_per_s']:,.0f}", f"{r['memory_store_per_s']:,.0f}",
             f"{r['index_query_batch_per_s']:,.0f}", f"{r['index_query_single_per_s']:,.0f}", f"{r['memory_query_batch_per_s']:,.0f}",
             f"{r['memory_query_single_per_s']:,.0f}", "exact" if r["recall@10_vs_exact"] is None else f"{r['recall@10_vs_exact']:.3f}"]
            for r in report["rows"]]
    return markdown_table(["memories", "dim", "backend", "index store /s", "memory store /s", f"index queries /s (batch {report['rows'][0]['batch']})",
                           "index queries /s (single)", "memory queries /s (batch)", "memory queries /s (single)", "recall@10"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--dims", type=int, nargs="+", default=[64])
    p.add_argument("--large-dims", type=int, nargs="*", default=[384], help="dimensions measured only up to --large-dim-max")
    p.add_argument("--large-dim-max", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--chunk", type=int, default=10_000)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--json", default=str(RESULTS / "memory_retrieval.json"))
    args = p.parse_args()
    report = run(args.sizes, args.dims, args.large_dims, args.large_dim_max, None, args.batch, args.chunk, args.min_seconds)
    write_report(report, args.json)
    print(table(report))
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
