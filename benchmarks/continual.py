#!/usr/bin/env python
"""Continual learning on ML-100K: how much of a first part of the data a model forgets when it is
fine-tuned on a second part, with and without memory, in two scenarios (``--scenario``).

Protocol (decisions and why):

- **time line** (``--scenario time``): ML-100K cut at the global timestamp median (a stable order
  inside a timestamp, as everywhere in memrec). Part A is every interaction before the cut, part B
  the rest; about half the users are active in only one part, so B is mostly new users and newer
  movies, and A's test users keep their histories (the committed run: no model forgets measurably).
- **genre** (``--scenario genre``, item-incremental, a domain shift): the items are split by one
  genre, fixed by rule before any run: the genre that most ML-100K movies carry (Drama: 725 of 1,682
  movies, 40% of the interactions). Part A is every user's interactions with movies tagged with it,
  part B every user's interactions with all other movies, each in time order; the item sets are
  disjoint, the users the same. Phase 2 trains only on B's items as targets, so a plain full-softmax
  fine-tune pushes A's movies down: the forgetting of a domain, which the memory target needs.
  A's histories hold no B movie, and B's training items are never A's targets; times are not cut
  (a user's B items may come after their A test item), so this measures domains, not the future.
- **Amazon Scientific is left out**: it has no timestamps, so there is no time line to cut, and
  halves of its sequences (median length 6) would leave one or two training items per user and
  half; sequence-position halves would also mix times across users. The result would measure noise.
  Its categories are not a field either (only words inside each item's free text), and a category
  split of such short sequences would again leave a part of one or two items per user.
- **each part** is split leave-one-out inside itself (last item test, second to last validation,
  rest training; users with fewer than 3 interactions in a part are trained on, not evaluated).
  Phase 2 sees only part B (histories of B start at the cut, or hold only B's items): plain
  fine-tuning, no replay.
- **phase 1**: train on A from scratch (frozen ML-100K config; early stopping on A's validation),
  at most ``--epochs-a`` epochs for every model. Score A's test targets: *A before*.
- **phase 2**: continue the same weights on B with a fresh AdamW at the same learning rate, exactly
  as the trainer trains, at most ``--epochs-b`` epochs for every model, keeping the epoch best on
  B's validation. Score A's test targets again (*A after*) and B's (*B after*).
- **forgetting** = A before - A after (NDCG@10 and HR@10), with a paired bootstrap 95% interval
  over A's test users; the memory target is forgetting of memory-moe with memory at most half that
  of the same network trained without memory, decided only where the latter measurably forgets.
- **models**: SASRec; memory-moe with memory (the memory keeps storing during phase 2, as in
  training); memory-moe with memory frozen in phase 2 (read, never written: the phase-1 memories
  survive, a replay-free anchor); memory-moe without memory (``use_memory=false``, trained apart).
- **episodic memory of part A** (on top of every model above, evaluated after the fact on the same
  phase-2 weights): at the end of phase 1 the episodes of A's training sequences, one per position
  ``t >= 1`` (owner, items before t, item t: :func:`memrec.memory.neighbours.contexts`), go into a
  :class:`~memrec.memory.neighbours.NeighbourMemory` (key: the phase-1 model's ``encode`` of the
  prefix, value: the next item). No A validation or test target is a value. Its ``k``, temperature
  and weight are chosen by :func:`~memrec.memory.neighbours.tune` on A's validation with the phase-1
  model (the default grid, weight 0 among the candidates), before phase 2; after phase 1 nothing of
  A is used but what the memory holds (its keys, values, owners and the stored episodes' prefixes).
  After phase 2, A's test users are ranked by the phase-2 model's scores mixed with the memory
  (kNN-LM mixture, ``NeighbourMemory.mix``), query = the phase-2 model's ``encode`` of the history,
  under four policies (:data:`POLICIES`; (c) and (d) below): **(a) phase-1 keys** (the memory as stored: keys from the phase-1 encoder,
  queries from the drifted phase-2 encoder); **(b) re-indexed** (after phase 2 the keys are recomputed
  from the stored A prefixes with the phase-2 encoder; values, owners and setting unchanged). (b) is
  re-indexing, not replay: no gradient step ever sees A after phase 1, only a forward pass over the
  stored episodes. The memory's owner exclusion is kept: a query never reads its own user's entries.
  For an A user their own entries point only at items of their own A history, which full ranking
  masks (the mass is dropped), so keeping them would only take slots of the k nearest; excluding them
  gives the same mixture with k other users' episodes, the rule the setting was tuned under (a B
  user's own A entries would point at their own A items: unmasked in B's ranking but never a B
  target, so reading them could only cost B; one rule for every query).
  **B with the memory**: B's test users are ranked the same way (query = their B history, through
  the phase-2 model), reading the same A memory with the same setting, because a deployed model
  would not know which part a query comes from; the A memory can only point at A items, never a B
  target, so this measures the harm it does to B (a paired 95% interval of the NDCG@10 change).
  Forgetting with the memory = A before (the phase-1 model alone, as above) - A after with the
  memory; the verdict (``episodic_memory_halves_forgetting``) compares it with the same network's
  forgetting without the episodic memory: met when at most half, decided only where the network
  without it measurably forgets; ``excess_over_half_ci95`` is the paired interval. A before with
  the memory is reported too, and a weight sweep on test (never used for selection) shows the range.
  **(c) gated**: as (b), and a query reads the memory only when its nearest entry's cosine reaches a
  gate set in phase 2 from B's validation alone (:func:`gated`), so that B's queries, far from A's
  episodes, keep the model's own ranking. **(d) re-tuned and gated**: as (c), with k, temperature and
  weight chosen again after phase 2 on A's validation positions (kept with the memory at the end of
  phase 1) with the phase-2 encoder, since the weight chosen before phase 2, when the model still knows
  A, is often too small to protect it afterwards. Committed genre runs (``-b20``, seeds 42, 1, 2):
  (b) cuts memory-moe's forgetting but costs B up to 15%; (d) cuts memory-moe's forgetting to 0.22-0.35
  of what it was and SASRec's to 0.39-0.55, with B unchanged.

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/continual.py --epochs-a 20 --epochs-b 8
    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/continual.py --epochs-a 20 --epochs-b 20 --json benchmarks/results/continual-ml-100k-b20.json
    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/continual.py --scenario genre --epochs-a 20 --epochs-b 8
    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/continual.py --scenario genre --epochs-a 20 --epochs-b 20 --json benchmarks/results/continual-genre-ml-100k-b20.json

Phase-1 weights are cached in ``runs/bench/continual-[SCENARIO-]A-*.pt`` and phase-2 weights in
``runs/bench/continual-[SCENARIO-]B-*.pt`` (delete them to retrain); ``--models`` restricts the run.
"""
from __future__ import annotations

