#!/usr/bin/env python
"""Run RecBole 1.2.1 as a peer for the memrec benchmark (timing or full training).

Run this with the python of the venv made by ``setup_recbole.sh`` -- never with memrec's own
environment.  It only drives RecBole's public API (``Config``, ``create_dataset``,
``data_preparation``, ``get_model``, ``get_trainer``, ``init_seed``, ``Trainer.fit`` /
``Trainer.evaluate``); no RecBole code is copied.

Deviations from a stock RecBole run, all recorded in the output JSON:

* RecBole's ``sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` at import time, so every
  stock run trains in anomaly-detection mode (about 2.5x slower, identical results).  We switch it
  off after the model is built (``anomaly_detection_disabled: true``).
* torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``; RecBole's checkpoints pickle its
  ``Config`` so its own best-model reload fails.  We reload the best checkpoint ourselves with
  ``weights_only=False`` (it is the file this very run just wrote) and then call
  ``Trainer.evaluate(..., load_best_model=False)``.  ``torch.load`` itself is not patched.
* Per-epoch training / validation times are measured by wrapping the trainer instance's
  ``_train_epoch`` / ``_valid_epoch`` with a timer (the wrapped methods are RecBole's, unchanged).

Examples::

    PY=$(bash benchmarks/peer/setup_recbole.sh | tail -1)
    $PY benchmarks/peer/recbole_runner.py --model SASRec --dataset-dir ../shared/data \
        --dataset ml-100k --mode timing --epochs 2 --output /tmp/recbole_sasrec_timing.json
    $PY benchmarks/peer/recbole_runner.py --model SASRec --s3rec-file ../shared/data/s3rec/Beauty.txt \
        --mode full --max-minutes 60 --output /tmp/recbole_sasrec_beauty.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

# RecBole 1.2.1 triggers known FutureWarnings (pandas chained fillna, torch.cuda.amp) on every run.
warnings.filterwarnings("ignore", category=FutureWarning)

PEER = "recbole-1.2.1"
CACHE_ROOT = Path(os.environ.get("MEMREC_CACHE", Path.home() / ".cache" / "memrec"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, choices=["SASRec", "GRU4Rec"])
    p.add_argument("--dataset-dir", help="folder holding NAME/NAME.inter RecBole atomic files")
    p.add_argument("--dataset", help="dataset NAME (default: stem of --s3rec-file)")
    p.add_argument(
        "--s3rec-file",
        help="S3-Rec style file (one line per user: 'user item item ...' in time order); converted "
        "to NAME/NAME.inter (position as timestamp) under --dataset-dir or the memrec cache",
    )
    p.add_argument("--mode", choices=["timing", "full"], default="timing")
    p.add_argument("--epochs", type=int, default=2, help="timing mode: epochs to train and time")
    p.add_argument("--eval-repeats", type=int, default=1, help="timing mode: time this many full evaluations and report the median")
    p.add_argument("--max-epochs", type=int, default=300, help="full mode: epoch cap (RecBole default 300)")
    p.add_argument("--max-minutes", type=float, default=None, help="full mode: wall-clock cap for training")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--output", required=True, help="result JSON file")
    p.add_argument("--work-dir", help="where RecBole writes logs/checkpoints (default: a temp dir under the memrec cache)")
    p.add_argument("--keep-work-dir", action="store_true")
    p.add_argument("--show-progress", action="store_true")
    args = p.parse_args(argv)
    if args.s3rec_file is None and (args.dataset_dir is None or args.dataset is None):
        p.error("give --dataset-dir and --dataset, or --s3rec-file")
    if args.mode == "timing" and args.epochs < 1:
        p.error("--epochs must be >= 1")
    return args


# Threads must be fixed before torch is imported.
_ARGS = parse_args() if __name__ == "__main__" else None
if _ARGS is not None:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = str(_ARGS.threads)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

import torch  # noqa: E402


def convert_s3rec(src: Path, out_dir: Path, name: str) -> Path:
    """Write ``out_dir/name/name.inter`` (user_id:token, item_id:token, timestamp:float)."""
    target = out_dir / name / f"{name}.inter"
    stamp = target.with_suffix(".source")
    src_id = f"{src.resolve()}\t{src.stat().st_size}\t{int(src.stat().st_mtime)}"
    if target.exists() and stamp.exists() and stamp.read_text() == src_id:
        return out_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".inter.tmp")
    n = 0
    with open(src) as fin, open(tmp, "w") as fout:
        fout.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in fin:
            parts = line.split()
            if not parts:
                continue
            user, items = parts[0], parts[1:]
            for pos, item in enumerate(items):
                fout.write(f"{user}\t{item}\t{pos}\n")
                n += 1
    os.replace(tmp, target)
    stamp.write_text(src_id)
    print(f"[recbole_runner] converted {src} -> {target} ({n} interactions)", file=sys.stderr)
    return out_dir


def inter_columns(dataset_dir: Path, name: str) -> list[str]:
    with open(dataset_dir / name / f"{name}.inter") as f:
        header = f.readline().rstrip("\n").split("\t")
    return [h.split(":")[0] for h in header]


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return obj.item()
        except Exception:
            pass
    return str(obj)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class _StopTraining(Exception):
    pass


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed
    import recbole

    # ---- data location -------------------------------------------------------------------
    if args.s3rec_file:
        src = Path(args.s3rec_file)
        name = args.dataset or src.stem
        base = Path(args.dataset_dir) if args.dataset_dir else CACHE_ROOT / "recbole-data"
        dataset_dir = convert_s3rec(src, base, name)
    else:
        name = args.dataset
        dataset_dir = Path(args.dataset_dir)
    dataset_dir = dataset_dir.resolve()
    if not (dataset_dir / name / f"{name}.inter").exists():
        raise SystemExit(f"missing {dataset_dir / name / (name + '.inter')}")
    output = Path(args.output).resolve()

    # RecBole writes ./log, ./log_tensorboard and checkpoints relative to the cwd: keep them out
    # of the repository.
    if args.work_dir:
        work_dir = Path(args.work_dir).resolve()
        work_dir.mkdir(parents=True, exist_ok=True)
    else:
        (CACHE_ROOT / "recbole-runs").mkdir(parents=True, exist_ok=True)
        work_dir = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE_ROOT / "recbole-runs"))
    old_cwd = os.getcwd()
    os.chdir(work_dir)

    # ---- configuration ---------------------------------------------------------------------
    cols = inter_columns(dataset_dir, name)
    load_inter = [c for c in ("user_id", "item_id", "rating", "timestamp") if c in cols]
    overrides = {
        "data_path": str(dataset_dir),
        "checkpoint_dir": str(work_dir / "saved"),
        "use_gpu": False,
        "gpu_id": "",
        "seed": args.seed,
        "reproducibility": True,
        "show_progress": args.show_progress,
        "state": "INFO",
        # data: no filtering of users/items, load the standard inter columns
        "load_col": {"inter": load_inter},
        "user_inter_num_interval": None,
        "item_inter_num_interval": None,
        "val_interval": None,
        "rm_dup_inter": None,
        "MAX_ITEM_LIST_LENGTH": 50,
        # training
        "epochs": args.epochs if args.mode == "timing" else args.max_epochs,
        "train_batch_size": 256,
        "learner": "adam",
        "learning_rate": 1e-3,
        "loss_type": "CE",
        "train_neg_sample_args": None,  # required by RecBole for CE loss
        "stopping_step": 10,
        "eval_step": 1,
        # evaluation: leave-one-out by time, full ranking
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "group_by": "user",
            "order": "TO",
            "mode": "full",
        },
        "repeatable": True,
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": [10, 20],
        "valid_metric": "NDCG@10",
        "eval_batch_size": 4096,
    }
    # RecBole's Config also parses sys.argv ("--key=value"); hide our own arguments from it.
    saved_argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        config = Config(model=args.model, dataset=name, config_dict=overrides)
    finally:
        sys.argv = saved_argv
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    t0 = time.perf_counter()
    dataset = create_dataset(config)
    n_inter = int(dataset.inter_num)  # before data_preparation (which splits it in place)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_seconds = time.perf_counter() - t0

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    anomaly_before = torch.is_anomaly_enabled()
    # RecBole bug: importing its sequential models enables anomaly detection (sine.py).
    torch.autograd.set_detect_anomaly(False)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    torch.set_num_threads(args.threads)

    # ---- timers around RecBole's own epoch methods ----------------------------------------------
    train_times: list[float] = []
    valid_times: list[float] = []
    orig_train_epoch, orig_valid_epoch = trainer._train_epoch, trainer._valid_epoch

    def timed_train_epoch(*a, **k):
        t = time.perf_counter()
        out = orig_train_epoch(*a, **k)
        train_times.append(time.perf_counter() - t)
        return out

    def timed_valid_epoch(*a, **k):
        t = time.perf_counter()
        out = orig_valid_epoch(*a, **k)
        valid_times.append(time.perf_counter() - t)
        return out

    trainer._train_epoch = timed_train_epoch
    trainer._valid_epoch = timed_valid_epoch

    result = {
        "peer": PEER,
        "model": args.model,
        "dataset": name,
        "mode": args.mode,
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "threads": args.threads,
        "torch_num_threads": torch.get_num_threads(),
        "seed": args.seed,
        "anomaly_detection_enabled_by_recbole": anomaly_before,
        "anomaly_detection_disabled": not torch.is_anomaly_enabled(),
        "n_users": int(dataset.user_num - 1),
        "n_items": int(dataset.item_num - 1),
        "n_interactions": n_inter,
        "n_train_samples": int(len(train_data.dataset)),
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "data_seconds": data_seconds,
    }

    if args.mode == "timing":
        # Exactly N training epochs, no validation in between, no checkpoint.
        trainer.fit(train_data, valid_data=None, verbose=True, saved=False,
                    show_progress=args.show_progress)
        eval_times = []
        for _ in range(args.eval_repeats):
            t = time.perf_counter()
            valid = trainer.evaluate(valid_data, load_best_model=False, show_progress=args.show_progress)
            eval_times.append(time.perf_counter() - t)
        eval_seconds = sorted(eval_times)[len(eval_times) // 2]
        result.update(epochs=len(train_times), eval_seconds=eval_seconds, eval_seconds_list=eval_times, valid=dict(valid))
        result["train_loss"] = [float(trainer.train_loss_dict[e]) for e in sorted(trainer.train_loss_dict)]
    else:
        deadline = None if args.max_minutes is None else time.perf_counter() + 60 * args.max_minutes
        best = {"epoch": None}
        stopped_by = {"reason": "early_stopping_or_max_epochs"}

        def on_epoch_end(epoch_idx, valid_score):
            if trainer.cur_step == 0:  # RecBole just saved a new best model
                best["epoch"] = epoch_idx
            if deadline is not None and time.perf_counter() > deadline:
                stopped_by["reason"] = "max_minutes"
                raise _StopTraining

        t = time.perf_counter()
        try:
            trainer.fit(train_data, valid_data, verbose=True, saved=True,
                        show_progress=args.show_progress, callback_fn=on_epoch_end)
        except _StopTraining:
            pass
        total_train_seconds = time.perf_counter() - t
        if stopped_by["reason"] != "max_minutes":
            # RecBole stops once the valid metric has not improved for more than stopping_step evals.
            stopped_by["reason"] = (
                "early_stopping" if trainer.cur_step > trainer.stopping_step else "max_epochs"
            )

        # Reload RecBole's own best checkpoint (written by this run) with weights_only=False:
        # it pickles RecBole's Config, which torch>=2.6's weights_only default refuses.
        ckpt = torch.load(trainer.saved_model_file, map_location=config["device"], weights_only=False)
        model.load_state_dict(ckpt["state_dict"])
        model.load_other_parameter(ckpt.get("other_parameter"))
        valid = trainer.evaluate(valid_data, load_best_model=False, show_progress=args.show_progress)
        t = time.perf_counter()
        test = trainer.evaluate(test_data, load_best_model=False, show_progress=args.show_progress)
        eval_seconds = time.perf_counter() - t
        result.update(
            epochs=len(train_times),
            best_epoch=best["epoch"] if best["epoch"] is not None else int(ckpt["epoch"]),
            stopped_by=stopped_by["reason"],
            total_train_seconds=total_train_seconds,
            valid_seconds_per_epoch=valid_times,
            eval_seconds=eval_seconds,
            valid=dict(valid),
            test=dict(test),
        )
        result["train_loss"] = [float(trainer.train_loss_dict[e]) for e in sorted(trainer.train_loss_dict)]

    result["train_seconds_per_epoch"] = {
        "list": train_times,
        "mean": sum(train_times) / len(train_times) if train_times else None,
    }
    result["total_seconds"] = time.perf_counter() - t_start
    result["peak_rss_mib"] = peak_rss_mib()
    result["settings"] = jsonable(
        {k: v for k, v in config.final_config_dict.items() if k not in ("data_path", "checkpoint_dir")}
    )
    result["settings_overrides"] = jsonable(
        {k: v for k, v in overrides.items() if k not in ("data_path", "checkpoint_dir")}
    )
    result["data_path"] = str(dataset_dir / name)
    result["notes"] = [
        "anomaly detection (enabled by RecBole's sine.py import) turned off after model build",
        "best checkpoint reloaded by the runner with torch.load(weights_only=False)",
        "train_seconds_per_epoch times RecBole's Trainer._train_epoch only (no validation)",
    ]
    result = jsonable(result)

    os.chdir(old_cwd)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep_work_dir and not args.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    summary = {k: result[k] for k in ("model", "dataset", "mode", "epochs", "eval_seconds", "peak_rss_mib")}
    summary["train_seconds_per_epoch_mean"] = result["train_seconds_per_epoch"]["mean"]
    if "test" in result:
        summary["test"] = result["test"]
    print(json.dumps(summary))
    return result


if __name__ == "__main__":
    main(_ARGS)
