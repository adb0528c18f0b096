"""What the accuracy benchmarks share: the frozen configs, training through memrec's own
:class:`~memrec.train.Trainer` on a :class:`~memrec.data.split.Split` the benchmark builds, a
cache of trained weights, and Markdown tables.

Example:
    >>> print(markdown_table(["a", "b"], [[1, 0.5]]))
    | a | b |
    |---|---|
    | 1 | 0.5000 |
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from memrec.config import RunConfig
from memrec.data import load_dataset, split_dataset
from memrec.data.split import EvalSet, Split
from memrec.models import build_model
from memrec.train.checkpoint import load_checkpoint
from memrec.train.evaluate import evaluate
from memrec.train.trainer import Trainer, seed_everything

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def paired_ci(diff: np.ndarray, resamples: int = 2000) -> list[float]:
    """95% paired bootstrap interval of the mean of per-user differences (seed 0).

    Example:
        >>> paired_ci(np.ones(5))
        [1.0, 1.0]
    """
    if not len(diff):
        return [float("nan"), float("nan")]
    rows = np.random.default_rng(0).integers(0, len(diff), size=(resamples, len(diff)))
    return [float(v) for v in np.quantile(diff[rows].mean(1), [0.025, 0.975])]


def frozen_config(model: str, dataset: str, max_minutes: float | None = None, epochs: int | None = None, **model_config) -> RunConfig:
    """The frozen ML-100K config of ``model`` (``configs/MODEL-ml-100k.yaml``) on ``dataset``, with a
    time / epoch cap and model overrides: one recipe per model on every data set, so that the models
    compared share it (memory-moe has no frozen config elsewhere)."""
    raw = RunConfig.from_yaml(ROOT / "configs" / f"{model}-ml-100k.yaml").to_dict()
    raw["data"]["dataset"] = dataset
    raw["train"]["max_minutes"] = max_minutes
    if epochs is not None:
        raw["train"]["epochs"] = epochs
    raw["model_config"].update(model_config)
    return RunConfig.from_dict(raw)


def fit(config: RunConfig, num_items: int, split: Split, cache: Path | None = None, log=print):
    """Train a fresh model on ``split.train`` (early stopping on ``split.valid``) or load it from ``cache``.

    Returns the model (best validation weights, eval mode) and a summary of the run."""
    seed_everything(config.train.seed)
    torch.set_num_threads(config.train.threads)
    model = build_model(config.model, num_items, config.data.max_len, config.model_config)
    if cache is not None and cache.is_file():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state_dict"])
        log(f"loaded {cache}")
        return model.eval(), {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in saved["info"].items()}
    return continue_training(model, config, split, cache, log)


def continue_training(model, config: RunConfig, split: Split, cache: Path | None = None, log=print):
    """Plain training (fresh AdamW, the trainer's early stopping) of an existing ``model`` on ``split``."""
    seed_everything(config.train.seed)
    tic = time.perf_counter()
    result = Trainer(model, split, config, progress=False).fit(log=log)
    info = {"epochs": len(result.history), "best_epoch": result.best_epoch, "stopped_because": result.stopped_because,
            "train_seconds": round(time.perf_counter() - tic, 1), "seconds_per_epoch": round(result.train_seconds_per_epoch, 2),
            "best_valid_ndcg@10": result.best_valid.get("ndcg@10", 0.0)}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "info": info}, cache)
    return model.eval(), info


def metrics(model, evalset: EvalSet, max_len: int) -> dict[str, float]:
    """HR@10 and NDCG@10 under memrec's full-ranking protocol (history masked, pessimistic ties)."""
    if not len(evalset):
        return {"hit@10": float("nan"), "ndcg@10": float("nan")}
    m = evaluate(model, evalset, max_len, ks=(10,))
    return {"hit@10": m["hit@10"], "ndcg@10": m["ndcg@10"]}


def subset_split(split: Split, users: np.ndarray, protocol: str) -> Split:
    """The split with only ``users`` trained and validated (everyone else's training sequence emptied)."""
    keep = np.zeros(len(split.train), dtype=bool)
    keep[users] = True
    train = [seq if keep[u] else seq[:0] for u, seq in enumerate(split.train)]
    valid = split.valid.subset(np.flatnonzero(keep[split.valid.users]))
    test = split.test.subset(np.flatnonzero(keep[split.test.users]))
    return Split(train, valid, test, protocol)


def require_model(checkpoint: str | Path, config: RunConfig, *names: str, needs: str) -> None:
    """Stop with one line (exit 1) unless the checkpoint's model is one of ``names``: the ones that have
    what the benchmark ``needs``. Another model would fail later with an AttributeError, or measure nothing.

    Example:
        >>> require_model("r/checkpoint.pt", RunConfig.from_dict({"model": "gru4rec"}), "ramrec", needs="RAMRec's memories")
        Traceback (most recent call last):
        ...
        SystemExit: ...: error: r/checkpoint.pt is a gru4rec checkpoint; this benchmark needs RAMRec's memories: give a ramrec checkpoint
    """
    if config.model not in names:
        raise SystemExit(f"{Path(sys.argv[0]).name}: error: {checkpoint} is a {config.model} checkpoint; this benchmark needs {needs}: "
                         f"give a {' or '.join(names)} checkpoint")


def load_run(checkpoint: str | Path, data_dir: str | None = None, models: tuple[str, ...] = (), needs: str = ""):
    """Model (eval mode), config, data set and split of a ``memrec train`` checkpoint; with ``models``,
    refused first (:func:`require_model`) unless it is one of them."""
    ckpt = load_checkpoint(checkpoint)
    if models:
        require_model(checkpoint, ckpt.config, *models, needs=needs)
    data = ckpt.config.data
    if data_dir is not None:
        data.data_dir = data_dir
    data.download = False
    ds = load_dataset(data)
    ckpt.check_dataset(ds)
    split = split_dataset(ds, data.split, data.valid_fraction, data.test_fraction)
    ckpt.model.prepare(ds, split)
    return ckpt.model.eval(), ckpt.config, ds, split


def write_report(report: dict, path: str | Path) -> Path:
    """Write a benchmark's results as indented JSON (creating the folder) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def relative(value: float, reference: float) -> str:
    """Relative difference as a signed percentage."""
    if not np.isfinite(value) or not np.isfinite(reference) or reference == 0:
        return "n/a"
    return f"{100 * (value - reference) / reference:+.1f}%"
