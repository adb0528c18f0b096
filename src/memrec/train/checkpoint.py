"""Checkpoints: weights, run config, the item vocabulary, the training users' ids and where the data
was read (``data_source``: :attr:`SequenceDataset.origin`), loaded without unpickling objects.
Checkpoints written before user ids or the data source were saved load with ``None`` for them."""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from memrec.config import RunConfig
from memrec.data.dataset import SequenceDataset
from memrec.errors import MemrecError
from memrec.models import SequentialRecommender, build_model

FORMAT = "memrec-checkpoint/1"


class CheckpointError(MemrecError, ValueError):
    """A checkpoint is missing, not a memrec checkpoint, or does not fit the data."""


@dataclass
class Checkpoint:
    model: SequentialRecommender
    config: RunConfig
    item_ids: list[str]
    fingerprint: str
    user_ids: list[str] | None = None  # raw ids of the training users, by user index
    data_source: dict | None = None  # where the training data was read: path, name, format, item_file

    def check_dataset(self, ds: SequenceDataset) -> None:
        if ds.fingerprint() != self.fingerprint:
            raise CheckpointError(
                f"data set {ds.name!r} ({ds.num_items} items) is not the one this model was trained on "
                f"({len(self.item_ids) - 1} items): item vocabularies differ"
            )


def save_checkpoint(path: str | Path, model: SequentialRecommender, config: RunConfig, ds: SequenceDataset,
                    extra: dict | None = None) -> None:
    """Write a checkpoint atomically (to a temporary file, then renamed); ``extra``: more top-level
    entries (plain data), e.g. a seed facade's own settings."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "config": config.to_dict(),
        "num_items": model.num_items,
        "max_len": model.max_len,
        "state_dict": model.state_dict(),
        "item_ids": list(ds.item_ids),
        "fingerprint": ds.fingerprint(),
        "user_ids": list(ds.user_ids),
        "data_source": dict(getattr(ds, "origin", None) or {}) or None,  # None: not read by load_dataset
        **(extra or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint (a file, or a run folder holding ``checkpoint.pt``), checking everything in it
    before the model is used: one :class:`CheckpointError` line says what does not fit.

    Example:
    >>> load_checkpoint("/nonexistent.pt")
    Traceback (most recent call last):
    ...
    memrec.train.checkpoint.CheckpointError: checkpoint /nonexistent.pt does not exist
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "checkpoint.pt").is_file():
            raise CheckpointError(f"{path} is a folder without checkpoint.pt: give a run folder of `memrec train` or a checkpoint file")
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad file
        raise CheckpointError(f"{path} is not a memrec checkpoint ({_load_failure(exc)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = f"format {payload.get('format')!r}" if isinstance(payload, dict) and "format" in payload else "no format tag"
        raise CheckpointError(f"{path} is not a memrec checkpoint ({found}, expected {FORMAT!r})")
    try:
        return _checked(payload)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None


# what a checkpoint holds: key -> (type, what it must be); user_ids may be missing (older checkpoints) or None
_FIELDS = {"config": (dict, "a mapping"), "num_items": (int, "a positive integer"), "max_len": (int, "a positive integer"),
          "state_dict": (dict, "a mapping of tensors"), "item_ids": (list, "a list of item ids"), "fingerprint": (str, "a string")}


def _checked(payload: dict) -> Checkpoint:
    """The checkpoint a loaded payload describes, once every field fits the others."""
    for key, (kind, what) in _FIELDS.items():
        value = payload.get(key)
        if key not in payload or not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 1):
            raise CheckpointError(f"{key} is {_shown(payload, key)}, expected {what}")
    num_items, items, users = payload["num_items"], payload["item_ids"], payload.get("user_ids")
    if len(items) != num_items + 1:
        raise CheckpointError(f"item_ids has {len(items)} entries, expected num_items + 1 = {num_items + 1}")
    if users is not None and not isinstance(users, list):
        raise CheckpointError(f"user_ids is {_shown(payload, 'user_ids')}, expected a list of user ids")
    for key, ids in (("item_ids", items), ("user_ids", users or [])):
        if not all(isinstance(i, str) for i in ids) or len(set(ids)) != len(ids):
            raise CheckpointError(f"{key} must be distinct strings")
    source = payload.get("data_source")
    if source is not None and not (isinstance(source, dict) and isinstance(source.get("path"), str)
                                   and all(isinstance(v, (str, type(None))) for v in source.values())):
        raise CheckpointError(f"data_source is {_shown(payload, 'data_source')}, expected a mapping with the data's path")
    try:
        config = RunConfig.from_dict(payload["config"])
        model = build_model(config.model, num_items, payload["max_len"], config.model_config)
        model.neighbours.search_config = config.memory.neighbours.search()  # the index the run chose (memory.neighbours.index)
    except (ValueError, TypeError) as exc:  # ConfigError included
        raise CheckpointError(f"its config does not build a model ({exc})") from None
    _load_weights(model, payload["state_dict"], config.model)
    model.eval()
    return Checkpoint(model, config, items, payload["fingerprint"], users, source)


def _load_weights(model: SequentialRecommender, state: dict, name: str) -> None:
    """Load ``state`` into ``model`` after comparing keys and weight shapes. Parameters have the shapes
    the config gives; buffers may be sized by the data (memory banks) or missing from older
    checkpoints, which the modules' own load hooks handle; a module with ``upgrade_state(state, prefix)``
    first rewrites its part of an older format."""
    for prefix, module in model.named_modules():
        if hasattr(module, "upgrade_state"):
            module.upgrade_state(state, f"{prefix}." if prefix else "")
    expected = model.state_dict()
    params = {k: tuple(p.shape) for k, p in model.named_parameters(remove_duplicate=False)}
    extra = sorted(set(state) - set(expected))
    missing = sorted(k for k in params if k not in state)
    if extra or missing:
        parts = [f"has {len(extra)} keys the {name} model does not have ({_few(extra)})"] if extra else []
        parts += [f"lacks {len(missing)} it needs ({_few(missing)})"] if missing else []
        raise CheckpointError(f"state_dict {' and '.join(parts)}")
    shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for k, v in state.items()}
    wrong = [f"{k} {shapes[k]} vs {shape}" for k, shape in params.items() if shapes[k] != shape]
    if wrong:
        raise CheckpointError(f"state_dict has {len(wrong)} weights whose shapes differ from the {name} model's "
                              f"(stored vs expected: {_few(wrong, sep='; ')})")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"state_dict does not fit the {name} model ({' '.join(str(exc).split())})") from None


def _few(names: list[str], n: int = 3, sep: str = ", ") -> str:
    return sep.join(names[:n]) + (f"{sep}… {len(names) - n} more" if len(names) > n else "")


def _shown(payload: dict, key: str) -> str:
    value = payload.get(key)
    if key not in payload:
        return "missing"
    return repr(value) if isinstance(value, (int, float, str, type(None))) and len(repr(value)) < 40 else f"a {type(value).__name__}"


def _load_failure(exc: Exception) -> str:
    """torch's reason, on one line, without its advice to unpickle arbitrary objects (weights_only=False)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = re.split(r"Please use|Check the documentation", text.split("WeightsUnpickler error:", 1)[1])[0]
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text[:200]}" if text else f"{type(exc).__name__}: empty or truncated file"
