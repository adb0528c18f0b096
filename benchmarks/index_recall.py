#!/usr/bin/env python
"""Approximate search for the neighbour memory: recall and speed of FAISS IVF and HNSW against exact
search at 10^6 and 10^7 entries, and what they do to test NDCG@10 on Beauty.

**Keys.** The neighbour memory of a SASRec trained on Beauty with the memory on (each entry: the
model's state at one training position of one user; the setting chosen on validation with the exact
index)::

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data memrec train --model sasrec --dataset beauty \\
        --output runs/sasrec-beauty-index --train.epochs=20 --memory.neighbours.enabled=true

(the frozen Beauty config capped at 20 epochs; its best epoch is 18). The real memory holds 131,413
entries. **10^6 and 10^7 entries are perturbed copies of the real keys**: copy 0 is the real memory,
copy c >= 1 of entry e is ``normalise(key_e + sigma * z / sqrt(d))``, z ~ N(0, I), owned by a new user
(owner + c * users: the copies are other users, so a query user's own entries stay the real ones).
``sigma`` (``--noise``, default ``auto``) makes a copy as close to its original as a real key is to its
nearest real neighbour of another user (the median of that cosine over a sample of real keys).

**Queries.** The states of ``--queries`` test users (seeded sample), the query the memory gets at
evaluation, each excluding its user's own entries (:meth:`memrec.memory.index.TorchIndex.search_excluding`,
the call :meth:`NeighbourMemory.search` makes).

**Measured**, per size and backend (``torch``: exact matmul + topk, the reference; ``faiss``: exact flat;
``ivf`` at several ``nprobe``; ``hnsw`` at several ``ef_search``): build seconds (:func:`index_of`),
queries per second in batches of ``--batch`` (one pass over the queries after a warm-up batch, repeated
to at least a second), recall@k for k = 32 and 128 (the memory's chosen k on Beauty) against the exact
result: the share of the k slots filled by an entry at least as similar as the exact k-th (tie-aware:
real keys repeat, users with the same history have the same state), and ``id_recall@k``,
|approximate top-k ∩ exact top-k| / k, which counts a tied entry as a miss. **NDCG**: test NDCG@10 of the trained model with its
memory (the real keys, the setting tuned with the exact index) searched through each backend, the
difference to exact with a paired bootstrap 95% interval. One thread (``OMP_NUM_THREADS=1``, as the
other memory benchmarks): builds too, so build seconds are single-core ones.

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/index_recall.py --run runs/sasrec-beauty-index

writes ``benchmarks/results/index-recall.json``.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import resource
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench_common import RESULTS, load_run, markdown_table, paired_ci, write_report
from memrec.data.batching import eval_batches
from memrec.memory.index import ApproximateConfig, SearchConfig, index_of
from memrec.train.evaluate import metrics_from_ranks, rank_evalset, user_ndcg


TRAIN_COMMAND = ("OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data memrec train --model sasrec --dataset beauty "
                 "--output runs/sasrec-beauty-index --train.epochs=20 --memory.neighbours.enabled=true")
NOTES = ["the keys: the neighbour memory (131,413 entries) of a SASRec trained with TRAIN_COMMAND (frozen Beauty config capped at "
         "20 epochs, best epoch 18 of 20) and tuned on validation with the exact index",
         "1e6 and 1e7 entries are the real keys plus perturbed copies (cosine to the original about the real median nearest-neighbour "
         "cosine), owned by new users; copies crowd the exact top-k (distinct_real_in_exact_top*)",
         "recall@k is tie-aware (real keys repeat); id_recall@k counts the exact top-k's ids only",
         "one thread for search and build, on a 2-core machine shared with other work: QPS are comparable within this run"]


def noise_for(keys: torch.Tensor, owners: torch.Tensor, sample: int = 2000, seed: int = 0) -> tuple[float, float]:
    """(sigma, c): c the median cosine of a real key to its nearest key of another owner (over ``sample``
    keys), sigma such that a perturbed copy's expected cosine to its original, 1 / sqrt(1 + sigma^2), is c."""
    rows = torch.randperm(len(keys), generator=torch.Generator().manual_seed(seed))[:sample]
    index = index_of(keys)
    lo, hi = torch.searchsorted(owners, owners[rows]), torch.searchsorted(owners, owners[rows], right=True)
    nearest = index.search_excluding(keys[rows], 1, lo, hi)[0][:, 0]
    c = float(nearest.median().clamp(1e-3, 1 - 1e-6))
    return math.sqrt(1 / c ** 2 - 1), c


