#!/usr/bin/env python
"""Continual learning on ML-100K: how much of the first half of the time line a model forgets when
it is fine-tuned on the second, with and without memory.

Protocol (decisions and why):

- **time line**: ML-100K cut at the global timestamp median (a stable order inside a timestamp, as
  everywhere in memrec). Part A is every interaction before the cut, part B the rest; about half
  the users are active in only one part, so B is mostly new users and newer movies.
- **Amazon Scientific is left out**: it has no timestamps, so there is no time line to cut, and
  halves of its sequences (median length 6) would leave one or two training items per user and
  half; sequence-position halves would also mix times across users. The result would measure noise.
- **each part** is split leave-one-out inside itself (last item test, second to last validation,
  rest training; users with fewer than 3 interactions in a part are trained on, not evaluated).
  Histories of part B start at the cut: phase 2 sees only phase-2 data (plain fine-tuning, no replay).
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


def time_halves(ds: SequenceDataset, max_users: int | None = None) -> tuple[Split, Split, float]:
    """Leave-one-out splits of the parts before and after the global timestamp median."""
    stamps = np.concatenate(ds.timestamps)
    cut = float(np.median(stamps))
    parts = {"A": [], "B": []}
    for seq, ts in zip(ds.sequences[:max_users], ds.timestamps[:max_users]):
        k = int(np.searchsorted(ts, cut, side="left"))
        parts["A"].append(seq[:k])
        parts["B"].append(seq[k:])
    splits = []
    for name, seqs in parts.items():
        part = SequenceDataset(f"{ds.name}-{name}", ds.user_ids[: len(seqs)], ds.item_ids, seqs, None, ds.items)
        s = split_dataset(part)
        splits.append(Split(s.train, s.valid, s.test, f"part {name} of the time line cut at t={cut:.0f}; {s.protocol}"))
    return splits[0], splits[1], cut


def run(epochs_a: int = 20, epochs_b: int = 8, max_minutes: float | None = 10.0, data_dir: str | None = None,
        max_users: int | None = None, models=tuple(MODELS), cache_dir: Path | None = None, log=print) -> dict:
    ds = load_dataset(DataConfig(dataset="ml-100k", data_dir=data_dir))
    part_a, part_b, cut = time_halves(ds, max_users)
    log(f"cut at {cut:.0f}: A {sum(map(len, part_a.train))} training items, {len(part_a.test)} test users; "
        f"B {sum(map(len, part_b.train))} training items, {len(part_b.test)} test users")
    phase1: dict[tuple, tuple] = {}  # phase-1 runs shared by labels that differ only in phase 2
    results = {}
    for label in models:
        name, overrides, phase2 = MODELS[label]
        config = frozen_config(name, "ml-100k", max_minutes, epochs_a, **overrides)
        max_len = config.data.max_len
        key = (name, tuple(sorted(overrides.items())))
        if key not in phase1:
            cache = None if cache_dir is None or max_users else cache_dir / f"continual-A-{name}{'-nomem' if overrides else ''}-e{epochs_a}-{max_minutes}m.pt"
            model, info = fit(config, ds.num_items, part_a, cache, log=lambda line: None)
            phase1[key] = (copy.deepcopy(model.state_dict()), info, rank_evalset(model, part_a.test, max_len))
        state, info_a, ranks_before = phase1[key]
        config_b = frozen_config(name, "ml-100k", max_minutes, epochs_b, **overrides, **phase2)
        model = build_model(config_b.model, ds.num_items, max_len, config_b.model_config)
        model.load_state_dict(state)
        model, info_b = continue_training(model, config_b, part_b, log=lambda line: None)
        ranks_after = rank_evalset(model, part_a.test, max_len)
        before, after, b_after = at10(ranks_before), at10(ranks_after), metrics(model, part_b.test, max_len)
        results[label] = {"phase1": info_a, "phase2": info_b, "A_before": before, "A_after": after, "B_after": b_after,
                          "forgetting": {m: before[m] - after[m] for m in before},
                          "forgetting_ndcg@10_ci95": paired_ci(ndcg10(ranks_before) - ndcg10(ranks_after))}
        log(f"{label}: {results[label]}")
    return {"dataset": ds.name, "cut_timestamp": cut, "A_test_users": len(part_a.test), "B_test_users": len(part_b.test),
            "epochs_a": epochs_a, "epochs_b": epochs_b, "max_minutes": max_minutes, "protocol": __doc__.split("\n\n")[1],
            "results": results, "memory_halves_forgetting": halves(results)}


def at10(ranks: np.ndarray) -> dict[str, float]:
    m = metrics_from_ranks(ranks, ks=(10,))
    return {"hit@10": m["hit@10"], "ndcg@10": m["ndcg@10"]}


def halves(results: dict) -> dict:
    """Whether memory-moe with memory forgets at most half of what it forgets without memory (NDCG@10).
    Only decidable when the model without memory measurably forgets (its 95% interval above 0)."""
    out = {}
    base = results.get("memory-moe, no memory")
    for label in ("memory-moe, memory", "memory-moe, memory frozen in phase 2"):
        if base and label in results:
            f, f0 = results[label]["forgetting"]["ndcg@10"], base["forgetting"]["ndcg@10"]
            forgets = base["forgetting_ndcg@10_ci95"][0] > 0
            out[label] = {"forgetting": f, "without_memory": f0, "without_memory_ci95": base["forgetting_ndcg@10_ci95"],
                          "ratio": f / f0 if forgets else None, "met": bool(forgets and f <= f0 / 2) if forgets else None,
                          "note": "" if forgets else "no measurable forgetting without memory (its 95% interval includes 0): nothing to halve"}
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
    p.add_argument("--json", default=str(RESULTS / "continual-ml-100k.json"))
    args = p.parse_args()
    report = run(args.epochs_a, args.epochs_b, args.max_minutes, args.data_dir, cache_dir=Path(args.cache) if args.cache else None)
    write_report(report, args.json)
    print(table(report))
    print(f"\nmemory halves forgetting: {report['memory_halves_forgetting']}\nwritten to {args.json}")


if __name__ == "__main__":
    main()