import argparse
import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench_common import RESULTS, ROOT, continue_training, fit, frozen_config, markdown_table, paired_ci, relative, write_report
from memrec.config import DataConfig
from memrec.data import load_dataset, split_dataset
from memrec.data.batching import EvalBatch, eval_batches
from memrec.data.dataset import SequenceDataset
from memrec.data.split import EvalSet, Split
from memrec.config import NeighbourConfig
from memrec.memory.neighbours import NeighbourMemory, contexts, mix_scores, seen_mask, tune
from memrec.models import build_model
from memrec.train.evaluate import MIN_ROWS, metrics_from_ranks, padded_scores, rank_evalset, rank_targets, user_ndcg

MODELS = {  # label: (model, model_config overrides, model_config overrides for phase 2)
    "sasrec": ("sasrec", {}, {}),
    "memory-moe, no memory": ("memory-moe", {"use_memory": False}, {}),
    "memory-moe, memory": ("memory-moe", {}, {}),
    "memory-moe, memory frozen in phase 2": ("memory-moe", {}, {"store_per_step": 0}),
}


SCENARIOS = ("time", "genre")
POLICIES = {"phase1_keys": "(a) keys from the phase-1 encoder, queries from the phase-2 encoder",
            "reindexed": "(b) keys recomputed from the stored A episodes with the phase-2 encoder (a forward pass, no training on A)",
            "gated": "(c) as (b), and a query reads the memory only when its nearest entry's cosine reaches a gate, set in phase 2 "
                     "on B's validation (no A data): the lowest of GATES at which B's validation NDCG@10 is not below the model alone",
            "retuned": "(d) as (c), with k, T and the weight chosen again after phase 2, on A's validation positions (kept with the "
                       "memory at the end of phase 1, like its episodes) with the phase-2 encoder, before the gate is set"}
GATES = (-1.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)  # candidate gates for (c); -1 mixes every query, 1.0 almost none
SWEEP_WEIGHTS = (0.1, 0.3, 0.5, 0.7, 0.9)  # the test-time weight sweep, reported, never used for selection
BATCH = 512  # evaluation batch size, as rank_evalset's
GRID = NeighbourConfig(decays=(0.0,), confidence=0.0)  # the best validation setting, its gain significant or not (as the results were measured)


