"""``memrec stream``: train on the events before T, replay the rest through each policy, report.

Example:
    memrec stream --model sasrec --dataset ml-100k --cut 0.8 --policies frozen,neighbours,retrain --output runs/stream-ml-100k
"""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from memrec.errors import MemrecError
from memrec.stream.policies import POLICIES, make_policy
from memrec.stream.protocol import cut_dataset, replay
from memrec.stream.report import _date, policy_report, write_report


def train_before_cut(model: str, dataset: str, before: dict, folder: Path, memory: str | None, overrides: Iterable[str], log) -> Path:
    """Train ``model`` on the events before T only (written to ``folder/before-cut.csv``), with the
    usual trainer and its validation (leave-one-out inside that part); returns the checkpoint."""
    from memrec.api import frozen_config, run_config
    from memrec.train import train_and_evaluate

    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "before-cut.csv"
    with table.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["user", "item", "timestamp"])
        for user, events in before.items():
            out.writerows([user, e.item, repr(e.timestamp)] for e in events)
    cfg = run_config(model, str(table), config=frozen_config(model, dataset), memory=memory, overrides=list(overrides), log=log)
    train_and_evaluate(cfg, folder / "model", log=log, progress=False, overwrite=True)
    return folder / "model" / "checkpoint.pt"


def run_stream(model: str = "sasrec", dataset: str = "ml-100k", output: str | Path = "runs/stream", *, cut: float | str = 0.8,
               policies: Iterable[str] = POLICIES, memory: str | None = "neighbours", data_dir: str | None = None,
               overrides: Iterable[str] = (), checkpoint: str | Path | None = None, sync_every: int = 100, retrain_days: float = 7.0,
               retrain_epochs: int = 2, buckets: int = 10, batch_size: int = 256, json_path: str | Path | None = None,
               log: Callable = print) -> dict:
    """The stream protocol end to end; writes ``report.json`` and ``stream.png`` to ``output``.
    ``checkpoint``: a model already trained on the events before the same cut (else one is trained)."""
    from memrec.api import run_config
    from memrec.data import load_dataset

    policies = list(policies)
    for name in policies:  # refuse a bad name before hours of work
        if name not in POLICIES:
            make_policy(name, None, None, None)
    output = Path(output)
    ds = load_dataset(run_config(model, dataset, data_dir=data_dir).data)
    c = cut_dataset(ds, cut)
    new_user = np.array([e.user not in c.before for e in c.stream])
    stamps = np.array([e.timestamp for e in c.stream])
    log(f"cut at T={_date(c.time)}: {sum(map(len, c.before.values())):,} events before, {len(c.stream):,} after "
        f"({new_user.sum():,} of users first seen after T)")
    tic = time.perf_counter()
    if checkpoint is None:
        checkpoint = train_before_cut(model, dataset, c.before, output, memory, overrides, log)
    train_seconds = time.perf_counter() - tic
    report = {"model": model, "dataset": ds.name, "checkpoint": str(checkpoint), "train_seconds": round(train_seconds, 1),
              "cut": {"given": str(cut), "time": c.time, "date": _date(c.time)},
              "protocol": "events after T in time order; before each event the full catalogue is ranked for its user with what the "
                          "system knows then (history masked, ties pessimistic), then the event is applied",
              "stream": {"events": len(c.stream), "users": len({e.user for e in c.stream}), "new_user_events": int(new_user.sum()),
                         "from": _date(stamps[0]), "to": _date(stamps[-1])},
              "policies": {}}
    for name in policies:
        try:
            policy = make_policy(name, checkpoint, c.before, c.stream, sync_every, retrain_days, retrain_epochs)
        except MemrecError as e:  # e.g. a neighbour memory that validation switched off: said in the report, not fatal
            report["policies_not_run"] = {**report.get("policies_not_run", {}), name: str(e)}
            log(f"{name}: not run: {e}")
            continue
        try:
            result = replay(policy, c.stream, batch_size)
        finally:
            policy.close()
        stream_seconds = result.rank_seconds + result.apply_seconds - policy.retrain_seconds
        entry = policy_report(result.ranks, result.new_item, new_user, stamps, buckets)
        entry["settings"] = policy.describe()
        entry["cost"] = {"seconds_per_1000_events": round(1000 * stream_seconds / len(c.stream), 3),
                         "retrain_seconds": round(policy.retrain_seconds, 1), "applications": policy.applications}
        report["policies"][name] = entry
        log(f"{name}: NDCG@10 {entry['all']['ndcg@10']:.4f} HR@10 {entry['all']['hit@10']:.4f} over {len(c.stream):,} events "
            f"({entry['new_item']['events']} of new items, counted as misses); {entry['cost']['seconds_per_1000_events']:.2f}s per 1,000 events"
            + (f", {policy.retrain_seconds:.0f}s retraining" if policy.retrain_seconds else ""))
    write_report(report, output, Path(json_path) if json_path else None)
    return report
