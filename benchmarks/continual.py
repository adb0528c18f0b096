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

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/continual.py --epochs-a 20 --epochs-b 8
    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/continual.py --epochs-a 20 --epochs-b 20 --json benchmarks/results/continual-ml-100k-b20.json
    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/continual.py --scenario genre --epochs-a 20 --epochs-b 8
    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/continual.py --scenario genre --epochs-a 20 --epochs-b 20 --json benchmarks/results/continual-genre-ml-100k-b20.json
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

from bench_common import RESULTS, ROOT, continue_training, fit, frozen_config, markdown_table, metrics, ndcg10, paired_ci, relative, write_report
from memrec.config import DataConfig
from memrec.data import load_dataset, split_dataset
from memrec.data.dataset import SequenceDataset
from memrec.data.split import Split
from memrec.models import build_model
from memrec.train.evaluate import metrics_from_ranks, rank_evalset

MODELS = {  # label: (model, model_config overrides, model_config overrides for phase 2)
    "sasrec": ("sasrec", {}, {}),
    "memory-moe, no memory": ("memory-moe", {"use_memory": False}, {}),
    "memory-moe, memory": ("memory-moe", {}, {}),
    "memory-moe, memory frozen in phase 2": ("memory-moe", {}, {"store_per_step": 0}),
}


SCENARIOS = ("time", "genre")


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


def run(epochs_a: int = 20, epochs_b: int = 8, max_minutes: float | None = 10.0, data_dir: str | None = None,
        max_users: int | None = None, models=tuple(MODELS), cache_dir: Path | None = None, log=print, scenario: str = "time") -> dict:
    ds = load_dataset(DataConfig(dataset="ml-100k", data_dir=data_dir))
    part_a, part_b, where = scenario_parts(ds, scenario, max_users)
    log(f"{scenario} {where}: A {sum(map(len, part_a.train))} training items, {len(part_a.test)} test users; "
        f"B {sum(map(len, part_b.train))} training items, {len(part_b.test)} test users")
    phase1: dict[tuple, tuple] = {}  # phase-1 runs shared by labels that differ only in phase 2
    results, per_user = {}, {}  # per_user: each A test user's NDCG@10 forgetting, for paired comparisons
    for label in models:
        name, overrides, phase2 = MODELS[label]
        config = frozen_config(name, "ml-100k", max_minutes, epochs_a, **overrides)
        max_len = config.data.max_len
        key = (name, tuple(sorted(overrides.items())))
        if key not in phase1:
            cache = None if cache_dir is None or max_users else cache_dir / f"continual-{'' if scenario == 'time' else scenario + '-'}A-{name}{'-nomem' if overrides else ''}-e{epochs_a}-{max_minutes}m.pt"
            model, info = fit(config, ds.num_items, part_a, cache, log=lambda line: None)
            phase1[key] = (copy.deepcopy(model.state_dict()), info, rank_evalset(model, part_a.test, max_len))
        state, info_a, ranks_before = phase1[key]
        config_b = frozen_config(name, "ml-100k", max_minutes, epochs_b, **overrides, **phase2)
        model = build_model(config_b.model, ds.num_items, max_len, config_b.model_config)
        model.load_state_dict(state)
        model, info_b = continue_training(model, config_b, part_b, log=lambda line: None)
        ranks_after = rank_evalset(model, part_a.test, max_len)
        before, after, b_after = at10(ranks_before), at10(ranks_after), metrics(model, part_b.test, max_len)
        per_user[label] = ndcg10(ranks_before) - ndcg10(ranks_after)
        results[label] = {"phase1": info_a, "phase2": info_b, "A_before": before, "A_after": after, "B_after": b_after,
                          "forgetting": {m: before[m] - after[m] for m in before},
                          "forgetting_ndcg@10_ci95": paired_ci(per_user[label])}
        log(f"{label}: {results[label]}")
    return {"dataset": ds.name, "scenario": scenario, **where, "A_test_users": len(part_a.test), "B_test_users": len(part_b.test),
            "epochs_a": epochs_a, "epochs_b": epochs_b, "max_minutes": max_minutes, "protocol": __doc__.split("\n\n")[1],
            "results": results, "memory_halves_forgetting": halves(results, per_user)}


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir")
    p.add_argument("--epochs-a", type=int, default=20)
    p.add_argument("--epochs-b", type=int, default=8)
    p.add_argument("--max-minutes", type=float, default=10.0, help="a time guard per phase (the epoch caps should bind first)")
    p.add_argument("--cache", default=str(ROOT / "runs" / "bench"), help="folder for phase-1 weights ('' for none)")
    p.add_argument("--scenario", choices=SCENARIOS, default="time", help="time: cut the time line at its median; genre: split the items by genre")
    p.add_argument("--json", help="default: benchmarks/results/continual-ml-100k.json (time), continual-genre-ml-100k.json (genre)")
    args = p.parse_args()
    json_path = args.json or str(RESULTS / ("continual-ml-100k.json" if args.scenario == "time" else f"continual-{args.scenario}-ml-100k.json"))
    report = run(args.epochs_a, args.epochs_b, args.max_minutes, args.data_dir, cache_dir=Path(args.cache) if args.cache else None,
                 scenario=args.scenario)
    write_report(report, json_path)
    print(table(report))
    print(f"\nmemory halves forgetting: {report['memory_halves_forgetting']}\nwritten to {json_path}")


if __name__ == "__main__":
    main()