def time_halves(ds: SequenceDataset, max_users: int | None = None) -> tuple[Split, Split, float]:
    """Leave-one-out splits of the parts before and after the global timestamp median."""
    stamps = np.concatenate(ds.timestamps)
    cut = float(np.median(stamps))
    parts = {"A": [], "B": []}
    for seq, ts in zip(ds.sequences[:max_users], ds.timestamps[:max_users]):
        k = int(np.searchsorted(ts, cut, side="left"))
        parts["A"].append(seq[:k])
        parts["B"].append(seq[k:])
    part_a, part_b = loo_parts(ds, parts, f"of the time line cut at t={cut:.0f}")
    return part_a, part_b, cut


def most_common_genre(ds: SequenceDataset) -> str:
    """The genre (a token of an item's category, e.g. ML-100K's ``Drama``) that most items carry; ties by name."""
    counts: dict[str, int] = {}
    for category in ds.items.category[1:]:
        for genre in set(category.split()):
            counts[genre] = counts.get(genre, 0) + 1
    if not counts:
        raise ValueError(f"data set {ds.name!r} has no item categories to split by genre")
    return min(counts, key=lambda g: (-counts[g], g))


def genre_items(ds: SequenceDataset, genre: str) -> np.ndarray:
    """A mask over item indices (padding False): the items tagged with ``genre``."""
    return np.array([i > 0 and genre in category.split() for i, category in enumerate(ds.items.category)])


def genre_halves(ds: SequenceDataset, max_users: int | None = None, genre: str | None = None) -> tuple[Split, Split, str]:
    """Leave-one-out splits of every user's interactions with the items of ``genre`` (A; by default the
    most common genre) and with every other item (B), each in time order."""
    genre = genre or most_common_genre(ds)
    in_a = genre_items(ds, genre)
    parts = {"A": [], "B": []}
    for seq in ds.sequences[:max_users]:
        parts["A"].append(seq[in_a[seq]])
        parts["B"].append(seq[~in_a[seq]])
    part_a, part_b = loo_parts(ds, parts, f"of the items split by genre {genre!r} (A: tagged with it, B: the others)")
    return part_a, part_b, genre


def loo_parts(ds: SequenceDataset, parts: dict[str, list[np.ndarray]], what: str) -> list[Split]:
    """Each part's sequences (one per user, in user order) split leave-one-out inside the part."""
    splits = []
    for name, seqs in parts.items():
        part = SequenceDataset(f"{ds.name}-{name}", ds.user_ids[: len(seqs)], ds.item_ids, seqs, None, ds.items)
        s = split_dataset(part)
        splits.append(Split(s.train, s.valid, s.test, f"part {name} {what}; {s.protocol}"))
    return splits


def scenario_parts(ds: SequenceDataset, scenario: str, max_users: int | None = None) -> tuple[Split, Split, dict]:
    """Parts A and B of ``scenario`` and what defines them (for the report)."""
    if scenario == "time":
        part_a, part_b, cut = time_halves(ds, max_users)
        return part_a, part_b, {"cut_timestamp": cut}
    if scenario == "genre":
        part_a, part_b, genre = genre_halves(ds, max_users)
        in_a = genre_items(ds, genre)
        return part_a, part_b, {"genre": genre, "A_items": int(in_a.sum()), "B_items": int(ds.num_items - in_a.sum())}
    raise ValueError(f"unknown scenario {scenario!r}: expected one of {SCENARIOS}")


def padded(batch: EvalBatch) -> EvalBatch:
    """The batch with empty rows appended up to ``MIN_ROWS`` rows, as :func:`padded_scores` pads it
    (so that a state is computed by the same kernels whatever the batch size)."""
    extra = MIN_ROWS - len(batch.targets)
    if extra <= 0:
        return batch
    return replace(batch, users=torch.cat([batch.users, batch.users[:1].expand(extra)]),
                   history=torch.cat([batch.history, batch.history.new_zeros(extra, batch.history.size(1))]),
                   lengths=torch.cat([batch.lengths, batch.lengths.new_zeros(extra)]))


def encode(model, batch: EvalBatch) -> torch.Tensor:
    """The user vectors (B, d) ``model.encode(history, lengths, users)`` of a batch, computed on the batch
    padded as the evaluator pads it: the one query (and key) path of every memory here."""
    b = padded(batch)
    return model.encode(b.history, b.lengths, b.users)[: len(batch.targets)]


