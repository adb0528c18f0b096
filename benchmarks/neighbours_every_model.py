#!/usr/bin/env python
"""The neighbour memory on every model (issue 18): test NDCG@10 / HR@10 of each checkpoint trained
with the memory, at the setting chosen on validation and switched off on the same weights.

Each argument is a run folder (or checkpoint) of ``memrec train ... --memory.neighbours.enabled=true``
(RAMRec's frozen configs enable it). Per run: test metrics with the memory as chosen and with it off
(``model.neighbours.set(k=0, ...)``; RAMRec keeps its own bank), a paired bootstrap 95% interval of the
per-user NDCG@10 gain, and from the run's ``metrics.json`` the chosen setting, the validation figures
and the validation gain interval the significance rule decided on. Per data set × model × neighbour
grid: mean ± std (sample std, ddof 1) over the seeds present, the relative gain of the means and the
bootstrap interval of the per-user gain averaged over seeds (the same test users in every seed).

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/neighbours_every_model.py \\
        runs/sasrec-nb-beauty-42 runs/ramrec-beauty-42 runs/sasrec-nb-sports-42

writes ``benchmarks/results/neighbours-every-model.json`` (the Markdown table is printed and stored
in it under ``markdown``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench_common import RESULTS, load_run, markdown_table, paired_ci, relative, write_report
from memrec.config import NeighbourConfig
from memrec.train.evaluate import metrics_from_ranks, rank_evalset, user_ndcg

GRID_FIELDS = ("ks", "temperatures", "weights", "gates", "decays", "horizon", "confidence")


def grid_label(config: NeighbourConfig) -> str:
    """``generic`` for the default candidate grid, else the fields that differ from it.

    Example:
        >>> grid_label(NeighbourConfig(enabled=True))
        'generic'
        >>> grid_label(NeighbourConfig(ks=(128, 512, 2048), weights=(0.3, 0.5, 0.7)))
        'ks=[128, 512, 2048] weights=[0.3, 0.5, 0.7]'
    """
    default = NeighbourConfig()
    differ = [f"{name}={list(v) if isinstance(v, tuple) else v}" for name in GRID_FIELDS
              if (v := getattr(config, name)) != getattr(default, name)]
    return " ".join(differ) or "generic"


def evaluate_run(folder: str | Path, data_dir: str | None = None, log=print) -> tuple[dict, np.ndarray]:
    """One run: its test metrics with the neighbour memory as chosen and off, and the per-user
    NDCG@10 gain (with minus without, in test-set order)."""
    model, config, ds, split = load_run(folder, data_dir)
    folder = Path(folder)
    saved = json.loads(((folder if folder.is_dir() else folder.parent) / "metrics.json").read_text())
    max_len, batch = config.data.max_len, config.train.eval_batch_size
    chosen = model.neighbours.describe()
    with_ranks = rank_evalset(model, split.test, max_len, batch)
    model.neighbours.set(k=0, temperature=1.0, weight=0.0)
    without_ranks = rank_evalset(model, split.test, max_len, batch)
    with_m, without_m = (metrics_from_ranks(r, config.train.metric_ks) for r in (with_ranks, without_ranks))
    gain = user_ndcg(with_ranks) - user_ndcg(without_ranks)
    nm = saved.get("neighbour_memory") or {}
    record = {
        "run": str(folder),
        "dataset": ds.name,
        "model": config.model,
        "seed": config.train.seed,
        "grid": grid_label(config.memory.neighbours) if config.memory.neighbours.enabled else "memory not built",
        "neighbour_grid": {name: getattr(config.memory.neighbours, name) for name in ("enabled",) + GRID_FIELDS},
        "test_without": {k: v for k, v in without_m.items() if k.endswith("@10")},
        "test_with": {k: v for k, v in with_m.items() if k.endswith("@10")},
        "test_ndcg@10_relative_gain": relative(with_m["ndcg@10"], without_m["ndcg@10"]),
        "test_ndcg@10_gain_ci95": paired_ci(gain),
        "chosen": chosen,
        "memory_used": bool(chosen["k"] > 0 and chosen["weight"] > 0 and nm.get("entries", 0) > 0),
        "entries": nm.get("entries", 0),
        "valid_ndcg@10_without": nm.get("valid_ndcg@10_without"),
        "valid_ndcg@10_with": nm.get("valid_ndcg@10_with"),
        "valid_ndcg@10_gain_interval": nm.get("valid_ndcg@10_gain_interval"),
        "confidence": nm.get("confidence"),
        "metrics_json_test_ndcg@10": saved["test"]["ndcg@10"],
        "metrics_json_test_hit@10": saved["test"]["hit@10"],
        "matches_metrics_json": bool(np.isclose(with_m["ndcg@10"], saved["test"]["ndcg@10"], rtol=0, atol=1e-12)
                                     and np.isclose(with_m["hit@10"], saved["test"]["hit@10"], rtol=0, atol=1e-12)),
        "epochs": saved.get("epochs"),
        "best_epoch": saved.get("best_epoch"),
        "train_seconds": saved.get("train_seconds"),
        "test_users": len(split.test),
    }
    log(f"{folder}: {ds.name} {config.model} seed {config.train.seed}: test NDCG@10 {without_m['ndcg@10']:.4f} -> {with_m['ndcg@10']:.4f}"
        f" (HR@10 {without_m['hit@10']:.4f} -> {with_m['hit@10']:.4f}), chosen {chosen}"
        + ("" if record["matches_metrics_json"] else f"; metrics.json says {saved['test']['ndcg@10']:.4f} / {saved['test']['hit@10']:.4f}"))
    return record, gain


def mean_std(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else None, "values": [float(v) for v in a]}


def summarise(records: list[dict], gains: list[np.ndarray]) -> list[dict]:
    """Per data set × model × grid: mean ± std over seeds and the interval of the seed-averaged per-user gain."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r["dataset"], r["model"], r["grid"]), []).append(i)
    out = []
    for (dataset, model, grid), rows in groups.items():
        runs = sorted(rows, key=lambda i: records[i]["seed"])
        seeds = [records[i]["seed"] for i in runs]
        if len(set(seeds)) < len(seeds):
            raise SystemExit(f"{dataset} {model} ({grid}): seed given twice in {[records[i]['run'] for i in runs]}")
        sizes = {len(gains[i]) for i in runs}
        summary = {"dataset": dataset, "model": model, "grid": grid, "seeds": seeds, "runs": [records[i]["run"] for i in runs]}
        for side in ("test_without", "test_with"):
            summary[side] = {m: mean_std([records[i][side][m] for i in runs]) for m in ("ndcg@10", "hit@10")}
        summary["test_ndcg@10_relative_gain"] = relative(summary["test_with"]["ndcg@10"]["mean"], summary["test_without"]["ndcg@10"]["mean"])
        summary["test_ndcg@10_gain_ci95"] = paired_ci(np.mean([gains[i] for i in runs], axis=0)) if len(sizes) == 1 else None
        summary["chosen"] = {str(records[i]["seed"]): records[i]["chosen"] if records[i]["memory_used"] else None for i in runs}
        summary["valid_ndcg@10_gain_interval"] = {str(records[i]["seed"]): records[i]["valid_ndcg@10_gain_interval"] for i in runs}
        out.append(summary)
    return sorted(out, key=lambda s: (s["dataset"], s["model"], s["grid"]))


