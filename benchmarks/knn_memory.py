#!/usr/bin/env python
"""kNN-LM style episodic memory of OTHER users' training contexts on top of a trained SASRec.

Question: can a memory help where a user's own history cannot? The memory here is a bank of
(key, value) pairs built from a trained checkpoint, kNN-LM style:

- **key**: the model's hidden state at a position t of a user's sequence (the state that predicts
  the next item: ``model.encode`` of the last ``max_len`` items up to t, exactly as a user vector is
  computed at evaluation), **value**: the item at t + 1, plus the owner (user) of the entry.
- **validation bank**: every position of every user's *training* sequence (``split.train``), so no
  validation or test target is in it. **test bank**: the same plus each evaluated user's validation
  position (key = encoding of the training sequence, value = the validation item), never a test item.
- **query**: the user vector of the example to rank. Entries of the same user are excluded, then the
  ``k`` nearest keys (inner product ``ip`` or cosine ``cos``, exact matmul + top-k) give
  ``p_knn(i) = sum_{neighbours with value i} softmax(sim / temperature)``, restricted to the items the
  evaluator can rank (padding and the user's history get zero mass; the rest is renormalised).
- **mixture**: ``p = (1 - lam) * softmax(model scores over rankable items) + lam * p_knn``, ranked as
  ``score(i) = logit(i) + softplus(log(lam / (1 - lam)) + log p_knn(i) + logsumexp(logits) - logit(i))``,
  which is ``log p(i)`` up to a per-row constant. An item no neighbour points to keeps exactly the
  model's logit, and ``lam = 0`` gives the model's own scores bit for bit. The mixture is memrec's
  (:mod:`memrec.memory.neighbours`, which RAMRec's neighbour memory uses); this script explores
  more settings (inner-product similarity, larger k) and a popularity control.

Ranking is memrec's: examples are batched by :func:`memrec.data.batching.eval_batches`, model
scores come from :func:`memrec.train.evaluate.padded_scores`, ranks from
:func:`memrec.train.evaluate.rank_targets` (history masked, ties pessimistic), metrics from
:func:`memrec.train.evaluate.metrics_from_ranks`; the plain model's ranks are also computed with
:func:`memrec.train.evaluate.rank_evalset` and must equal the ``lam = 0`` ranks. ``k``, the
temperature, the similarity and ``lam`` are chosen on VALIDATION NDCG@10 only; test is run once with
the chosen setting (and, for transparency, with the train-only bank and at every ``lam``). Tuning
ranks each setting's targets with :class:`TargetRanker` (the same scores, target only), which is
checked against ``rank_targets`` on the first batch for every setting; test ranks go through
``rank_targets`` on the full score matrix.

Control: ``pop`` mixes in, the same way, the plain frequency of each item among the other users' bank
values (no similarity, no k): if it matches the kNN memory, the memory only adds a popularity prior.

Checkpoints come from ``memrec train`` (the frozen configs), e.g. for ML-100K, from /work/main:

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data memrec train --model sasrec --dataset ml-100k --output /tmp/knn/sasrec-ml-100k-s42
    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/knn_memory.py --checkpoint /tmp/knn/sasrec-ml-100k-s42/checkpoint.pt

which writes ``benchmarks/results/knn-memory-ml-100k.json`` (``--tag s1`` appends ``-s1`` to the name;
``--json PATH`` writes elsewhere). Same for ``amazon-scientific`` and ``beauty``. Other seeds: a copy
of ``configs/sasrec-DATASET.yaml`` with ``seed: 1``, ``memrec train ... --config that.yaml``, then
``--tag s1``. Cost on one shared CPU thread: ML-100K 45 s, Amazon Scientific 3.3 min, Beauty 10.5 min
(378 settings tuned on validation, most of the time).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench_common import RESULTS, load_run, markdown_table, paired_ci, relative, write_report
from memrec.data.batching import eval_batches
from memrec.data.split import EvalSet
from memrec.memory.neighbours import contexts, log_ratio, memory_mass, mix_scores, mixed, seen_mask
from memrec.memory.transitions import TransitionMemory
from memrec.train.evaluate import metrics_from_ranks, padded_scores, rank_evalset, rank_targets, user_ndcg

SIMILARITIES = ("ip", "cos")
KS = (8, 32, 128, 512, 2048, 8192)
TEMPERATURES = {"cos": (0.03, 0.1, 0.3, 1.0), "ip": (5.0, 10.0, 20.0, 50.0, 100.0)}  # ip similarities are ~150 +- 20 on ML-100K
LAMS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


@torch.no_grad()  # not inference mode: the memory's index tracks its keys' version
def build_bank(model, sequences: list[np.ndarray], max_len: int, batch_size: int = 512) -> TransitionMemory:
    """Entries for every position t >= 1 of every sequence: key = the user vector of items[:t] (its last
    ``max_len`` items), value = items[t], owner, upto = t. Computed through :func:`eval_batches` and
    ``model.encode``, the evaluator's own path, so keys live in the same space as the queries."""
    examples, positions = contexts(sequences)
    keys = None
    model.eval()
    for rows, batch in eval_batches(examples, max_len, batch_size):
        h = model.encode(batch.history, batch.lengths, batch.users)
        if keys is None:
            keys = torch.empty(len(examples), h.size(1))
        keys[torch.from_numpy(rows)] = h
    if keys is None:
        keys = torch.empty(0, model.item_embeddings().size(1))
    bank = TransitionMemory(keys.size(1))
    bank.add(keys, torch.from_numpy(examples.targets), torch.from_numpy(examples.users), torch.from_numpy(positions))
    return bank


