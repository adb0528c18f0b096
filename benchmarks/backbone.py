#!/usr/bin/env python
"""What closes the gap to BSARec's SASRec-sized backbone (issue 19): one ablation row per difference
between memrec's SASRec and BSARec / FMLP-Rec's recipe, on validation NDCG@10 (test only for the row
finally chosen), from ``memrec train`` runs of the frozen config with one override each.

    # train a row (one job at a time; prefix rows cost ~6x an epoch, so every row is capped at 30 minutes)
    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/backbone.py --train prefixes-from-end --runs runs/backbone
    # collect the rows present (a row's folder may be given as ROW=PATH), measure ties on ROW's
    # weights, build the neighbour memory on ROW's weights, and write benchmarks/results/backbone-beauty.json
    python benchmarks/backbone.py --runs runs/backbone --ties prefixes-from-end --neighbours prefixes-from-end

Each row reports its best validation NDCG@10 / HR@10, the epoch it was reached and epochs run, and
with ``--cost`` each recipe's epoch timed side by side with the baseline's (the runs' own seconds were
taken under different loads of a shared machine) and the best validation NDCG@10 reached within the
work of the baseline's epochs up to its best (equal work; prefix rows do several times the work per epoch). Ties: the same scores ranked pessimistically
(memrec: every item scoring at least the target's ranks above it) and optimistically (only strictly
higher items; BSARec's ``argpartition`` falls in between), so the difference bounds what tie handling
can change.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench_common import RESULTS, ROOT, load_run, markdown_table, paired_ci, relative, write_report
from memrec.config import RunConfig
from memrec.data import load_dataset, split_dataset
from memrec.data.batching import eval_batches
from memrec.memory.neighbours import build_neighbours
from memrec.models import build_model
from memrec.train.evaluate import metrics_from_ranks, padded_scores, rank_evalset, user_ndcg
from memrec.train.trainer import Trainer

FROZEN = "memrec train --model sasrec --dataset beauty --memory off --train.max_minutes=30"
ROWS = {  # name: (what differs from memrec's frozen SASRec, its overrides)
    "baseline": ("memrec SASRec (frozen config): one window per user, every position trained, positions from the start", []),
    "from-end": ("positions counted from the end: the last item always at embedding max_len - 1 (Kang's left-padded SASRec, BSARec)",
                 ["--model_config.positions=from_end"]),
    "prefixes": ("one sample per target, trained at its last position only (BSARec's samples), positions from the start",
                 ["--train.train_windows=prefixes"]),
    "prefixes-from-end": ("both: BSARec's training recipe on memrec's SASRec",
                          ["--train.train_windows=prefixes", "--model_config.positions=from_end"]),
    "prefixes-from-end-no-inner-dropout": ("and no dropout inside the feed-forward (BSARec, RecBole)",
                                           ["--train.train_windows=prefixes", "--model_config.positions=from_end", "--model_config.inner_dropout=0"]),
    "bsarec": ("BSARec: frequency filter (alpha 0.7, c 5) mixed with attention, 1 head, lr 5e-4, on prefixes",
               ["--model=bsarec", "--train.train_windows=prefixes", "--train.lr=0.0005"]),
}


def command(row: str, output: Path) -> list[str]:
    overrides = [o for o in ROWS[row][1] if not o.startswith("--model=")]
    model = next((o.split("=", 1)[1] for o in ROWS[row][1] if o.startswith("--model=")), "sasrec")
    return FROZEN.replace("--model sasrec", f"--model {model}").split() + ["--output", str(output)] + overrides


def summary(row: str, folder: Path, base: dict | None, costs: dict) -> dict:
    """A row's figures from its run's metrics.json (the backbone's own validation: the curve, never the
    memory's); with ``costs`` (:func:`epoch_costs`), the best validation within the work of the baseline's
    epochs up to its best one."""
    saved = json.loads((folder / "metrics.json").read_text())
    curve = [(r["epoch"], r["train_seconds"], r["valid"]) for r in saved["curve"]]
    valid = [(epoch, v) for epoch, _, v in curve if v]
    best_epoch, best = max(valid, key=lambda ev: ev[1]["ndcg@10"])
    elapsed = np.cumsum([seconds for _, seconds, _ in curve])
    within = None
    if base is not None and row in costs:
        budget = base["best_epoch"] * costs["baseline"]["seconds_per_epoch"]
        reached = [v["ndcg@10"] for epoch, v in valid if epoch * costs[row]["seconds_per_epoch"] <= budget]
        within = max(reached) if reached else None
    return {
        "row": row, "change": ROWS[row][0], "run": str(folder), "command": " ".join(command(row, Path("DIR"))),
        "valid": {"ndcg@10": best["ndcg@10"], "hit@10": best["hit@10"]}, "best_epoch": best_epoch, "epochs": len(curve),
        "stopped_because": saved.get("stopped_because"), "train_seconds": float(elapsed[-1]),
        "seconds_per_epoch_in_run": float(elapsed[-1] / len(curve)),
        "epoch_cost": costs.get(row),
        "valid_ndcg@10_within_baseline_work": within,
        "valid_curve": [[epoch, round(v["ndcg@10"], 4)] for epoch, v in valid],
        "test": {"ndcg@10": saved["test"]["ndcg@10"], "hit@10": saved["test"]["hit@10"]},
    }


@torch.inference_mode()
def tie_effect(folder: Path, data_dir: str | None) -> dict:
    """Validation NDCG@10 of one run's weights ranked pessimistically and optimistically, and the share of
    users whose target shares its score with another unmasked item."""
    model, config, _, split = load_run(folder, data_dir)
    pessimistic, optimistic = [], []
    for rows, batch in eval_batches(split.valid, config.data.max_len, config.train.eval_batch_size):
        scores = padded_scores(model, batch).clone()
        scores[:, 0] = float("-inf")
        scores[batch.seen_rows, batch.seen_items] = float("-inf")  # history masked, as memrec and BSARec do
        target = scores.gather(1, batch.targets[:, None])
        pessimistic.append(((scores >= target).sum(1) - 1).numpy())
        optimistic.append((scores > target).sum(1).numpy())
    pessimistic, optimistic = np.concatenate(pessimistic), np.concatenate(optimistic)
    return {"run": str(folder), "valid_ndcg@10_pessimistic": float(user_ndcg(pessimistic).mean()),
            "valid_ndcg@10_optimistic": float(user_ndcg(optimistic).mean()),
            "users_with_a_tied_target": float((pessimistic != optimistic).mean())}


def neighbours_on_top(folder: Path, data_dir: str | None) -> dict:
    """The neighbour memory built on a run's weights (chosen on validation, as ``--memory neighbours``):
    test NDCG@10 / HR@10 with and without it, and the paired 95% interval of the per-user gain."""
    model, config, _, split = load_run(folder, data_dir)
    config.memory.neighbours.enabled = True
    report = build_neighbours(model, split, config.data.max_len, config.memory.neighbours, config.train.eval_batch_size)
    max_len, batch = config.data.max_len, config.train.eval_batch_size
    with_ranks = rank_evalset(model, split.test, max_len, batch)
    chosen = model.neighbours.describe()
    model.neighbours.set(k=0, temperature=1.0, weight=0.0)
    without_ranks = rank_evalset(model, split.test, max_len, batch)
    with_m, without_m = (metrics_from_ranks(r) for r in (with_ranks, without_ranks))
    nm = report.get("neighbour_memory", {})
    return {"run": str(folder), "chosen": chosen, "entries": nm.get("entries"),
            "valid_ndcg@10_without": nm.get("valid_ndcg@10_without"), "valid_ndcg@10_with": nm.get("valid_ndcg@10_with"),
            "valid_ndcg@10_gain_interval": nm.get("valid_ndcg@10_gain_interval"),
            "test_without": {k: without_m[k] for k in ("ndcg@10", "hit@10")}, "test_with": {k: with_m[k] for k in ("ndcg@10", "hit@10")},
            "test_ndcg@10_relative_gain": relative(with_m["ndcg@10"], without_m["ndcg@10"]),
            "test_ndcg@10_gain_ci95": paired_ci(user_ndcg(with_ranks) - user_ndcg(without_ranks))}


def epoch_costs(rows: list[str], data_dir: str | None, batches: int = 30, rounds: int = 3) -> dict[str, dict]:
    """Training seconds per epoch of each row's recipe, timed side by side on one thread (``batches``
    random batches of each row in turn, ``rounds`` times, so machine load hits every row alike):
    the mean step time times the batches of an epoch, and its ratio to the baseline's."""
    trainers = {}
    for row in rows:
        config = RunConfig.from_yaml(ROOT / "src" / "memrec" / "configs" / "sasrec-beauty.yaml")
        overrides = [o[2:] for o in ROWS[row][1]]
        model_name = next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), "sasrec")
        raw = config.to_dict()
        raw["model"], raw["model_config"] = model_name, {} if model_name != "sasrec" else raw["model_config"]
        raw["data"]["data_dir"], raw["data"]["download"] = data_dir, False
        config = RunConfig.from_dict(raw).with_overrides([o for o in overrides if not o.startswith("model=")])
        if not trainers:
            dataset = load_dataset(config.data)
            split = split_dataset(dataset)
        trainers[row] = Trainer(build_model(model_name, dataset.num_items, config.data.max_len, config.model_config), split, config, progress=False)
    seconds = {row: [] for row in rows}
    for r in range(rounds):
        for row, trainer in trainers.items():
            trainer.model.train()
            for i, batch in enumerate(trainer.batches.epoch(1000 + r)):
                if i == batches:
                    break
                tic = time.perf_counter()
                loss = trainer.model.loss(batch, trainer.objective, [])
                trainer.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                trainer.optimizer.step()
                seconds[row].append(time.perf_counter() - tic)
    per_epoch = {row: float(np.mean(s)) * len(trainers[row].batches) for row, s in seconds.items()}
    return {row: {"seconds_per_epoch": per_epoch[row], "batches_per_epoch": len(trainers[row].batches),
                  "relative_to_baseline": per_epoch[row] / per_epoch["baseline"]} for row in rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, required=True, help="folder of the row runs (a subfolder per row)")
    p.add_argument("--train", choices=list(ROWS), help="train this row into RUNS/ROW, then collect")
    p.add_argument("--run", action="append", default=[], help="ROW=PATH: the run folder of ROW elsewhere")
    p.add_argument("--chosen", help="the row whose test figures are reported (chosen on validation: default the best)")
    p.add_argument("--ties", help="measure tie handling on this row's weights")
    p.add_argument("--neighbours", help="build the neighbour memory on this row's weights")
    p.add_argument("--cost", action="store_true", help="time every row's epoch side by side (equal-work comparison)")
    p.add_argument("--data-dir")
    p.add_argument("--output", type=Path, default=RESULTS / "backbone-beauty.json")
    args = p.parse_args()
    if args.train:
        subprocess.run(command(args.train, args.runs / args.train), check=True)
    folders = {row: args.runs / row for row in ROWS if (args.runs / row / "metrics.json").exists()}
    folders.update(dict(item.split("=", 1) for item in args.run))
    folders = {row: Path(f) for row, f in folders.items()}
    if "baseline" not in folders:
        sys.exit("no baseline run: train it (--train baseline) or name it (--run baseline=PATH)")
    before = json.loads(args.output.read_text()) if args.output.exists() else {}  # what is not measured again is kept
    costs = epoch_costs(list(ROWS), args.data_dir) if args.cost else before.get("epoch_costs", {})
    base = summary("baseline", folders["baseline"], None, costs)
    rows = [base] + [summary(row, f, base, costs) for row, f in folders.items() if row != "baseline"]
    chosen = args.chosen or max(rows, key=lambda r: r["valid"]["ndcg@10"])["row"]
    for r in rows:
        if r["row"] != chosen:
            r.pop("test")  # test only for the row chosen on validation
    report = {"dataset": "beauty", "protocol": "leave-one-out, full ranking over 12,101 items, history masked, pessimistic ties; seed 42",
              "chosen_on_validation": chosen, "rows": rows, "epoch_costs": costs}
    report["ties"] = {"row": args.ties, **tie_effect(folders[args.ties], args.data_dir)} if args.ties else before.get("ties")
    report["neighbours"] = ({"row": args.neighbours, **neighbours_on_top(folders[args.neighbours], args.data_dir)} if args.neighbours
                            else before.get("neighbours"))
    report["markdown"] = markdown_table(
        ["row", "change", "valid NDCG@10", "valid HR@10", "best epoch / epochs", "epoch cost (x baseline)", "valid NDCG@10 within the baseline's work"],
        [[r["row"], r["change"], r["valid"]["ndcg@10"], r["valid"]["hit@10"], f"{r['best_epoch']} / {r['epochs']}",
          f"{r['epoch_cost']['relative_to_baseline']:.1f}" if r["epoch_cost"] else "-", r["valid_ndcg@10_within_baseline_work"] or "-"] for r in rows])
    print(report["markdown"])
    print(f"wrote {write_report(report, args.output)}")


if __name__ == "__main__":
    main()