def replicate(keys: torch.Tensor, owners: torch.Tensor, size: int, sigma: float, seed: int = 0, chunk: int = 1 << 20) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` unit keys and their owners (sorted): the real ``keys`` (copy 0), then perturbed copies,
    each owned by new users (owner + copy * users). Built in chunks, so the peak is the output itself."""
    m, d = keys.shape
    users = int(owners.max()) + 1
    out, own = torch.empty(size, d), torch.empty(size, dtype=torch.int64)
    g = torch.Generator().manual_seed(seed)
    for start in range(0, size, chunk):
        rows = torch.arange(start, min(size, start + chunk))
        copies, entries = rows // m, rows % m
        block = keys[entries]
        noisy = F.normalize(block + sigma / math.sqrt(d) * torch.randn(block.shape, generator=g), dim=1)
        out[rows] = torch.where((copies == 0).unsqueeze(1), block, noisy)
        own[rows] = owners[entries] + copies * users
    return out, own


def id_recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean over queries of |found ∩ exact| / (entries in exact), ignoring empty slots (-1)."""
    total = 0.0
    for f, e in zip(found.tolist(), exact.tolist()):
        want = set(e) - {-1}
        total += len(set(f) & want) / max(1, len(want))
    return total / max(1, len(found))


def recall(found: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor, exact_scores: torch.Tensor, tol: float = 1e-5) -> float:
    """Tie-aware recall: the share of the exact result's slots filled by an entry at least as similar as the
    exact k-th (within ``tol``). Real keys repeat (users with the same history have the same state), so
    the exact top-k is one of several equally good sets; :func:`id_recall` counts only that one."""
    true = torch.einsum("qd,qkd->qk", queries, keys[found.clamp(min=0)])
    kth = exact_scores.masked_fill(torch.isinf(exact_scores), float("inf")).min(dim=1, keepdim=True).values
    good = ((true >= kth - tol) & (found >= 0)).sum(dim=1).clamp(max=torch.isfinite(exact_scores).sum(dim=1))
    return float((good / torch.isfinite(exact_scores).sum(dim=1).clamp(min=1)).mean())


def search_all(index, queries: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, k: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and ids (Q, k) of every query, in batches."""
    parts = [index.search_excluding(queries[s:s + batch], k, lo[s:s + batch], hi[s:s + batch]) for s in range(0, len(queries), batch)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def queries_per_second(index, queries, lo, hi, k: int, batch: int, min_seconds: float) -> float:
    index.search_excluding(queries[:batch], k, lo[:batch], hi[:batch])  # warm-up
    done, tic = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - tic < min_seconds:
        search_all(index, queries, lo, hi, k, batch)
        done += len(queries)
    return done / (time.perf_counter() - tic)


def release() -> None:
    """Collect garbage and give freed heap back to the system (glibc), so one size's indexes do not stay in the next one's peak."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def variants(nprobes, efs) -> list[tuple[str, ApproximateConfig | None]]:
    out = [("torch", None), ("faiss", None)]
    out += [("ivf", ApproximateConfig(nprobe=p)) for p in nprobes]
    out += [("hnsw", ApproximateConfig(ef_search=e)) for e in efs]
    return out


def measure_size(keys, owners, queries, users, ks, nprobes, efs, batch: int, min_seconds: float, label: str, real: int | None = None,
                 log=print) -> list[dict]:
    """Rows of one size: exact torch first (the reference), then FAISS flat, IVF and HNSW (each built once,
    swept over its search parameter). ``real``: the number of real keys the larger sizes copy; the exact
    row then says how many distinct real entries the exact top-k holds (copies crowd the top-k)."""
    lo, hi = torch.searchsorted(owners, users), torch.searchsorted(owners, users, right=True)
    rows, exact = [], {}
    built: dict[str, tuple] = {}
    for backend, params in variants(nprobes, efs):
        if backend not in built:
            index = None  # the previous index goes before the next is built: one index beside the keys at a time
            built.clear()
            release()
            tic = time.perf_counter()
            index = index_of(keys, backend, params=params)
            built[backend] = (index, time.perf_counter() - tic)
        index, build_seconds = built[backend]
        if params is not None:
            index.params = params
        row = {"entries": len(keys), "keys": label, "backend": backend, "build_seconds": round(build_seconds, 2),
               "nprobe": params.nprobe if backend == "ivf" else None, "ef_search": params.ef_search if backend == "hnsw" else None}
        if backend == "ivf":
            row["nlist"] = params.lists(len(keys))
        for k in ks:
            tic = time.perf_counter()
            scores, found = search_all(index, queries, lo, hi, k, batch)
            seconds = time.perf_counter() - tic
            if backend == "torch":
                exact[k] = scores, found
                if real:
                    row[f"distinct_real_in_exact_top{k}"] = round(float(np.mean([len(set((f % real).tolist())) for f in found])), 1)
            row[f"recall@{k}"] = round(recall(found, queries, keys, exact[k][0]), 4)
            row[f"id_recall@{k}"] = round(id_recall(found, exact[k][1]), 4)
            assert not ((found >= 0) & (owners[found.clamp(min=0)] == users.unsqueeze(1))).any(), "an own entry was returned"
            row[f"qps@{k}"] = round(len(queries) / seconds if seconds >= min_seconds else
                                    queries_per_second(index, queries, lo, hi, k, batch, min_seconds), 1)
        rows.append(row)
        log(f"  {row}")
    index = None
    built.clear()
    release()
    return rows


@torch.no_grad()
def test_states(model, evalset, max_len: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(users, queries): the neighbour-memory queries of the users of ``evalset``, in its order."""
    users = torch.from_numpy(evalset.users).to(torch.int64)
    out = None
    for rows, b in eval_batches(evalset, max_len, batch):
        states = model.scores_and_states(b)[1].float()
        out = states.new_zeros(len(evalset), states.size(1)) if out is None else out
        out[torch.from_numpy(rows)] = states
    return users, out


@torch.no_grad()
def ndcg_by_backend(model, evalset, max_len: int, nprobes, efs, batch: int = 256, log=print) -> dict:
    """Test NDCG@10 with the memory searched exactly and through each approximate index (same weights,
    same setting), with the paired 95% interval of the difference to exact."""
    memory = model.neighbours
    chosen = memory.search_config
    out = {"setting": memory.describe(), "entries": len(memory), "rows": []}
    try:
        reference = None
        for backend, params in [("torch", None)] + [v for v in variants(nprobes, efs) if v[0] in ("ivf", "hnsw")]:
            memory.search_config = SearchConfig(backend=backend, params=params or ApproximateConfig())
            tic = time.perf_counter()
            ranks = rank_evalset(model, evalset, max_len, batch)
            per_user = user_ndcg(ranks)
            row = {"backend": backend, "nprobe": params.nprobe if backend == "ivf" else None,
                   "ef_search": params.ef_search if backend == "hnsw" else None, "test_ndcg@10": metrics_from_ranks(ranks, ks=(10,))["ndcg@10"],
                   "eval_seconds": round(time.perf_counter() - tic, 1)}
            if reference is None:
                reference = per_user
            else:
                row["difference"] = float((per_user - reference).mean())
                row["difference_ci95"] = paired_ci(per_user - reference)
            out["rows"].append(row)
            log(f"  {row}")
    finally:
        memory.search_config = chosen
    return out


def table(report: dict) -> str:
    rows = [[r["keys"], r["entries"], r["backend"] + (f" nprobe={r['nprobe']}" if r["nprobe"] else "") + (f" ef={r['ef_search']}" if r["ef_search"] else ""),
             r.get("recall@32"), r.get("recall@128"), r.get("qps@32"), r.get("qps@128"), r["build_seconds"]] for r in report["rows"]]
    return markdown_table(["keys", "entries", "backend", "recall@32", "recall@128", "QPS k=32", "QPS k=128", "build s"], rows)


def run(run_dir: str, sizes=("real", 1_000_000, 10_000_000), queries: int = 2000, batch: int = 256, ks=(32, 128), nprobes=(8, 16, 64),
        efs=(128, 256, 512), noise: str | float = "auto", min_seconds: float = 1.0, ndcg: bool = True, data_dir: str | None = None,
        seed: int = 0, save: str | Path | None = None, log=print) -> dict:
    model, config, _, split = load_run(Path(run_dir) / "checkpoint.pt" if Path(run_dir).is_dir() else run_dir, data_dir)
    memory = model.neighbours
    keys, owners = memory.keys, memory.owners
    if not len(memory):
        raise SystemExit(f"{run_dir}: the model has no neighbour memory (train with --memory.neighbours.enabled=true)")
    sigma, nearest = noise_for(keys, owners, seed=seed) if noise == "auto" else (float(noise), None)
    users, states = test_states(model, split.test, config.data.max_len, batch)
    pick = torch.randperm(len(users), generator=torch.Generator().manual_seed(seed))[:queries]
    users, states = users[pick], F.normalize(states[pick], dim=1)
    report = {"command": "OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python " + " ".join(sys.argv), "run": str(run_dir),
              "train_command": TRAIN_COMMAND, "notes": NOTES,
              "threads": torch.get_num_threads(), "queries": len(users), "batch": batch, "real_entries": len(memory), "dim": keys.size(1),
              "noise_sigma": sigma, "real_median_nearest_cosine": nearest, "seed": seed,
              "keys_note": "'real': the trained model's memory; larger sizes: the real keys plus perturbed copies owned by new users",
              "defaults": asdict(ApproximateConfig()), "rows": []}
    for size in sizes:
        if size == "real":
            big, own, label = keys, owners, "real"
        else:
            log(f"replicating {len(keys):,} real keys to {int(size):,} (sigma {sigma:.3f})")
            big, own = replicate(keys, owners, int(size), sigma, seed)
            label = "real + perturbed copies"
        log(f"{len(big):,} entries")
        report["rows"] += measure_size(big, own, states, users, ks, nprobes, efs, batch, min_seconds, label, len(keys), log)
        del big, own
        release()
        report.setdefault("peak_rss_gib", {})[str(size)] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)
        if save is not None:
            write_report(report, save)  # after each size: a long run keeps what it has measured
    if ndcg:
        log("test NDCG@10 by backend")
        report["ndcg"] = ndcg_by_backend(model, split.test, config.data.max_len, nprobes, efs, config.train.eval_batch_size, log)
        metrics = Path(run_dir) / "metrics.json"
        if metrics.is_file():
            report["ndcg"]["trained_run_test_ndcg@10"] = json.loads(metrics.read_text()).get("test", {}).get("ndcg@10")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/sasrec-beauty-index", help="run folder (or checkpoint) of a model with a neighbour memory")
    parser.add_argument("--sizes", nargs="+", default=["real", "1000000", "10000000"], help="'real' and/or entry counts")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--ks", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--nprobes", type=int, nargs="+", default=[8, 16, 64])
    parser.add_argument("--efs", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--noise", default="auto", help="sigma of the copies' perturbation, or 'auto'")
    parser.add_argument("--no-ndcg", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=str(RESULTS / "index-recall.json"))
    args = parser.parse_args()
    sizes = [s if s == "real" else int(float(s)) for s in args.sizes]
    report = run(args.run, sizes, args.queries, args.batch, tuple(args.ks), tuple(args.nprobes), tuple(args.efs),
                 args.noise if args.noise == "auto" else float(args.noise), ndcg=not args.no_ndcg, data_dir=args.data_dir, save=args.json)
    print(table(report))
    print(f"wrote {write_report(report, args.json)}")


if __name__ == "__main__":
    main()