def states(model):
    """``states(batch) -> (scores (B, N + 1), queries (B, d))`` for :func:`tune`: the evaluator's own
    scores (:func:`padded_scores`) and the user vectors (:func:`encode`)."""
    def scores_and_queries(batch: EvalBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return padded_scores(model, batch), encode(model, batch)
    return scores_and_queries


@torch.no_grad()
def encode_episodes(model, episodes: EvalSet, max_len: int, batch_size: int = BATCH) -> torch.Tensor:
    """Keys (M, d): ``model.encode`` of each episode's prefix (its last ``max_len`` items), the
    evaluator's path, so that keys and queries live in the same space."""
    model.eval()
    keys = None
    for rows, batch in eval_batches(episodes, max_len, batch_size):
        h = encode(model, batch)
        if keys is None:
            keys = torch.zeros(len(episodes), h.size(1))
        keys[torch.from_numpy(rows)] = h
    return keys if keys is not None else torch.zeros(0, model.item_embeddings().size(1))


def episodic_memory(model, part_a: Split, max_len: int, grid: NeighbourConfig | None = None) -> tuple[NeighbourMemory, EvalSet, list[dict]]:
    """At the end of phase 1: the memory of A's training episodes, keyed by ``model`` (the phase-1
    model) and tuned on A's validation with it. Returns the memory, the stored episodes (owner,
    prefix, next item) and the tuning table (one row per setting, weight 0 first)."""
    episodes, _ = contexts(part_a.train)  # training positions only: no A validation or test target is a value
    keys = encode_episodes(model, episodes, max_len)
    memory = NeighbourMemory(keys.size(1))
    memory.build(keys, torch.from_numpy(episodes.targets), torch.from_numpy(episodes.users))
    with torch.no_grad():
        table = tune(memory, part_a.valid, max_len, states(model), grid or GRID, BATCH)
    return memory, episodes, table


def reindex(memory: NeighbourMemory, model, episodes: EvalSet, max_len: int) -> NeighbourMemory:
    """The same memory (values, owners, setting) with its keys recomputed from the stored episodes by
    ``model``: a forward pass over A's stored prefixes, no gradient step."""
    keys = encode_episodes(model, episodes, max_len)
    out = NeighbourMemory(keys.size(1))
    out.build(keys, torch.from_numpy(episodes.targets), torch.from_numpy(episodes.users))
    out.set(memory.k, memory.temperature, memory.weight)
    return out


def sweep_setting(table: list[dict]) -> tuple[int, float]:
    """The ``k`` and temperature of the best validation row with a weight above 0 (the chosen setting's
    own when the chosen weight is above 0): the neighbours the test-time weight sweep mixes in."""
    best = max((r for r in table if r["weight"] > 0), key=lambda r: (r["ndcg@10"], -r["weight"]), default=None)
    return (best["k"], best["temperature"]) if best else (0, 1.0)


@torch.no_grad()
def memory_ranks(model, memory: NeighbourMemory, evalset: EvalSet, max_len: int, k: int, temperature: float,
                 weights, gate: float = -1.0, batch_size: int = BATCH) -> dict[float, np.ndarray]:
    """Ranks of ``evalset`` (its order) under the model's scores mixed with the ``k`` nearest entries of
    ``memory`` at each weight (weight 0: the model's own scores), in the rows whose nearest entry reaches
    ``gate``. Queries never read their own user's entries."""
    model.eval()
    out = {w: np.zeros(len(evalset), dtype=np.int64) for w in weights}
    scores_and_queries = states(model)
    for rows, batch in eval_batches(evalset, max_len, batch_size):
        logits, queries = scores_and_queries(batch)
        seen = seen_mask(batch, logits.size(1))
        if k > 0 and len(memory):
            sims, values = memory.search(queries, batch.users, k)
        else:
            sims, values = logits.new_zeros(len(rows), 0), batch.users.new_zeros(len(rows), 0)
        for w in weights:
            out[w][rows] = rank_targets(mix_scores(logits, seen, sims, values, temperature, w, gate), batch).numpy()
    return out


def with_memory(model, memory: NeighbourMemory, evalset: EvalSet, max_len: int, sweep: tuple[int, float],
                plain: np.ndarray | None = None) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """Ranks at the memory's chosen setting and at every sweep weight (the sweep's k and temperature).
    With ``plain`` (the evaluator's ranks of the model alone), checks that weight 0 reproduces them."""
    chosen = memory.weight if memory.active else 0.0
    ranks = memory_ranks(model, memory, evalset, max_len, *sweep, sorted({0.0, chosen, *SWEEP_WEIGHTS}), memory.gate)
    if plain is not None and not np.array_equal(ranks[0.0], plain):
        raise AssertionError("the memory at weight 0 does not reproduce the model's own ranks")
    if chosen > 0 and (memory.k, memory.temperature) != sweep:  # not expected: the chosen row is the best with a weight
        return memory_ranks(model, memory, evalset, max_len, memory.k, memory.temperature, [chosen], memory.gate)[chosen], ranks
    return ranks[chosen], ranks


@torch.no_grad()
def nearest_cosines(model, memory: NeighbourMemory, evalset: EvalSet, max_len: int) -> dict[str, float]:
    """Percentiles (5, 50, 95) of each query's cosine similarity to its nearest entry of ``memory``: what the gate reads."""
    model.eval()
    nearest = [memory.search(encode(model, batch), batch.users, 1)[0][:, 0] for _, batch in eval_batches(evalset, max_len, BATCH)]
    values = torch.cat(nearest).numpy() if nearest else np.zeros(0)
    return {f"p{q}": float(np.percentile(values, q)) for q in (5, 50, 95)} if len(values) else {}


def gated(memory: NeighbourMemory, model, valid_b: EvalSet, max_len: int, gates=GATES) -> tuple[NeighbourMemory, list[dict]]:
    """A copy of ``memory`` with the lowest of ``gates`` at which B's validation NDCG@10 (phase-2 ``model``)
    is not below the model alone: the memory kept away from the new part's queries it would hurt, chosen
    with phase-2 data only. Returns the copy and one row per gate."""
    out = copy.deepcopy(memory)
    if not memory.active:
        return out, []
    grid = NeighbourConfig(ks=(memory.k,), temperatures=(memory.temperature,), weights=(memory.weight,), gates=tuple(gates), decays=(0.0,))
    plain, *table = tune(out, valid_b, max_len, states(model), grid, BATCH)  # one pass; the weight-0 row is the model alone
    rows = [{"gate": r["gate"], "B_valid_ndcg@10": r["ndcg@10"], "B_valid_ndcg@10_without": plain["ndcg@10"]} for r in table]
    chosen = next((r["gate"] for r in rows if r["B_valid_ndcg@10"] >= plain["ndcg@10"]), 1.0)
    out.set(memory.k, memory.temperature, memory.weight, chosen)
    return out, rows


def run(epochs_a: int = 20, epochs_b: int = 8, max_minutes: float | None = 10.0, data_dir: str | None = None,
        max_users: int | None = None, models=tuple(MODELS), cache_dir: Path | None = None, log=print, scenario: str = "time",
        episodic: bool = True, grid: NeighbourConfig | None = None, seed: int = 42) -> dict:
    ds = load_dataset(DataConfig(dataset="ml-100k", data_dir=data_dir))
    part_a, part_b, where = scenario_parts(ds, scenario, max_users)
    log(f"{scenario} {where}: A {sum(map(len, part_a.train))} training items, {len(part_a.test)} test users; "
        f"B {sum(map(len, part_b.train))} training items, {len(part_b.test)} test users")
    prefix = "" if scenario == "time" else scenario + "-"
    seeded = "" if seed == 42 else f"-s{seed}"  # the frozen configs' seed keeps the cache names of earlier runs
    phase1: dict[tuple, tuple] = {}  # phase-1 runs shared by labels that differ only in phase 2
    results, per_user = {}, {}  # per_user: each A test user's NDCG@10 forgetting, for paired comparisons
    episodic_per_user = {}  # label -> policy -> each A test user's forgetting with the episodic memory
    for label in models:
        name, overrides, phase2 = MODELS[label]
        config = frozen_config(name, "ml-100k", max_minutes, epochs_a, **overrides)
        config.train.seed = seed
        max_len = config.data.max_len
        key = (name, tuple(sorted(overrides.items())))
        tag = f"{name}{'-nomem' if overrides else ''}"
        if key not in phase1:
            cache = None if cache_dir is None or max_users else cache_dir / f"continual-{prefix}A-{tag}-e{epochs_a}-{max_minutes}m{seeded}.pt"
            model, info = fit(config, ds.num_items, part_a, cache, log=lambda line: None)
            ranks_before = rank_evalset(model, part_a.test, max_len)
            memory = None
            if episodic:  # end of phase 1: store A's training episodes, tune the memory on A's validation
                memory, episodes, tuning = episodic_memory(model, part_a, max_len, grid)
                sweep = sweep_setting(tuning)
                before_mem = with_memory(model, memory, part_a.test, max_len, sweep, ranks_before)[0]
                memory = (memory, episodes, tuning, sweep, before_mem)
                log(f"{tag}: A episodic memory {len(episodes)} entries, chosen k={memory[0].k} T={memory[0].temperature} "
                    f"w={memory[0].weight}: A valid NDCG@10 {tuning[0]['ndcg@10']:.4f} -> {max(r['ndcg@10'] for r in tuning):.4f}")
            phase1[key] = (copy.deepcopy(model.state_dict()), info, ranks_before, memory)
        state, info_a, ranks_before, memory = phase1[key]
        config_b = frozen_config(name, "ml-100k", max_minutes, epochs_b, **overrides, **phase2)
        config_b.train.seed = seed
        model = build_model(config_b.model, ds.num_items, max_len, config_b.model_config)
        model.load_state_dict(state)
        suffix = "".join(f"-{k}{v}" for k, v in sorted(phase2.items()))
        cache_b = None if cache_dir is None or max_users else cache_dir / f"continual-{prefix}B-{tag}{suffix}-a{epochs_a}-e{epochs_b}-{max_minutes}m{seeded}.pt"
        if cache_b is not None and cache_b.is_file():
            saved = torch.load(cache_b, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["state_dict"])
            model, info_b = model.eval(), {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in saved["info"].items()}
        else:
            model, info_b = continue_training(model, config_b, part_b, cache_b, log=lambda line: None)
        ranks_after = rank_evalset(model, part_a.test, max_len)
        ranks_b = rank_evalset(model, part_b.test, max_len)
        before, after, b_after = at10(ranks_before), at10(ranks_after), at10(ranks_b)
        per_user[label] = user_ndcg(ranks_before) - user_ndcg(ranks_after)
        results[label] = {"phase1": info_a, "phase2": info_b, "A_before": before, "A_after": after, "B_after": b_after,
                          "forgetting": {m: before[m] - after[m] for m in before},
                          "forgetting_ndcg@10_ci95": paired_ci(per_user[label])}
        if memory is not None:
            results[label]["episodic_memory"], episodic_per_user[label] = episodic_results(
                model, memory, part_a, part_b, max_len, ranks_before, ranks_after, ranks_b, grid)
        log(f"{label}: {results[label]}")
    report = {"dataset": ds.name, "scenario": scenario, **where, "A_test_users": len(part_a.test), "B_test_users": len(part_b.test),
              "epochs_a": epochs_a, "epochs_b": epochs_b, "max_minutes": max_minutes, "seed": seed, "protocol": protocol(),
              "results": results, "memory_halves_forgetting": halves(results, per_user)}
    if episodic:
        report["episodic_memory"] = {"policies": POLICIES, "grid": [list(row) for row in (grid or GRID).settings()],
                                     "sweep_weights": list(SWEEP_WEIGHTS)}
        report["episodic_memory_halves_forgetting"] = episodic_halves(results, per_user, episodic_per_user)
    return report


def protocol() -> str:
    """The docstring's protocol: its bullet list."""
    parts = __doc__.split("\n\n")
    return "\n\n".join(parts[1:3])


def episodic_results(model, memory: tuple, part_a: Split, part_b: Split, max_len: int, ranks_before: np.ndarray,
                     ranks_after: np.ndarray, ranks_b: np.ndarray, grid: NeighbourConfig | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """A after and B after with the episodic memory of A, under each of :data:`POLICIES`, for the phase-2 ``model``.
    Returns the report's entry and, per policy, each A test user's NDCG@10 forgetting with the memory."""
    bank, episodes, tuning, sweep, before_mem = memory
    banks = {"phase1_keys": bank, "reindexed": reindex(bank, model, episodes, max_len)}
    banks["gated"], gate_rows = gated(banks["reindexed"], model, part_b.valid, max_len)
    retuned = copy.deepcopy(banks["reindexed"])
    retuning = tune(retuned, part_a.valid, max_len, states(model), grid or GRID, BATCH)
    banks["retuned"], retuned_gate_rows = gated(retuned, model, part_b.valid, max_len)
    before = at10(ranks_before)
    out = {"entries": len(bank), "values": "the next item of every position t >= 1 of A's training sequences",
           "chosen": {"k": bank.k, "temperature": bank.temperature, "weight": bank.weight},
           "valid_ndcg@10_without": tuning[0]["ndcg@10"], "valid_ndcg@10_with": max(r["ndcg@10"] for r in tuning),
           "A_before_with_memory": at10(before_mem), "valid_grid": tuning,
           "gate": {"chosen": banks["gated"].gate, "B_valid": gate_rows,
                    "nearest_cosine_A_test": nearest_cosines(model, banks["gated"], part_a.test, max_len),
                    "nearest_cosine_B_test": nearest_cosines(model, banks["gated"], part_b.test, max_len)},
           "retuning": {"chosen": {"k": retuned.k, "temperature": retuned.temperature, "weight": retuned.weight, "gate": banks["retuned"].gate},
                       "A_valid_ndcg@10_without": retuning[0]["ndcg@10"], "A_valid_ndcg@10_with": max(r["ndcg@10"] for r in retuning),
                       "B_valid": retuned_gate_rows},
           "weight_sweep_not_used_for_selection": {"k": sweep[0], "temperature": sweep[1], "rows": []}}
    per_user, sweeps = {}, {}
    for policy, mem in banks.items():
        a_ranks, a_sweep = with_memory(model, mem, part_a.test, max_len, sweep, ranks_after)
        b_ranks, b_sweep = with_memory(model, mem, part_b.test, max_len, sweep, ranks_b)
        after, b_after = at10(a_ranks), at10(b_ranks)
        per_user[policy] = user_ndcg(ranks_before) - user_ndcg(a_ranks)
        out[policy] = {"A_after": after, "forgetting": {m: before[m] - after[m] for m in before},
                       "forgetting_ndcg@10_ci95": paired_ci(per_user[policy]),
                       "forgetting_vs_before_with_memory": {m: out["A_before_with_memory"][m] - after[m] for m in before},
                       "A_after_change_ndcg@10_ci95": paired_ci(user_ndcg(a_ranks) - user_ndcg(ranks_after)),
                       "B_after": b_after, "B_change_ndcg@10": b_after["ndcg@10"] - at10(ranks_b)["ndcg@10"],
                       "B_change_ndcg@10_ci95": paired_ci(user_ndcg(b_ranks) - user_ndcg(ranks_b)),
                       "B_relative_ndcg@10": relative(b_after["ndcg@10"], at10(ranks_b)["ndcg@10"])}
        sweeps[policy] = (a_sweep, b_sweep)
    for w in sorted(sweeps["phase1_keys"][0]):
        out["weight_sweep_not_used_for_selection"]["rows"].append(
            {"weight": w, **{f"{part}_ndcg@10_{policy}": float(user_ndcg(sweeps[policy][i][w]).mean()) if len(sweeps[policy][i][w]) else float("nan")
                             for policy in banks for i, part in enumerate(("A", "B"))}})
    return out, per_user


def episodic_halves(results: dict, per_user: dict[str, np.ndarray], episodic_per_user: dict[str, dict[str, np.ndarray]]) -> dict:
    """Per model and key policy: whether the episodic memory leaves at most half of the forgetting of the
    same network without it (NDCG@10), decided only where that network measurably forgets (its 95%
    interval above 0); ``excess_over_half_ci95``: paired interval of forgetting with - half of without."""
    out = {}
    for label, policies in episodic_per_user.items():
        base = results[label]
        f0, ci0 = base["forgetting"]["ndcg@10"], base["forgetting_ndcg@10_ci95"]
        forgets = ci0[0] > 0
        out[label] = {}
        for policy, diff in policies.items():
            f = results[label]["episodic_memory"][policy]["forgetting"]["ndcg@10"]
            out[label][policy] = {"forgetting": f, "without_memory": f0, "without_memory_ci95": ci0,
                                  "ratio": f / f0 if forgets else None, "met": bool(f <= f0 / 2) if forgets else None,
                                  "excess_over_half_ci95": paired_ci(diff - per_user[label] / 2),
                                  "note": "" if forgets else "no measurable forgetting without the memory (its 95% interval includes 0): nothing to halve"}
    return out


def at10(ranks: np.ndarray) -> dict[str, float]:
    m = metrics_from_ranks(ranks, ks=(10,))
    return {"hit@10": m["hit@10"], "ndcg@10": m["ndcg@10"]}


def halves(results: dict, per_user: dict[str, np.ndarray] | None = None) -> dict:
    """Whether memory-moe with memory forgets at most half of what it forgets without memory (NDCG@10).
    Only decidable when the model without memory measurably forgets (its 95% interval above 0).
    ``met`` compares the means; with ``per_user`` forgetting (the same A test users for every model)
    ``excess_over_half_ci95`` is the paired 95% interval of forgetting - half the forgetting without
    memory: wholly at or below 0, the target is met beyond noise; wholly above 0, missed beyond noise."""
    out = {}
    base = results.get("memory-moe, no memory")
    for label in ("memory-moe, memory", "memory-moe, memory frozen in phase 2"):
        if base and label in results:
            f, f0 = results[label]["forgetting"]["ndcg@10"], base["forgetting"]["ndcg@10"]
            forgets = base["forgetting_ndcg@10_ci95"][0] > 0
            out[label] = {"forgetting": f, "without_memory": f0, "without_memory_ci95": base["forgetting_ndcg@10_ci95"],
                          "ratio": f / f0 if forgets else None, "met": bool(forgets and f <= f0 / 2) if forgets else None,
                          "note": "" if forgets else "no measurable forgetting without memory (its 95% interval includes 0): nothing to halve"}
            if per_user and label in per_user and "memory-moe, no memory" in per_user:
                out[label]["excess_over_half_ci95"] = paired_ci(per_user[label] - per_user["memory-moe, no memory"] / 2)
    return out


def table(report: dict) -> str:
    rows = []
    for label, r in report["results"].items():
        a, b = r["A_before"], r["A_after"]
        rows.append([label, f"{r['phase1']['epochs']} ({r['phase1']['best_epoch']})", f"{r['phase2']['epochs']} ({r['phase2']['best_epoch']})",
                     a["ndcg@10"], b["ndcg@10"], r["forgetting"]["ndcg@10"], "[{:+.4f}, {:+.4f}]".format(*r["forgetting_ndcg@10_ci95"]),
                     relative(b["ndcg@10"], a["ndcg@10"]),
                     a["hit@10"], b["hit@10"], r["forgetting"]["hit@10"], r["B_after"]["ndcg@10"], r["B_after"]["hit@10"]])
    return markdown_table(["model", "A epochs (best)", "B epochs (best)", "A NDCG@10 before", "A NDCG@10 after", "forgetting", "95% CI", "change",
                           "A HR@10 before", "A HR@10 after", "HR forgetting", "B NDCG@10", "B HR@10"], rows)


def episodic_table(report: dict) -> str:
    """A before / after per model without and with the episodic memory of A, one column per policy of :data:`POLICIES`."""
    rows = []
    for label, r in report["results"].items():
        e = r.get("episodic_memory")
        if not e:
            continue
        c, v = e["chosen"], report["episodic_memory_halves_forgetting"][label]
        ci = "[{:+.4f}, {:+.4f}]".format
        rows.append([label, f"{c['k']}, {c['temperature']}, {c['weight']}", r["A_before"]["ndcg@10"], e["A_before_with_memory"]["ndcg@10"],
                     r["A_after"]["ndcg@10"]] + [e[p]["A_after"]["ndcg@10"] for p in POLICIES]
                    + [f"{r['forgetting']['ndcg@10']:.4f} {ci(*r['forgetting_ndcg@10_ci95'])}"]
                    + [f"{e[p]['forgetting']['ndcg@10']:.4f} {ci(*e[p]['forgetting_ndcg@10_ci95'])}" for p in POLICIES]
                    + [f"{v[p]['ratio']:.2f}" if v[p]["ratio"] is not None else "n/a" for p in POLICIES]
                    + [str(v[p]["met"]) for p in POLICIES]
                    + [r["B_after"]["ndcg@10"]] + [f"{e[p]['B_after']['ndcg@10']:.4f} ({e[p]['B_relative_ndcg@10']})" for p in POLICIES])
    tags = [POLICIES[p][:3] for p in POLICIES]  # "(a)", "(b)", ...
    return markdown_table(["model", "k, T, w", "A before", "A before + mem", "A after"] + [f"A after + mem {t}" for t in tags]
                          + ["forgetting [95% CI]"] + [f"forgetting {t}" for t in tags] + [f"ratio {t}" for t in tags]
                          + [f"halved {t}" for t in tags] + ["B after"] + [f"B + mem {t}" for t in tags], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir")
    p.add_argument("--epochs-a", type=int, default=20)
    p.add_argument("--epochs-b", type=int, default=8)
    p.add_argument("--max-minutes", type=float, default=10.0, help="a time guard per phase (the epoch caps should bind first)")
    p.add_argument("--cache", default=str(ROOT / "runs" / "bench"), help="folder for phase-1 weights ('' for none)")
    p.add_argument("--scenario", choices=SCENARIOS, default="time", help="time: cut the time line at its median; genre: split the items by genre")
    p.add_argument("--json", help="default: benchmarks/results/continual-ml-100k.json (time), continual-genre-ml-100k.json (genre)")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), metavar="LABEL",
                   help=f"the models to run (default all): {', '.join(repr(m) for m in MODELS)}")
    p.add_argument("--no-episodic", action="store_true", help="skip the episodic memory of part A")
    p.add_argument("--seed", type=int, default=42, help="training seed of both phases (default: the frozen configs' 42)")
    args = p.parse_args()
    json_path = args.json or str(RESULTS / ("continual-ml-100k.json" if args.scenario == "time" else f"continual-{args.scenario}-ml-100k.json"))
    report = run(args.epochs_a, args.epochs_b, args.max_minutes, args.data_dir, models=tuple(args.models),
                 cache_dir=Path(args.cache) if args.cache else None, scenario=args.scenario, episodic=not args.no_episodic,
                 seed=args.seed)
    write_report(report, json_path)
    print(table(report))
    print(f"\nmemory halves forgetting: {report['memory_halves_forgetting']}")
    if "episodic_memory_halves_forgetting" in report:
        print("\nepisodic memory of part A ((a) phase-1 keys, (b) re-indexed with the phase-2 encoder, (c) re-indexed and gated, "
              "(d) re-tuned on A's validation after phase 2 and gated):\n" + episodic_table(report))
        print(f"\nepisodic memory halves forgetting: {report['episodic_memory_halves_forgetting']}")
    print(f"written to {json_path}")


if __name__ == "__main__":
    main()
