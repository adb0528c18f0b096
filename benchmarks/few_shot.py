#!/usr/bin/env python
"""Few-shot / cold-start users: memory-moe with ``few_shot_adapt`` against SASRec on held-out users.

Protocol (each decision chosen to be fair to both sides):

- **data**: memrec's data layer and leave-one-out split (for ``amazon-scientific`` this is exactly its
  pre-split files; a user's training sequence is their ``Scientific.train.inter`` sequence).
- **held-out users**: ``--holdout`` (20%) of all users, drawn with ``numpy.random.default_rng(seed)``.
  They contribute nothing to training: their training sequences are emptied and their validation
  and test examples dropped; early stopping reads the validation targets of the training users only.
- **training**: both models from their frozen ML-100K configs (``configs/{sasrec,memory-moe}-ml-100k.yaml``;
  no Scientific config exists for them) through :class:`memrec.train.Trainer`, the same seed, each
  capped at ``--max-minutes`` of training (memory-moe's epochs cost 4-5x SASRec's, so the cap
  binds on it first: the JSON records epochs and why each run stopped).
- **few-shot examples**: for n in 3, 5, 10, every held-out user whose training sequence has at least
  n + 1 items gives its first n items; the (n + 1)-th is the target. The users behind each n are the
  same for every model (on Scientific, fewer users qualify as n grows: the counts are reported).
- **ranking**: full ranking over the whole catalogue, the n given items masked, pessimistic ties
  (:mod:`memrec.train.evaluate`).
- **variants**: ``sasrec`` reads the n items as history. ``memory-moe`` reads them as history and
  its memory of training transitions (its ordinary inference). ``memory-moe + few_shot_adapt``
  additionally stores the user's n - 1 transitions as episodic memories of importance 0.95
  (:meth:`memrec.models.MemoryMoERec.few_shot_adapt`) before ranking; the memory is put back after
  each user, so no user sees another's examples and the order of users does not matter.
  ``memory-moe, no memory path``: the same weights with memory reads switched off (an ablation of
  the path, not a separately trained model).
- **uncertainty**: a paired bootstrap (2,000 resamples of the users, seed 0) of each variant's
  NDCG@10 minus SASRec's on the same users; and the share of users whose target rank changes
  against memory-moe's ordinary inference (how much the memory path moves anything at all), and
  the share of the memories read at the ranking position that are the user's own few-shot ones.

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/few_shot.py --dataset ml-100k --max-minutes 8
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench_common import RESULTS, ROOT, fit, frozen_config, markdown_table, metrics, paired_ci, relative, subset_split, write_report
from memrec.config import DataConfig
from memrec.data import load_dataset, split_dataset
from memrec.data.split import EvalSet
from memrec.memory.expert_memory import TIERS
from memrec.train.evaluate import metrics_from_ranks, rank_evalset, user_ndcg

SHOTS = (3, 5, 10)
VARIANTS = ("sasrec", "memory-moe + few_shot_adapt", "memory-moe", "memory-moe, no memory path")


def held_out_users(num_users: int, fraction: float, seed: int) -> np.ndarray:
    """``fraction`` of the users, drawn with a fixed seed (sorted)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_users, size=max(1, round(fraction * num_users)), replace=False))


def shot_set(train: list[np.ndarray], users: np.ndarray, n: int) -> EvalSet:
    """First n training items of each user with at least n + 1 of them as history, item n + 1 as target."""
    users = np.array([u for u in users if len(train[u]) > n], dtype=np.int64)
    return EvalSet(users, [train[u][:n].copy() for u in users], np.array([train[u][n] for u in users], dtype=np.int64))


class ReadRecorder:
    """While active, counts the memories the model's experts read and how many of them were
    episodic, i.e. few-shot memories (training stores none there). A measuring instrument only."""

    def __init__(self, model):
        self.memories = [expert.memory for moe in model.memory_layers() for expert in moe.experts]
        self.read = self.episodic = 0

    def __enter__(self):
        for memory in self.memories:
            memory.retrieve = self._recorded(memory.retrieve)  # an instance attribute shadows the method
        return self

    def _recorded(self, retrieve):
        def recorded(*args, **kwargs):
            recall = retrieve(*args, **kwargs)
            self.read += recall.count
            self.episodic += sum(int(mask.sum()) for tier, mask, _ in recall.where if tier == TIERS.index("episodic"))
            return recall
        return recorded

    def __exit__(self, *exc):
        for memory in self.memories:
            del memory.retrieve


def adapted_ranks(model, evalset: EvalSet, max_len: int) -> tuple[np.ndarray, float]:
    """Each user: ``few_shot_adapt`` on their n items, rank their target, put the memory back.
    Also the share of the memories read at the ranking position that were the user's few-shot ones."""
    ranks = np.zeros(len(evalset), dtype=np.int64)
    recorder = ReadRecorder(model)
    for row in range(len(evalset)):
        saved = model.memory_state()
        history = evalset.histories[row]
        model.few_shot_adapt(history, user=int(evalset.users[row]))
        ranks[row] = rank_evalset(model, evalset.subset(np.array([row])), max_len)[0]
        with recorder, torch.inference_mode():  # the same read again, one row alone (ranking pads batches)
            model.encode(torch.as_tensor(history[-max_len:])[None], torch.tensor([min(len(history), max_len)]))
        model.load_memory_state(saved)
    return ranks, recorder.episodic / max(recorder.read, 1)


