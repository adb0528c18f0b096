#!/usr/bin/env python
"""``memrec stream`` over seeds (issue 20): one run per seed (the model trained before T with that
seed, then every policy replayed on the same stream), then mean ± std (sample std) per policy, the
per-bucket NDCG@10 plot averaged over seeds, and what changes over the time line.

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data nice -n 5 python benchmarks/stream_seeds.py \\
        --model sasrec --cut 0.8 --seeds 42 1 2 --policies frozen,neighbours,retrain --plot docs/stream.png --train.epochs=12

writes ``benchmarks/results/stream-ml-100k-sasrec-0.8-seed{N}.json`` per seed (a seed already there
is not run again), ``benchmarks/results/stream-ml-100k-sasrec-0.8.json`` (the summary) and
``docs/stream.png`` (``--plot``). ``--summary-only`` rebuilds the summary and plot from the seeds' files.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench_common import RESULTS, ROOT

GROUPS = ("all", "ranked", "known_user_known_item", "new_user")


def mean_std(values: list[float]) -> dict:
    """Example:
        >>> mean_std([0.1, 0.3])
        {'mean': 0.2, 'std': 0.1414, 'n': 2}
    """
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else None,
            "n": len(values)}


def drift(dataset: str, cut: str) -> dict:
    """What changes over the time line after T: the stream's users and items first seen after T, how far
    the popularity of the stream's items moved from before T (the overlap of the top 100 and the share
    of stream events whose item is in the pre-T top 100), and how often a stream event repeats an item
    its user already had (a miss under full ranking, the history masked)."""
    from memrec.api import run_config
    from memrec.data import load_dataset
    from memrec.stream import cut_dataset

    c = cut_dataset(load_dataset(run_config("sasrec", dataset).data), cut)
    before_items = [e.item for events in c.before.values() for e in events]
    stream_items = [e.item for e in c.stream]
    top = lambda items: [i for i, _ in sorted(_counts(items).items(), key=lambda kv: -kv[1])[:100]]  # noqa: E731
    top_before, top_after = top(before_items), top(stream_items)
    known_items = set(before_items)
    halves = np.array_split(np.arange(len(c.stream)), 2)
    return {"stream_events": len(c.stream), "events_before": len(before_items),
            "users_first_seen_after_T": len({e.user for e in c.stream if e.user not in c.before}),
            "events_of_new_users": sum(e.user not in c.before for e in c.stream),
            "items_first_seen_after_T": len(set(stream_items) - known_items),
            "events_of_new_items": sum(i not in known_items for i in stream_items),
            "returning_users": len({e.user for e in c.stream if e.user in c.before}),
            "returning_users_mean_events_before_T": round(float(np.mean([len(c.before[u]) for u in {e.user for e in c.stream if e.user in c.before}])), 1),
            "top100_overlap_before_vs_stream": len(set(top_before) & set(top_after)) / 100,
            "stream_share_in_top100_before": round(float(np.mean([i in set(top_before) for i in stream_items])), 4),
            "stream_share_in_top100_stream": round(float(np.mean([i in set(top_after) for i in stream_items])), 4),
            "top100_overlap_first_half_vs_second_half": len(set(top([stream_items[j] for j in halves[0]]))
                                                                   & set(top([stream_items[j] for j in halves[1]]))) / 100}


def _counts(items: list[str]) -> dict:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def summarise(reports: dict[int, dict], dataset: str, model: str, cut: str) -> dict:
    policies = list(next(iter(reports.values()))["policies"])
    out = {"model": model, "dataset": dataset, "seeds": sorted(reports), "policies": {}}
    first = next(iter(reports.values()))
    out["stream"], out["cut"] = first["stream"], first["cut"]
    for name in policies:
        runs = [r["policies"][name] for r in reports.values() if name in r["policies"]]
        row = {g: {m: mean_std([run[g][m] for run in runs]) for m in ("ndcg@10", "hit@10")} for g in GROUPS}
        row["events"] = {g: runs[0][g]["events"] for g in GROUPS}
        row["new_item_events"] = runs[0]["new_item"]["events"]
        row["cost"] = {key: mean_std([run["cost"][key] for run in runs]) for key in ("seconds_per_1000_events", "retrain_seconds")}
        row["buckets"] = [{"from": b["from"], "ndcg@10": mean_std([run["buckets"][k]["ndcg@10"] for run in runs])}
                          for k, b in enumerate(runs[0]["buckets"])]
        row["settings"] = [run["settings"] for run in runs]
        out["policies"][name] = row
    frozen = out["policies"].get("plain") or out["policies"].get("frozen")  # the weights alone, where measured
    if frozen:
        base = frozen["all"]["ndcg@10"]["mean"]
        out["baseline"] = "plain" if "plain" in out["policies"] else "frozen"
        for name, row in out["policies"].items():
            row["vs_baseline_ndcg@10"] = round(row["all"]["ndcg@10"]["mean"] / base - 1, 4)
        paired = {name: mean_std([r["policies"][name]["all"]["ndcg@10"] - r["policies"][out["baseline"]]["all"]["ndcg@10"]
                                  for r in reports.values() if name in r["policies"]]) for name in policies}
        out["gain_over_baseline_ndcg@10_per_seed"] = paired
        if "retrain" in out["policies"]:
            events = first["stream"]["events"] / 1000
            total = lambda row: row["cost"]["seconds_per_1000_events"]["mean"] * events + row["cost"]["retrain_seconds"]["mean"]  # noqa: E731
            retrain = out["policies"]["retrain"]
            # the baseline's replay does per event what retrain's does between retrainings: the cheaper of the two
            # measurements is the cost of that work (the machine is shared, each timing carries its load)
            base_cost = min(frozen["cost"]["seconds_per_1000_events"]["mean"], retrain["cost"]["seconds_per_1000_events"]["mean"]) * events
            gain = retrain["all"]["ndcg@10"]["mean"] - base
            out["target"] = {"retrain_gain_ndcg@10": round(gain, 4), "retrain_extra_seconds": round(total(retrain) - base_cost, 1)}
            for name, row in out["policies"].items():
                if name in (out["baseline"], "retrain"):
                    continue
                out["target"][name] = {"beats_baseline_by": row["vs_baseline_ndcg@10"], "needs": 0.05,
                                       "share_of_retraining_gain": round((row["all"]["ndcg@10"]["mean"] - base) / gain, 3) if gain > 0 else None,
                                       "extra_seconds": round(total(row) - base_cost, 1),
                                       "extra_compute_vs_retrain": round((total(row) - base_cost) / (total(retrain) - base_cost), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sasrec")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--cut", default="0.8")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    p.add_argument("--policies", default="frozen,neighbours,retrain")
    p.add_argument("--runs", default="runs/stream", help="folder for each seed's model and report")
    p.add_argument("--plot", help="also write the per-bucket plot here (e.g. docs/stream.png)")
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--add", help="policies to run on the seeds already done, with each seed's own checkpoint (merged into its file)")
    args, overrides = p.parse_known_args(argv)  # the rest: --section.key=value for training
    from memrec.stream import run_stream
    from memrec.stream.report import plot

    stem = f"stream-{args.dataset}-{args.model}-{args.cut}"
    reports = {}
    for seed in args.seeds:
        path = RESULTS / f"{stem}-seed{seed}.json"
        if not path.is_file() and not args.summary_only:
            run_stream(args.model, args.dataset, ROOT / args.runs / f"{stem}-seed{seed}", cut=args.cut, policies=args.policies.split(","),
                       overrides=[f"--train.seed={seed}", *overrides], json_path=path)
        if path.is_file() and args.add and not args.summary_only:
            report = json.loads(path.read_text())
            missing = [name for name in args.add.split(",") if name not in report["policies"]]
            if missing:
                extra = run_stream(args.model, args.dataset, ROOT / args.runs / f"{stem}-seed{seed}-add", cut=args.cut, policies=missing,
                                   checkpoint=report["checkpoint"])
                report["policies"].update(extra["policies"])
                path.write_text(json.dumps(report, indent=2))
        if path.is_file():
            reports[seed] = json.loads(path.read_text())
    summary = summarise(reports, args.dataset, args.model, args.cut)
    summary["drift"] = drift(args.dataset, args.cut)
    summary["command"] = "python benchmarks/stream_seeds.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:])
    (RESULTS / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    if args.plot:
        plot(summary, ROOT / args.plot)  # memrec.stream.report.plot: mean ± std per bucket
    print(json.dumps({name: {"ndcg@10": row["all"]["ndcg@10"], "cost": row["cost"]} for name, row in summary["policies"].items()}, indent=1))
    print(json.dumps(summary.get("target"), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
