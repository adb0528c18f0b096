"""memrec at 10^6 items: training, full evaluation, /recommend and batch inference, on synthetic data
or a real trained checkpoint. Speed and memory only: synthetic figures are never accuracy.

``synthetic`` (writes ``benchmarks/results/scale-synthetic.json``), one process, one thread, in order:

1. the data: :func:`memrec.data.synthetic.synthetic_dataset` (10^6 users, 10^6 items, 1.2 * 10^7 events);
2. training SASRec with sampled softmax (popularity negatives, logQ), ``--steps`` steps of
   :meth:`memrec.train.Trainer.train_epoch` (a capped epoch), seconds per step and per full epoch
   (steps per epoch x seconds per step), then ``--ce-steps`` steps of full cross-entropy beside it
   (none by default: at 10^6 items one step takes minutes);
   the process's peak memory after each (the peak so far: ru_maxrss);
3. full-ranking evaluation (every item ranked, history masked, in item chunks) of ``--eval-users``
   validation users, and the seconds all of them would take at that rate;
4. ``/recommend``'s model part (:meth:`memrec.serve.model.ServedModel.recommend`, in process) for
   ``--requests`` users: p50 / p99 exact and through the item index (IVF, at each of ``--nprobes``),
   and recall@10 of the index's top-10 against the exact top-10 (history excluded from both);
5. batch inference (:func:`memrec.batch.recommend_all`) over ``--batch-users`` users, exact and through
   the index (memrec's default, nprobe 16): users per second.

``checkpoint RUN`` (writes ``benchmarks/results/scale-NAME.json``): steps 4 and 5 on a trained run
(neighbour memory off: the index ranks the model's own dot products), the index forced on (IVF).

    OMP_NUM_THREADS=1 python benchmarks/scale.py synthetic
    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/scale.py checkpoint runs/sasrec-nb-beauty-42 --name beauty
"""
from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def peak_gib() -> float:
    """The process's peak resident memory so far."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def percentiles(ms: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


class CappedBatches:
    """The first ``steps`` batches of each epoch of ``batches``: a capped epoch for the trainer's own loop."""

    def __init__(self, batches, steps: int):
        self.batches, self.steps = batches, steps

    def __len__(self) -> int:
        return self.steps

    def epoch(self, seed: int):
        return itertools.islice(self.batches.epoch(seed), self.steps)


def train_steps(trainer, steps: int) -> float:
    """Seconds per step of :meth:`~memrec.train.Trainer.train_epoch` over its first ``steps`` batches."""
    full, trainer.batches = trainer.batches, CappedBatches(trainer.batches, steps)
    tic = time.perf_counter()
    trainer.train_epoch(1)
    trainer.batches = full
    return (time.perf_counter() - tic) / steps


def serving(model, item_ids, histories, search_config, nprobes: list[int], k: int = 10) -> dict:
    """/recommend's model part, exact and through the item index at each ``nprobe``: latency and recall@10."""
    from dataclasses import replace

    from memrec.memory.item_search import ItemSearch
    from memrec.serve.model import ServedModel
    from memrec.store.events import Event

    served = ServedModel(model, item_ids, model.max_len, model.name)
    tic = time.perf_counter()
    index = ItemSearch(served.table, search_config)
    build = time.perf_counter() - tic
    requests = [[Event(item_ids[i], float(t)) for t, i in enumerate(history)] for history in histories]

    def measure(search) -> tuple[dict, list]:
        served.search, times, tops = search, [], []
        for events in requests[:5]:  # warm up
            served.recommend(events, None, k)
        for events in requests:
            tic = time.perf_counter()
            tops.append(served.recommend(events, None, k).items)
            times.append((time.perf_counter() - tic) * 1000)
        return percentiles(times), tops

    exact, truth = measure(None)
    out = {"requests": len(histories), "index": index.backend, "index_build_seconds": round(build, 1), "exact": exact, "by_nprobe": []}
    for nprobe in nprobes:
        index.index.params = replace(index.index.params, nprobe=nprobe)  # read at each search
        latency, tops = measure(index)
        recall = float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(tops, truth)]))
        out["by_nprobe"].append({"nprobe": nprobe, **latency, f"recall@{k}": round(recall, 4)})
    return out