def neighbours(bank: TransitionMemory, query: torch.Tensor, query_users: torch.Tensor, k: int, similarity: str):
    """The ``k`` nearest entries of other users: (B, k) similarities, values and bank rows (the memory's
    exact search). Rows with fewer than ``k`` other-user entries get similarity -inf in the missing slots."""
    if similarity == "cos":
        if "_unit" not in bank.__dict__:  # the same entries with unit keys, made once
            bank.__dict__["_unit"] = TransitionMemory(bank.dim)
            bank.__dict__["_unit"].add(F.normalize(bank.keys, dim=1), bank.values, bank.owners, bank.upto)
        bank, query = bank.__dict__["_unit"], F.normalize(query, dim=1)
    elif similarity != "ip":
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    sims, rows = bank.nearest(query, query_users, k)  # never the user's own entries
    return sims, bank.values[rows.clamp(min=0), 0], rows


def memory_scores(logits: torch.Tensor, batch, sims: torch.Tensor, values: torch.Tensor, temperature: float, lam: float,
                  seen: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`memrec.memory.neighbours.mix_scores` with the seen mask built from ``batch`` if not given."""
    return mix_scores(logits, seen_mask(batch, logits.size(1)) if seen is None else seen, sims, values, temperature, lam)


class TargetRanker:
    """``rank_targets(memory_scores(...), batch)`` without building the (B, N + 1) score matrix per
    setting: the items a setting moves are the (at most k) neighbour items, so the target's rank is
    the number of rankable items whose plain logit reaches the target's new score (a binary search
    in the row's sorted logits) plus the neighbour items the boost lifts past it. The sorted logits
    are computed once per batch and shared by every setting; :func:`rank_with_memory` checks this
    against ``rank_targets`` on its first batch for every setting."""

    def __init__(self, logits: torch.Tensor, batch, seen: torch.Tensor):
        self.base = logits.double()
        self.seen = seen
        masked = self.base.masked_fill(seen, float("-inf"))
        self.lse = masked.logsumexp(dim=1, keepdim=True)
        self.sorted = masked.sort(dim=1).values.contiguous()
        self.targets = batch.targets[:, None]
        self.target_seen = seen.gather(1, self.targets)[:, 0]  # rank_targets ranks such a target last

    def neighbourhood(self, sims: torch.Tensor, values: torch.Tensor, temperature: float) -> tuple:
        """What every ``lam`` shares for one set of neighbours and temperature."""
        base = self.base
        p = memory_mass(self.seen, sims, values, temperature)
        base_t, base_at = base.gather(1, self.targets), base.gather(1, values)
        return values, base_t, log_ratio(base_t, p.gather(1, self.targets), self.lse), base_at, log_ratio(base_at, p.gather(1, values), self.lse)

    def ranks(self, hood: tuple, lam: float) -> torch.Tensor:
        values, base_t, excess_t, base_at, excess_at = hood
        width = self.base.size(1)
        s_t = mixed(base_t, excess_t, lam)  # (B, 1): the target's new score
        at_least = width - torch.searchsorted(self.sorted, s_t, side="left")[:, 0]  # items whose logit >= s_t
        s_at = mixed(base_at, excess_at, lam)
        lifted = (base_at < s_t) & (s_at >= s_t) & (values != self.targets)  # masked items are never lifted (p = 0)
        lifted = torch.zeros_like(self.seen).scatter_(1, values, lifted).sum(dim=1)  # duplicates counted once
        rank = at_least + lifted - (base_t[:, 0] >= s_t[:, 0]).long()  # the target itself, if counted
        return torch.where(self.target_seen, torch.full_like(rank, width - 1), rank)


def popularity(bank: TransitionMemory, users: torch.Tensor, width: int):
    """The control "memory": every entry of other users, unweighted, i.e. p_knn = how often each item is
    a value in the bank, the queried user's own entries left out. Returned as (log counts, items)
    neighbours (B, N + 1), so that a temperature of 1 gives p proportional to the counts."""
    values = bank.values[:, 0]
    counts = torch.zeros(width, dtype=torch.float64).index_add_(0, values, torch.ones(len(bank), dtype=torch.float64))
    rows = counts.repeat(len(users), 1)
    for r, u in enumerate(users.tolist()):
        own = values[bank.owners == u]
        rows[r].index_add_(0, own, -torch.ones(len(own), dtype=torch.float64))
    return rows.log(), torch.arange(width).repeat(len(users), 1), None


def grid(similarities=SIMILARITIES, ks=KS, temperatures=None, lams=LAMS) -> list[dict]:
    temperatures = temperatures or TEMPERATURES
    return [{"similarity": s, "k": k, "temperature": t, "lam": lam}
            for s in similarities for k in ks for t in temperatures[s] for lam in lams]


@torch.no_grad()
def rank_with_memory(model, evalset: EvalSet, bank: TransitionMemory, settings: list[dict], max_len: int, batch_size: int = 256,
                     check_bank=None, fast: bool = False) -> list[np.ndarray]:
    """Ranks of every example of ``evalset`` under each setting (one array per setting, ``evalset``
    order). Neighbours are searched once per similarity at the largest k; ``check_bank(rows, batch,
    bank_rows)`` may inspect the bank entries retrieved for each batch. Ranks come from memrec's
    ``rank_targets`` on :func:`memory_scores`; ``fast`` uses :class:`TargetRanker` instead, after
    checking that it agrees with ``rank_targets`` for every setting on the first batch."""
    model.eval()
    first = True
    out = [np.zeros(len(evalset), dtype=np.int64) for _ in settings]
    kmax = {s: max(c["k"] for c in settings if c["similarity"] == s) for s in {c["similarity"] for c in settings if c["lam"] > 0} - {"pop"}}
    pop = any(c["similarity"] == "pop" and c["lam"] > 0 for c in settings)
    for rows, batch in eval_batches(evalset, max_len, batch_size):
        logits = padded_scores(model, batch)
        query = model.encode(batch.history, batch.lengths, batch.users)
        seen = seen_mask(batch, logits.size(1))
        found = {}
        for s, k in kmax.items():
            found[s] = neighbours(bank, query, batch.users, k, s)
            if check_bank is not None:
                check_bank(rows, batch, found[s][2])
        if pop:
            found["pop"] = popularity(bank, batch.users, logits.size(1))
        ranker = TargetRanker(logits, batch, seen) if fast else None
        hoods = {}
        for i, c in enumerate(settings):
            if c["lam"] == 0.0:
                out[i][rows] = rank_targets(logits, batch).numpy()
                continue
            sims, values = found[c["similarity"]][0][:, : c["k"]], found[c["similarity"]][1][:, : c["k"]]
            exact = None
            if not fast or first:
                exact = rank_targets(memory_scores(logits, batch, sims, values, c["temperature"], c["lam"], seen), batch)
            if fast:
                key = (c["similarity"], c["k"], c["temperature"])
                if key not in hoods:
                    hoods = {key: ranker.neighbourhood(sims, values, c["temperature"])}  # settings come grouped by key
                r = ranker.ranks(hoods[key], c["lam"])
                if exact is not None and not torch.equal(r, exact):
                    raise AssertionError(f"fast ranks differ from rank_targets for {c}")
            out[i][rows] = (exact if exact is not None else r).numpy()
        first = False
    return out


def bank_sequences(split, with_valid: bool) -> list[np.ndarray]:
    """The sequences the bank is built from: training sequences, plus (``with_valid``) each evaluated
    user's validation item appended (the test history, which holds no test item)."""
    seqs = [s for s in split.train]
    if with_valid:
        for u, h in zip(split.test.users, split.test.histories):
            seqs[u] = h
    return seqs


def leak_checker(bank: TransitionMemory, held_out: EvalSet, sequences: list[np.ndarray]):
    """A ``check_bank`` callback that fails if a retrieved entry belongs to the queried user or any
    entry's value sits at or after a held-out target's position in its owner's sequence."""
    limit = np.full(len(sequences), np.iinfo(np.int64).max)
    limit[held_out.users] = [len(h) for h in held_out.histories]  # held-out target's index in the full sequence
    bad = bank.upto.numpy() >= limit[bank.owners.numpy()]
    if bad.any():
        raise AssertionError(f"{int(bad.sum())} bank entries hold a held-out target")

    def check(rows, batch, bank_rows):
        if (bank.owners[bank_rows.clamp(min=0)][bank_rows >= 0] == batch.users[:, None].expand_as(bank_rows)[bank_rows >= 0]).any():
            raise AssertionError("a query retrieved an entry of its own user")
    return check


def run(checkpoint: str | Path, data_dir: str | None = None, settings: list[dict] | None = None, batch_size: int = 256,
        max_valid: int | None = None, max_test: int | None = None, log=print) -> dict:
    """Tune on validation, evaluate once on test; returns the report."""
    tic = time.perf_counter()
    model, config, ds, split = load_run(checkpoint, data_dir)
    max_len = config.data.max_len
    valid, test = split.valid, split.test
    if max_valid is not None:
        valid = valid.subset(np.arange(min(max_valid, len(valid))))
    if max_test is not None:
        test = test.subset(np.arange(min(max_test, len(test))))
    settings = settings or grid()
    timings = {}

    t = time.perf_counter()
    bank_v = build_bank(model, bank_sequences(split, with_valid=False), max_len)
    timings["bank_valid_s"] = round(time.perf_counter() - t, 1)
    log(f"{ds.name}: validation bank {len(bank_v)} entries ({timings['bank_valid_s']} s), {len(valid)} validation examples")

    t = time.perf_counter()
    plain_valid = rank_evalset(model, valid, max_len)
    controls = [{"similarity": "pop", "k": None, "temperature": 1.0, "lam": lam} for lam in sorted({c["lam"] for c in settings})]
    ranks = rank_with_memory(model, valid, bank_v, [{"similarity": "ip", "k": 1, "temperature": 1.0, "lam": 0.0}] + settings + controls,
                             max_len, batch_size, check_bank=leak_checker(bank_v, valid, ds.sequences), fast=True)
    timings["tune_s"] = round(time.perf_counter() - t, 1)
    if not np.array_equal(ranks[0], plain_valid):
        raise AssertionError("lam = 0 does not reproduce the evaluator's ranks")
    plain_v = metrics_from_ranks(plain_valid, ks=(10,))
    rows = []
    for c, r in zip(settings + controls, ranks[1:]):
        m = metrics_from_ranks(r, ks=(10,))
        rows.append({**c, "valid_ndcg@10": m["ndcg@10"], "valid_hit@10": m["hit@10"]})
    rows, pop_rows = rows[: len(settings)], rows[len(settings):]
    best = max(rows, key=lambda r: (r["valid_ndcg@10"], -r["lam"]))
    best_pop = max(pop_rows, key=lambda r: (r["valid_ndcg@10"], -r["lam"]))
    chosen_pop = {k: best_pop[k] for k in ("similarity", "k", "temperature", "lam")}
    chosen = {k: best[k] for k in ("similarity", "k", "temperature", "lam")}
    log(f"validation: plain NDCG@10 {plain_v['ndcg@10']:.4f}; best {chosen} -> {best['valid_ndcg@10']:.4f} ({timings['tune_s']} s)")

    t = time.perf_counter()
    bank_t = build_bank(model, bank_sequences(split, with_valid=True), max_len)
    timings["bank_test_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    plain_test = rank_evalset(model, test, max_len)
    lam_sweep = [{**chosen, "lam": lam} for lam in sorted(set(LAMS) | {chosen["lam"]})]
    test_ranks = rank_with_memory(model, test, bank_t, [{**chosen, "lam": 0.0}, chosen, chosen_pop] + lam_sweep, max_len, batch_size,
                                  check_bank=leak_checker(bank_t, test, ds.sequences))
    train_only = rank_with_memory(model, test, bank_v, [chosen], max_len, batch_size, check_bank=leak_checker(bank_v, test, ds.sequences))[0]
    timings["test_s"] = round(time.perf_counter() - t, 1)
    if not np.array_equal(test_ranks[0], plain_test):
        raise AssertionError("lam = 0 does not reproduce the evaluator's ranks on test")
    plain_t, mem_t = metrics_from_ranks(plain_test, ks=(10,)), metrics_from_ranks(test_ranks[1], ks=(10,))
    timings["total_s"] = round(time.perf_counter() - tic, 1)
    log(f"test: plain NDCG@10 {plain_t['ndcg@10']:.4f} HR@10 {plain_t['hit@10']:.4f}; memory NDCG@10 {mem_t['ndcg@10']:.4f} "
        f"HR@10 {mem_t['hit@10']:.4f} ({relative(mem_t['ndcg@10'], plain_t['ndcg@10'])})")
    return {
        "benchmark": "knn-memory",
        "dataset": ds.name,
        "checkpoint": str(checkpoint),
        "seed": config.train.seed,
        "model": config.model,
        "max_len": max_len,
        "protocol": f"{split.protocol}; full ranking over {ds.num_items} items, history masked, pessimistic ties (memrec rank_targets)",
        "bank": {"valid_entries": len(bank_v), "test_entries": len(bank_t),
                 "valid_bank": "every position of every user's training sequence",
                 "test_bank": "valid bank + each evaluated user's validation position (no test item)",
                 "exclusion": "entries of the queried user are never retrieved"},
        "mixture": "p = (1 - lam) softmax(model logits over rankable items) + lam p_knn; p_knn = softmax(sim / T) over the k nearest other-user keys, summed per value item, zero on padding + history, renormalised",
        "examples": {"valid": len(valid), "test": len(test)},
        "grid": {"similarities": sorted({c["similarity"] for c in settings}), "ks": sorted({c["k"] for c in settings}),
                 "temperatures": {s: sorted({c["temperature"] for c in settings if c["similarity"] == s}) for s in {c["similarity"] for c in settings}},
                 "lams": sorted({c["lam"] for c in settings}), "size": len(settings)},
        "chosen": chosen,
        "valid": {"plain": plain_v, "memory": {"ndcg@10": best["valid_ndcg@10"], "hit@10": best["valid_hit@10"]}},
        "test": {
            "plain": plain_t,
            "memory": mem_t,
            "relative_ndcg@10": relative(mem_t["ndcg@10"], plain_t["ndcg@10"]),
            "relative_hit@10": relative(mem_t["hit@10"], plain_t["hit@10"]),
            "ndcg@10_difference_ci95": paired_ci(user_ndcg(test_ranks[1]) - user_ndcg(plain_test)),
            "memory_train_only_bank": metrics_from_ranks(train_only, ks=(10,)),
            "popularity_control": {"chosen_on_valid": chosen_pop, "valid_ndcg@10": best_pop["valid_ndcg@10"], "valid_hit@10": best_pop["valid_hit@10"],
                                   **metrics_from_ranks(test_ranks[2], ks=(10,)),
                                   "ndcg@10_difference_vs_plain_ci95": paired_ci(user_ndcg(test_ranks[2]) - user_ndcg(plain_test))},
            "lam_sweep_not_used_for_selection": [{"lam": c["lam"], **metrics_from_ranks(r, ks=(10,))} for c, r in zip(lam_sweep, test_ranks[3:])],
        },
        "valid_grid": rows,
        "valid_popularity_control": pop_rows,
        "control": "popularity: p_knn = frequency of each item among all bank values of other users (no similarity, no k), mixed the same way, lam tuned on validation",
        "timings_s": timings,
        "threads": torch.get_num_threads(),
    }


def table(report: dict) -> str:
    c, v, t = report["chosen"], report["valid"], report["test"]
    return markdown_table(
        ["dataset", "seed", "k", "sim", "T", "lam", "valid NDCG plain", "valid NDCG mem", "test NDCG plain", "test NDCG mem", "test HR plain", "test HR mem", "rel NDCG"],
        [[report["dataset"], report["seed"], c["k"], c["similarity"], c["temperature"], c["lam"], v["plain"]["ndcg@10"], v["memory"]["ndcg@10"],
          t["plain"]["ndcg@10"], t["memory"]["ndcg@10"], t["plain"]["hit@10"], t["memory"]["hit@10"], t["relative_ndcg@10"]]],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by `memrec train`")
    p.add_argument("--data-dir", default=None, help="folder of the registered data sets (else $MEMREC_DATA_DIR)")
    p.add_argument("--batch-size", type=int, default=256, help="queries per exact search")
    p.add_argument("--ks", type=int, nargs="+", default=list(KS))
    p.add_argument("--lams", type=float, nargs="+", default=list(LAMS))
    p.add_argument("--similarities", nargs="+", default=list(SIMILARITIES), choices=SIMILARITIES)
    p.add_argument("--tag", default="", help="suffix of the result file name, e.g. s1")
    p.add_argument("--json", default=None, help="output path (default benchmarks/results/knn-memory-DATASET[-TAG].json)")
    args = p.parse_args()
    torch.set_num_threads(1)
    report = run(args.checkpoint, args.data_dir, grid(args.similarities, args.ks, None, args.lams), args.batch_size)
    report["command"] = "python benchmarks/knn_memory.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items() if v not in (None, ""))
    name = f"knn-memory-{report['dataset']}" + (f"-{args.tag}" if args.tag else "") + ".json"
    path = write_report(report, args.json or RESULTS / name)
    print(table(report))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
