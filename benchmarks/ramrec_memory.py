#!/usr/bin/env python
"""What each of RAMRec's memories is worth, and what reading them costs, from one trained checkpoint.

Test NDCG@10 / HR@10 of the same weights with the memories switched on and off at evaluation:

- **full**: the user's own bank and the neighbour memory at the setting chosen on validation;
- **no neighbour memory**: the own bank only (RAMRec as the seed describes it);
- **no own bank**: the window and the neighbour memory (``bank_at_eval`` off);
- **neither**: the window only (cross-attention over the window's own entries).

Plus a paired bootstrap 95% interval of full minus "no neighbour memory", and the cost of reading
memory per user in microseconds (one thread, best of 3 passes over the test users): the own-bank
read (gather + cross-attention) and the neighbour search + mixture, in batches of 256 and one user
at a time (first 200 users), against the model's forward pass without memory reads. With
``--epoch-cost``, one training epoch of a fresh RAMRec and of a fresh SASRec with the same backbone
settings, one after the other in this process (seconds and ratio), and the time to build the
neighbour memory and choose its setting.

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/ramrec_memory.py --checkpoint runs/ramrec-beauty/checkpoint.pt

writes ``benchmarks/results/ramrec-memory-DATASET[-TAG].json``.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

from bench_common import RESULTS, load_run, markdown_table, paired_ci, relative, write_report
from memrec.config import RunConfig
from memrec.data.batching import eval_batches
from memrec.memory.neighbours import build_neighbours, seen_mask
from memrec.models import build_model
from memrec.train.evaluate import metrics_from_ranks, rank_evalset, user_ndcg
from memrec.train.trainer import Trainer, seed_everything


def variants(model) -> dict:
    """The same weights with each combination of memories (deep copies, switched at evaluation)."""
    out = {}
    for name, bank, neighbours in (("full", True, True), ("no neighbour memory", True, False),
                                   ("no own bank", False, True), ("neither", False, False)):
        m = copy.deepcopy(model)
        m.config.bank_at_eval = bank
        if not neighbours:
            m.neighbours.set(k=0, temperature=1.0, weight=0.0)
        out[name] = m.eval()
    return out


@torch.inference_mode()
def read_costs(model, copies: dict, evalset, max_len: int, batch_size: int, single_users: int = 200) -> dict:
    """Microseconds per user for: the forward pass alone, + own bank, + neighbour memory (search and mix);
    ``copies`` are :func:`variants` of ``model``."""
    plain, banked = copies["neither"], copies["no neighbour memory"]
    neighbours = model.neighbours

    def timed(fn, size):
        best = float("inf")
        for _ in range(3):
            tic = time.perf_counter()
            n = 0
            for _, batch in eval_batches(evalset if size > 1 else evalset.subset(np.arange(min(single_users, len(evalset)))), max_len, size):
                fn(batch)
                n += len(batch.users)
            best = min(best, (time.perf_counter() - tic) / n * 1e6)
        return round(best, 1)

    def window(batch):
        plain.last_states(batch.history, (batch.lengths - 1).clamp(min=0), batch.users)

    def bank(batch):
        banked.last_states(batch.history, (batch.lengths - 1).clamp(min=0), batch.users)

    def search(batch):
        _, query = plain.last_states(batch.history, (batch.lengths - 1).clamp(min=0), batch.users)
        logits = query @ model.item_embeddings().T
        neighbours.mix(logits, seen_mask(batch, logits.size(1)), query, batch.users)

    def score(batch):
        _, query = plain.last_states(batch.history, (batch.lengths - 1).clamp(min=0), batch.users)
        query @ model.item_embeddings().T

    out = {}
    for label, size in (("batched", batch_size), ("single", 1)):
        w, b, s, sc = timed(window, size), timed(bank, size), timed(search, size), timed(score, size)
        out[label] = {"forward_us": w, "own_bank_read_us": round(b - w, 1), "forward_and_catalogue_scores_us": sc,
                      "neighbour_search_and_mix_us": round(s - sc, 1)}
    out["neighbour_entries"] = len(neighbours)
    out["own_bank_users"] = model.bank.num_owners
    return out


def epoch_costs(config: RunConfig, num_items: int, split, log=print) -> dict:
    """Seconds of one training epoch of a fresh RAMRec and of a fresh SASRec (same backbone settings),
    and of building and tuning its neighbour memory (:func:`build_neighbours`)."""
    out = {}
    for name in ("sasrec", "ramrec"):
        raw = config.to_dict()
        raw["model"] = name
        if name == "sasrec":
            raw["model_config"] = {k: v for k, v in raw["model_config"].items() if k in ("hidden_size", "num_layers", "num_heads", "inner_size", "dropout")}
        run_config = RunConfig.from_dict(raw)
        seed_everything(run_config.train.seed)
        model = build_model(name, num_items, run_config.data.max_len, run_config.model_config)
        trainer = Trainer(model, split, run_config, progress=False)
        tic = time.perf_counter()
        trainer.train_epoch(1)
        out[f"{name}_epoch_s"] = round(time.perf_counter() - tic, 2)
        if name == "ramrec":
            tic = time.perf_counter()
            build_neighbours(model, split, run_config.data.max_len, run_config.memory.neighbours, run_config.train.eval_batch_size, log=lambda *_: None)
            out["ramrec_neighbour_memory_build_and_tune_s"] = round(time.perf_counter() - tic, 2)
        log(f"{name}: {out}")
    out["epoch_ratio_ramrec_over_sasrec"] = round(out["ramrec_epoch_s"] / out["sasrec_epoch_s"], 2)
    return out


def run(checkpoint: str | Path, data_dir: str | None = None, batch_size: int = 256, epoch_cost: bool = False, single_users: int = 200,
        log=print) -> dict:
    model, config, ds, split = load_run(checkpoint, data_dir, models=("ramrec",), needs="RAMRec's own bank, which it switches on and off")
    max_len = config.data.max_len
    copies = variants(model)
    ranks = {name: rank_evalset(m, split.test, max_len, batch_size) for name, m in copies.items()}
    results = {name: metrics_from_ranks(r, ks=(10,)) for name, r in ranks.items()}
    for name, m in results.items():
        log(f"{ds.name} {name}: test NDCG@10 {m['ndcg@10']:.4f} HR@10 {m['hit@10']:.4f}")
    costs = read_costs(model, copies, split.test, max_len, batch_size, single_users)
    log(f"read costs (us per user): {costs}")
    full, without = results["full"]["ndcg@10"], results["no neighbour memory"]["ndcg@10"]
    training = epoch_costs(config, ds.num_items, split, log) if epoch_cost else None
    return {
        "benchmark": "ramrec-memory",
        "dataset": ds.name,
        "checkpoint": str(checkpoint),
        "seed": config.train.seed,
        "protocol": f"{split.protocol}; full ranking over {ds.num_items} items, history masked, pessimistic ties",
        "neighbour_setting": model.neighbours.describe(),
        "test": results,
        "neighbour_memory_relative_ndcg@10": relative(full, without),
        "neighbour_memory_ndcg@10_difference_ci95": paired_ci(user_ndcg(ranks["full"]) - user_ndcg(ranks["no neighbour memory"])),
        "read_costs": costs,
        "training_costs": training,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of `memrec train --model ramrec`")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epoch-cost", action="store_true", help="also time one training epoch of RAMRec and of SASRec")
    p.add_argument("--tag", default="", help="suffix of the result file name, e.g. s1")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    report = run(args.checkpoint, args.data_dir, args.batch_size, args.epoch_cost)
    report["command"] = f"python benchmarks/ramrec_memory.py --checkpoint {args.checkpoint}" + (" --epoch-cost" if args.epoch_cost else "") + (f" --tag {args.tag}" if args.tag else "")
    path = write_report(report, args.json or RESULTS / (f"ramrec-memory-{report['dataset']}" + (f"-{args.tag}" if args.tag else "") + ".json"))
    print(markdown_table(["variant", "test NDCG@10", "test HR@10"], [[k, v["ndcg@10"], v["hit@10"]] for k, v in report["test"].items()]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
