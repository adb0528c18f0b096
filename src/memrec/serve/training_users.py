"""The service knows the users it was trained on: their histories enter the store as event logs.

``memrec serve CHECKPOINT --import-training-users`` reads the checkpoint's data set (never
downloaded here; it must match the checkpoint's fingerprint) and records each user's whole sequence,
in time order, as that user's event log, folding it into the user's memory for models that keep one
(the same event path as ``POST /events``). A user of the training data then gets the same answer
from ``GET /recommend`` as from ``memrec recommend --user``. Each imported event carries the
idempotency key ``train-<position>``, so an import run twice records nothing new; a user whose log
is not empty is left alone (their log is theirs: the import never inserts events before them).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from memrec.data import SequenceDataset, load_dataset
from memrec.errors import MemrecError
from memrec.store.events import Event, EventLog
from memrec.train.checkpoint import CheckpointError, load_checkpoint


def training_dataset(checkpoint: str | Path) -> SequenceDataset:
    """The data set a checkpoint was trained on, checked against its fingerprint (CheckpointError if
    it cannot be read or differs)."""
    ckpt = load_checkpoint(checkpoint)
    try:
        ds = load_dataset(replace(ckpt.config.data, download=False))
    except MemrecError as e:
        raise CheckpointError(f"importing the training users needs the checkpoint's data set {ckpt.config.data.dataset!r}, "
                              f"which could not be read ({e}); point MEMREC_DATA_DIR at the data") from None
    ckpt.check_dataset(ds)
    return ds


def training_events(ds: SequenceDataset, user: int) -> list[Event]:
    """User ``user``'s whole sequence as events: raw item ids, the data set's timestamps (else the
    position), keys ``train-<position>``.

    Example:
        >>> ds = SequenceDataset.from_sequences({"u1": ["a", "b"]})
        >>> training_events(ds, 0)
        [Event(item='a', timestamp=0.0, key='train-0'), Event(item='b', timestamp=1.0, key='train-1')]
    """
    sequence = ds.sequences[user]
    times = ds.timestamps[user] if ds.timestamps is not None else np.arange(len(sequence))
    return [Event(ds.item_ids[i], float(t), key=f"train-{n}") for n, (i, t) in enumerate(zip(sequence.tolist(), times.tolist()))]


def import_training_users(store: EventLog, served, ds: SequenceDataset, log=print) -> dict:
    """Record every user of ``ds`` whose log is empty, through ``served``'s event path; returns counts."""
    imported = events = kept = 0
    for user, raw in enumerate(ds.user_ids):
        if store.history(raw):
            kept += 1
            continue
        batch = training_events(ds, user)
        store.record(raw, batch, lambda memory, new: served.observe(memory, new)[0] if served.has_memory else None)
        imported, events = imported + 1, events + len(batch)
    log(f"memrec serve: imported {imported} training users ({events} events); {kept} already had a log and were left as they are")
    return {"imported_users": imported, "imported_events": events, "users_with_a_log": kept}