def summary(ranks: np.ndarray, sasrec: np.ndarray, plain: np.ndarray, resamples: int = 2000) -> dict:
    """HR@10, NDCG@10, a paired bootstrap 95% interval of NDCG@10 minus SASRec's on the same users,
    and how often the target's rank differs from memory-moe's ordinary inference (``plain``)."""
    m = metrics_from_ranks(ranks, ks=(10,))
    out = {"hit@10": m["hit@10"], "ndcg@10": m["ndcg@10"], "rank_differs_from_memory-moe": float(np.mean(ranks != plain)) if len(ranks) else 0.0}
    if len(ranks):
        out["ndcg@10_minus_sasrec_ci95"] = paired_ci(user_ndcg(ranks) - user_ndcg(sasrec), resamples)
    return out


def run(dataset: str, max_minutes: float | None, epochs: int | None = None, holdout: float = 0.2, seed: int = 0,
        data_dir: str | None = None, cache_dir: Path | None = None, max_users: int | None = None,
        max_training_users: int | None = None, log=print) -> dict:
    """Train both models without the held-out users and score every variant at every n."""
    ds = load_dataset(DataConfig(dataset=dataset, data_dir=data_dir))
    split = split_dataset(ds)
    held = held_out_users(ds.num_users, holdout, seed)
    held = held[:max_users]  # all, unless a quick check
    training_users = np.setdiff1d(np.arange(ds.num_users), held)[:max_training_users]  # all, unless a quick check
    train_split = subset_split(split, training_users, f"{split.protocol}; {len(held)} users held out")
    log(f"{ds.report()}\n{len(held)} held-out users, {len(training_users)} training users")

    models, runs = {}, {}
    for name in ("sasrec", "memory-moe"):
        config = frozen_config(name, dataset, max_minutes, epochs)
        cache = None if cache_dir is None else cache_dir / f"few_shot-{ds.name}-{name}-s{seed}-{max_minutes}m.pt"
        models[name], runs[name] = fit(config, ds.num_items, train_split, cache, log=lambda line: None)
        runs[name]["test_training_users"] = metrics(models[name], train_split.test, config.data.max_len)
        log(f"{name}: {runs[name]}")
    max_len = frozen_config("sasrec", dataset).data.max_len
    mm = models["memory-moe"]

    results = []
    for n in SHOTS:
        evalset = shot_set(split.train, held, n)
        tic = time.perf_counter()
        ranks = {"sasrec": rank_evalset(models["sasrec"], evalset, max_len), "memory-moe": rank_evalset(mm, evalset, max_len),
                 "memory-moe + few_shot_adapt": None}
        ranks["memory-moe + few_shot_adapt"], few_shot_share = adapted_ranks(mm, evalset, max_len)
        mm.config.use_memory = False
        try:
            ranks["memory-moe, no memory path"] = rank_evalset(mm, evalset, max_len)
        finally:
            mm.config.use_memory = True
        row = {"n": n, "users": len(evalset), **{v: summary(ranks[v], ranks["sasrec"], ranks["memory-moe"]) for v in VARIANTS},
               "few_shot_share_of_memories_read": few_shot_share}
        row["seconds"] = round(time.perf_counter() - tic, 1)
        results.append(row)
        log(f"n={n}: {row}")
    return {"dataset": ds.name, "dataset_stats": ds.stats(), "held_out_users": len(held), "holdout_fraction": holdout, "seed": seed,
            "max_minutes": max_minutes, "protocol": __doc__.split("\n\n")[1], "training": runs, "results": results}


def table(report: dict) -> str:
    rows = []
    for r in report["results"]:
        base = r["sasrec"]
        for v in VARIANTS:
            m = r[v]
            ci = m.get("ndcg@10_minus_sasrec_ci95")
            rows.append([r["n"], r["users"], v, m["hit@10"], relative(m["hit@10"], base["hit@10"]), m["ndcg@10"], relative(m["ndcg@10"], base["ndcg@10"]),
                         "" if v == "sasrec" or ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]", "" if v in ("sasrec", "memory-moe") else f"{m['rank_differs_from_memory-moe']:.1%}",
                         f"{r['few_shot_share_of_memories_read']:.1%}" if v == "memory-moe + few_shot_adapt" else ""])
    return markdown_table(["n", "users", "model", "HR@10", "vs SASRec", "NDCG@10", "vs SASRec", "NDCG@10 - SASRec, 95% CI",
                           "target rank differs from memory-moe", "few-shot memories among those read"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data-dir")
    p.add_argument("--max-minutes", type=float, default=10.0, help="training time cap per model")
    p.add_argument("--epochs", type=int)
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0, help="which users are held out")
    p.add_argument("--cache", default=str(ROOT / "runs" / "bench"), help="folder for trained weights ('' for none)")
    p.add_argument("--json", help=f"default: {RESULTS}/few-shot-DATASET.json")
    args = p.parse_args()
    report = run(args.dataset, args.max_minutes, args.epochs, args.holdout, args.seed, args.data_dir, Path(args.cache) if args.cache else None)
    out = write_report(report, args.json or RESULTS / f"few-shot-{report['dataset']}.json")
    print(table(report))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