def fmt(stat: dict) -> str:
    return f"{stat['mean']:.4f}" + ("" if stat["std"] is None else f" ± {stat['std']:.4f}")


def setting(chosen: dict | None) -> str:
    if chosen is None:
        return "off"
    return f"k{chosen['k']} t{chosen['temperature']:g} w{chosen['weight']:g} d{chosen['decay']:g}" + \
        ("" if chosen["gate"] == -1.0 else f" g{chosen['gate']:g}")


def table(summaries: list[dict]) -> str:
    rows = []
    for s in summaries:
        per_seed = "; ".join(f"{seed}: {setting(s['chosen'][seed])} [{iv[0]:+.4f}, {iv[1]:+.4f}]" if iv else f"{seed}: {setting(s['chosen'][seed])}"
                             for seed, iv in s["valid_ndcg@10_gain_interval"].items())
        ci = s["test_ndcg@10_gain_ci95"]
        rows.append([s["dataset"], s["model"] + ("" if s["grid"] == "generic" else f" ({s['grid']})"), ",".join(map(str, s["seeds"])),
                     fmt(s["test_without"]["ndcg@10"]), fmt(s["test_with"]["ndcg@10"]), fmt(s["test_without"]["hit@10"]),
                     fmt(s["test_with"]["hit@10"]), s["test_ndcg@10_relative_gain"],
                     "n/a" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]", per_seed])
    return markdown_table(["data set", "model (grid)", "seeds", "NDCG@10 off", "NDCG@10 with", "HR@10 off", "HR@10 with",
                           "NDCG@10 gain", "test gain 95% CI", "chosen on validation [valid gain interval] per seed"], rows)


def run(folders: list[str | Path], data_dir: str | None = None, log=print) -> dict:
    records, gains = [], []
    for folder in folders:
        record, gain = evaluate_run(folder, data_dir, log)
        records.append(record)
        gains.append(gain)
    summaries = summarise(records, gains)
    return {
        "benchmark": "neighbours-every-model",
        "protocol": "leave-one-out, full ranking over the catalogue, history masked, pessimistic ties; 'off': the same weights with "
                    "model.neighbours.set(k=0, temperature=1.0, weight=0.0); std: sample std over seeds (ddof 1); test gain CI: paired "
                    "bootstrap (2000 resamples, seed 0) of the per-user NDCG@10 gain averaged over the seeds",
        "summary": summaries,
        "runs": records,
        "markdown": table(summaries),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders (or checkpoint.pt files) of `memrec train` with the neighbour memory")
    p.add_argument("--data-dir", default=None, help="folder holding the data sets (else the checkpoint's config / $MEMREC_DATA_DIR)")
    p.add_argument("--json", default=str(RESULTS / "neighbours-every-model.json"), help="where to write the results")
    args = p.parse_args()
    torch.set_num_threads(1)
    report = run(args.runs, args.data_dir)
    report["command"] = "python benchmarks/neighbours_every_model.py " + " ".join(args.runs)
    path = write_report(report, args.json)
    print(report["markdown"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
