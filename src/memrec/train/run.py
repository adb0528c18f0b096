"""One training run from a :class:`RunConfig` to a folder of results.

The folder receives: ``config.yaml`` (the full config), ``metrics.json``, ``checkpoint.pt`` (best
validation weights), ``curve.png`` (training loss and validation NDCG@10 per epoch, best epoch marked),
``test_ranks.npz`` (each test user's target rank, for per-user tests in ``memrec compare``),
``results.txt`` (the printed table) and ``tensorboard/`` logs. Under torchrun every rank trains and
evaluates its share (:mod:`memrec.train.distributed`) and rank 0 alone writes the folder and logs.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from memrec import progress as bars
from memrec.config import RunConfig
from memrec.data import load_dataset, split_dataset
from memrec.errors import MemrecError
from memrec.memory.neighbours import build_neighbours
from memrec.models import build_model
from memrec.runtime import keep_freed_memory
from memrec.train.checkpoint import save_checkpoint
from memrec.train.distributed import Group
from memrec.train.evaluate import metrics_from_ranks
from memrec.train.report import format_table, metrics_rows, plot_training
from memrec.train.trainer import Trainer, seed_everything


RUN_FILES = ("config.yaml", "checkpoint.pt", "metrics.json")  # what makes a folder a run's


class RunFolderError(MemrecError, FileExistsError):
    """The output folder already holds a run, and overwriting was not asked for."""


def check_output(output_dir: str | Path, overwrite: bool = False) -> Path:
    """The run folder, refused if it holds another run's files (unless ``overwrite``) or is a file.

    Example:
        >>> import tempfile
        >>> check_output(tempfile.mkdtemp()).is_dir()
        True
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--output {out} is a file, expected a folder for the run")
    held = [name for name in RUN_FILES if (out / name).exists()]
    if held and not overwrite:
        raise RunFolderError(f"{out} already holds a run ({', '.join(held)}); choose another --output or pass --overwrite")
    return out


def train_and_evaluate(config: RunConfig, output_dir: str | Path, log=print, progress: bool | None = None, overwrite: bool = False) -> dict:
    """Train, keep the best validation checkpoint, evaluate it on validation and test, write results.
    Config, data and model are checked before anything is written: a run that cannot start leaves
    the folder as it was, and a folder holding another run is refused unless ``overwrite``.

    Example:
        >>> import tempfile
        >>> cfg = RunConfig.from_dict({"data": {"dataset": "ml-100k", "max_len": 10}, "train": {"epochs": 1}})
        >>> metrics = train_and_evaluate(cfg, tempfile.mkdtemp(), log=lambda *_: None, progress=False)
        >>> metrics["epochs"], sorted(metrics["test"])[:2]
        (1, ['hit@10', 'hit@20'])
    """
    group = Group.from_env()  # torchrun's ranks, else one process
    if not group.is_main:
        log, progress = (lambda *_: None), False  # rank 0 speaks for the run
    with bars.switched(progress):  # every bar of the run: training, evaluation, memory build
        group.start()
        metrics = _train_and_evaluate(config, output_dir, log, overwrite, group)
        group.stop()  # not after an error: that rank exits at once, and torchrun stops the others
        return metrics


def _train_and_evaluate(config: RunConfig, output_dir: str | Path, log, overwrite: bool, group: Group) -> dict:
    out = check_output(output_dir, overwrite) if group.is_main else Path(output_dir)
    torch.set_num_threads(config.train.threads)
    keep_freed_memory()
    seed_everything(config.train.seed)
    ds = load_dataset(config.data)
    split = split_dataset(ds, config.data.split, config.data.valid_fraction, config.data.test_fraction)
    log(ds.report())
    log(f"protocol: {split.protocol}; {len(split.valid)} validation and {len(split.test)} test users; full ranking over {ds.num_items} items")
    model = build_model(config.model, ds.num_items, config.data.max_len, config.model_config)
    model.prepare(ds, split)
    writer = None
    if group.is_main:
        out.mkdir(parents=True, exist_ok=True)  # everything checked: from here on the folder is this run's
        shutil.rmtree(out / "tensorboard", ignore_errors=True)  # a replaced run's curves would mix with this one's
        config.save(out / "config.yaml")
        writer = _tensorboard(out / "tensorboard")
    trainer = Trainer(model, split, config, writer=writer, group=group)
    result = trainer.fit(log=log)
    if writer is not None:
        writer.close()

    t = config.train
    chosen_after_training = model.after_training(split, config.data.max_len, t.eval_batch_size, log)
    # every rank builds the same neighbour memory from the same weights (not sharded), for the sharded evaluation below
    chosen_after_training |= build_neighbours(model, split, config.data.max_len, config.memory.neighbours, t.eval_batch_size, log)
    valid = group.evaluate(model, split.valid, config.data.max_len, t.eval_batch_size, t.metric_ks)
    tic = time.perf_counter()
    test_ranks = group.rank_evalset(model, split.test, config.data.max_len, t.eval_batch_size)
    test = metrics_from_ranks(test_ranks, t.metric_ks)
    eval_seconds = time.perf_counter() - tic

    metrics = {
        "model": config.model,
        "dataset": ds.name,
        "protocol": f"{split.protocol}; full ranking, history masked, pessimistic ties",
        "seed": t.seed,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_because": result.stopped_because,
        "train_seconds_per_epoch": result.train_seconds_per_epoch,
        "train_seconds": sum(r.train_seconds for r in result.history),
        "eval_seconds": eval_seconds,
        "dataset_stats": ds.stats(),
        "valid": valid,
        "test": test,
        **chosen_after_training,
        "curve": [{"epoch": r.epoch, "loss": r.loss, "train_seconds": r.train_seconds, "valid": r.valid} for r in result.history],
        "threads": t.threads,
        "processes": group.world,
        "torch": torch.__version__,
    }
    if not group.is_main:
        return metrics
    save_checkpoint(out / "checkpoint.pt", model, config, ds)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    np.savez_compressed(out / "test_ranks.npz", users=split.test.users, targets=split.test.targets, ranks=test_ranks.astype(np.int32))
    plot_training(metrics, out / "curve.png")
    table = format_table(metrics_rows(metrics))
    (out / "results.txt").write_text(table + "\n")
    log(f"best epoch {result.best_epoch} of {len(result.history)} ({result.stopped_because}); {result.train_seconds_per_epoch:.2f}s per epoch")
    log(table)
    return metrics


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but a trimmed install may lack it
        return None
    return SummaryWriter(str(path))