def batch_inference(checkpoint, ds, users: int, search_config) -> dict:
    """recommend_all over the first ``users`` users, exact and through the item index: users per second."""
    from memrec.api import Recommender
    from memrec.batch import recommend_all
    from memrec.data.dataset import SequenceDataset
    from memrec.memory.index import SearchConfig

    part = ds if users >= ds.num_users else SequenceDataset(ds.name, ds.user_ids[:users], ds.item_ids, ds.sequences[:users], None, ds.items)
    rec = Recommender(checkpoint, part, None, memory="off")
    out = {"users": part.num_users}
    with tempfile.TemporaryDirectory() as folder:
        warm = Recommender(checkpoint, SequenceDataset(ds.name, ds.user_ids[:64], ds.item_ids, ds.sequences[:64], None, ds.items), None, memory="off")
        recommend_all(warm, Path(folder) / "warm.parquet", k=10, chunk=1024, search=search_config, log=lambda *_: None)  # imports, index build
        for name, config in (("exact", SearchConfig(backend="torch")), (search_config.choose(ds.num_items), search_config)):
            report = recommend_all(rec, Path(folder) / f"{name}.parquet", k=10, chunk=1024, search=config, log=lambda *_: None)
            out[f"{name}_users_per_second"] = report["users_per_second"]
    return out


def synthetic(args) -> dict:
    from memrec.config import RunConfig
    from memrec.data import split_dataset
    from memrec.data.synthetic import synthetic_dataset
    from memrec.memory.index import SearchConfig
    from memrec.models import build_model
    from memrec.train import Trainer
    from memrec.train.checkpoint import Checkpoint
    from memrec.train.evaluate import rank_evalset
    from memrec.train.trainer import seed_everything

    report = {"threads": torch.get_num_threads()}
    tic = time.perf_counter()
    ds = synthetic_dataset(args.users, args.items, args.events, seed=0)
    split = split_dataset(ds)
    report["data"] = {"users": ds.num_users, "items": ds.num_items, "events": ds.num_interactions,
                      "seconds": round(time.perf_counter() - tic, 1), "peak_gib": peak_gib()}
    print("data", report["data"], flush=True)
    train = {"batch_size": args.batch_size, "loss": "sampled_softmax", "sampler": "popularity", "logq": True, "num_negatives": 256}
    config = RunConfig.from_dict({"model": "sasrec", "data": {"max_len": 50}, "train": train, "model_config": {"hidden_size": 64}})
    seed_everything(0)
    model = build_model("sasrec", ds.num_items, 50, config.model_config)
    trainer = Trainer(model, split, config, progress=False)
    per_step = train_steps(trainer, args.steps)
    report["train"] = {"model": "sasrec (hidden 64, 2 layers, max_len 50)", **train, "steps_timed": args.steps, "seconds_per_step": round(per_step, 3),
                       "steps_per_epoch": len(trainer.batches), "seconds_per_epoch": round(per_step * len(trainer.batches)), "peak_gib": peak_gib()}
    print("train", report["train"], flush=True)
    if args.ce_steps:
        ce = Trainer(model, split, RunConfig.from_dict({**config.to_dict(), "train": {**train, "loss": "ce"}}), progress=False)
        ce_step = train_steps(ce, args.ce_steps)
        report["train_full_ce"] = {"steps_timed": args.ce_steps, "seconds_per_step": round(ce_step, 2),
                                   "seconds_per_epoch": round(ce_step * len(ce.batches)), "peak_gib": peak_gib(),
                                   "slower_than_sampled": round(ce_step / per_step, 1)}
        print("train_full_ce", report["train_full_ce"], flush=True)
        del ce
    model.eval()
    rows = np.random.default_rng(0).choice(len(split.valid), min(args.eval_users, len(split.valid)), replace=False)
    tic = time.perf_counter()
    rank_evalset(model, split.valid.subset(np.sort(rows)), 50, batch_size=256)
    seconds = time.perf_counter() - tic
    report["evaluate"] = {"users": len(rows), "seconds": round(seconds, 1), "users_per_second": round(len(rows) / seconds, 1),
                          "all_valid_users": len(split.valid), "seconds_for_all": round(seconds * len(split.valid) / len(rows)), "peak_gib": peak_gib()}
    print("evaluate", report["evaluate"], flush=True)
    search = SearchConfig(approximate_from=args.approximate_from)  # memrec's default: IVF (nprobe 16) from 10^6 items
    histories = [ds.sequences[u] for u in np.random.default_rng(1).choice(ds.num_users, args.requests, replace=False)]
    report["recommend"] = serving(model, ds.item_ids, histories, search, args.nprobes)
    report["recommend"]["peak_gib"] = peak_gib()
    print("recommend", report["recommend"], flush=True)
    checkpoint = Checkpoint(model, config, ds.item_ids, ds.fingerprint())
    report["batch_inference"] = {**batch_inference(checkpoint, ds, args.batch_users, search), "peak_gib": peak_gib()}
    print("batch_inference", report["batch_inference"], flush=True)
    return report


