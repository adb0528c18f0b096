"""Checkpoints: weights, run config, the item vocabulary and the training users' ids, loaded without
unpickling objects. Checkpoints written before user ids were saved load with ``user_ids=None``."""
from __future__ import annotations

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

    def check_dataset(self, ds: SequenceDataset) -> None:
        if ds.fingerprint() != self.fingerprint:
            raise CheckpointError(
                f"data set {ds.name!r} ({ds.num_items} items) is not the one this model was trained on "
                f"({len(self.item_ids) - 1} items): item vocabularies differ"
            )


def save_checkpoint(path: str | Path, model: SequentialRecommender, config: RunConfig, ds: SequenceDataset) -> None:
    """Write a checkpoint atomically (to a temporary file, then renamed)."""
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
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Example:
    >>> load_checkpoint("/nonexistent.pt")
    Traceback (most recent call last):
    ...
    memrec.train.checkpoint.CheckpointError: checkpoint /nonexistent.pt does not exist
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad file
        raise CheckpointError(f"{path} is not a readable memrec checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a memrec checkpoint (expected format {FORMAT!r})")
    config = RunConfig.from_dict(payload["config"])
    model = build_model(config.model, payload["num_items"], payload["max_len"], config.model_config)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return Checkpoint(model, config, payload["item_ids"], payload["fingerprint"], payload.get("user_ids"))