def checkpoint_run(args) -> dict:
    import memrec
    from memrec.memory.index import SearchConfig

    rec = memrec.load(args.run, memory="off")
    ds, model = rec.dataset, rec.model
    search = SearchConfig(backend="ivf")  # forced: below 10^6 items memrec would score exactly
    histories = [ds.sequences[u] for u in np.random.default_rng(1).choice(ds.num_users, min(args.requests, ds.num_users), replace=False)]
    report = {"run": str(args.run), "dataset": ds.name, "items": ds.num_items, "users": ds.num_users, "threads": torch.get_num_threads(),
              "memory": "off (the model's own dot products)"}
    report["recommend"] = serving(model, ds.item_ids, histories, search, args.nprobes)
    print("recommend", report["recommend"], flush=True)
    report["batch_inference"] = batch_inference(rec.checkpoint, ds, args.batch_users, search)
    print("batch_inference", report["batch_inference"], flush=True)
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    syn = sub.add_parser("synthetic")
    syn.add_argument("--users", type=int, default=1_000_000)
    syn.add_argument("--items", type=int, default=1_000_000)
    syn.add_argument("--events", type=int, default=12_000_000)
    syn.add_argument("--batch-size", type=int, default=256)
    syn.add_argument("--steps", type=int, default=100)
    syn.add_argument("--ce-steps", type=int, default=0, help="steps of full cross-entropy beside (minutes each at 10^6 items)")
    syn.add_argument("--eval-users", type=int, default=1024)
    syn.add_argument("--requests", type=int, default=500)
    syn.add_argument("--batch-users", type=int, default=2048)
    syn.add_argument("--approximate-from", type=int, default=1_000_000, help="items from which the index is used (memrec's default)")
    syn.add_argument("--nprobes", type=int, nargs="+", default=[16, 64, 256], help="IVF cells visited per query, measured in turn")
    syn.add_argument("--output", default=str(RESULTS / "scale-synthetic.json"))
    run = sub.add_parser("checkpoint")
    run.add_argument("run")
    run.add_argument("--name", required=True)
    run.add_argument("--requests", type=int, default=1000)
    run.add_argument("--batch-users", type=int, default=10**9, help="users of batch inference (default: all)")
    run.add_argument("--nprobes", type=int, nargs="+", default=[16, 64], help="IVF cells visited per query, measured in turn")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report = synthetic(args) if args.what == "synthetic" else checkpoint_run(args)
    output = Path(args.output if args.what == "synthetic" else RESULTS / f"scale-{args.name}.json")
    report = {"benchmark": "benchmarks/scale.py", "command": "OMP_NUM_THREADS=1 python benchmarks/scale.py " + " ".join(argv or sys.argv[1:]),
              "synthetic": args.what == "synthetic", **report}
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
