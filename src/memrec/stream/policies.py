"""What the system does with the stream's events once they are scored: the policies compared.

Each policy owns a :class:`~memrec.serve.model.ServedModel` (loaded from the checkpoint trained on
the events before T) and an SQLite state store, the service's own (:class:`SQLiteStateStore`), that
starts with every user's events before T (keys ``train-*``, as ``memrec serve`` imports them):

- ``frozen``: the trained model as it is (a neighbour memory it was trained with stays as built);
  it reads each user's growing log and learns nothing else;
- ``neighbours``: the neighbour memory grows online: every ``sync_every`` events the policy does what
  the service does before a ranking (:meth:`ServedModel.follow`), so each stream position becomes an
  entry other users find. Needs a model trained with ``--memory neighbours``;
- ``retrain``: no memory (the neighbour memory switched off); every ``every_days`` of data time the
  weights are trained further (warm start, ``epochs`` epochs of the usual trainer on every event so
  far, items the checkpoint lacks still unknown), the reference for a team without memory.

A user first seen after T is a user with an empty log: every policy ranks them from their own events
(the neighbours policy gives them an owner index, so they never find their own entries).
"""
from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import numpy as np

from memrec.data.dataset import ItemInfo, SequenceDataset
from memrec.data.split import Split, _eval_set
from memrec.errors import MemrecError
from memrec.memory.growing import GrowingNeighbours
from memrec.serve.model import ServedModel, training_users
from memrec.store.events import Event
from memrec.store.sqlite_events import SQLiteStateStore
from memrec.train.checkpoint import load_checkpoint

POLICIES = ("frozen", "neighbours", "retrain")
DAY = 86400.0


def _no_memory(_memory, _new):
    return None  # these policies keep no per-user memory: the log alone


def open_store(before: dict[str, list[Event]], version: str) -> SQLiteStateStore:
    """A fresh SQLite state store (on tmpfs where there is one) holding each user's events before T."""
    root = "/dev/shm" if Path("/dev/shm").is_dir() else None
    store = SQLiteStateStore(Path(tempfile.mkdtemp(prefix="memrec-stream-", dir=root)) / "state.db", version)
    for user, events in before.items():
        store.record(user, [Event(e.item, e.timestamp, key=f"train-{n}") for n, e in enumerate(events)], _no_memory)
    return store


class Frozen:
    """The trained model reading each user's growing log; nothing else changes."""

    name = "frozen"

    def __init__(self, checkpoint: str | Path, before: dict[str, list[Event]], stream):
        self.served = ServedModel.load(checkpoint)
        if self.served.has_memory:
            raise MemrecError(f"model {self.served.name!r} keeps a per-user memory: the stream protocol does not replay it yet")
        self.store = open_store(before, self.served.version)
        self.stream = stream
        self.retrain_seconds = 0.0
        self.applications = 0

    def observe(self, event) -> None:
        self.store.record(event.user, [Event(event.item, event.timestamp)], _no_memory)

    def due(self, i: int) -> bool:
        return False

    def apply(self) -> None:
        self.applications += 1

    def describe(self) -> dict:
        return {"neighbour_memory": self.served.model.neighbours.describe() if self.served.model.neighbours.active else "off"}


class Neighbours(Frozen):
    """The neighbour memory growing online, synced every ``sync_every`` events (the service syncs before
    every ranking: ``sync_every=1``)."""

    name = "neighbours"

    def __init__(self, checkpoint, before, stream, sync_every: int = 50):
        super().__init__(checkpoint, before, stream)
        self.forced = best_validation_setting(self.served, checkpoint)
        if self.served.growing is None:
            raise MemrecError("policy 'neighbours' needs a model trained with --memory neighbours whose memory is in use "
                              "(memory.neighbours.enabled; the setting chosen on validation has weight > 0)")
        self.sync_every = sync_every
        self.served.follow(self.store)  # the imported training logs: no entries (the checkpoint holds them)

    def due(self, i: int) -> bool:
        return (i + 1) % self.sync_every == 0

    def apply(self) -> None:
        self.served.follow(self.store)  # the memory takes in every user the logs gained since the last sync
        self.applications += 1

    def describe(self) -> dict:
        forced = {"forced": f"validation switched the memory off (gain within noise); its best validation setting is used: {self.forced}"} if self.forced else {}
        return {**super().describe(), **forced, "sync_every_events": self.sync_every, "online_entries": len(self.served.growing)}


def best_validation_setting(served, checkpoint) -> dict | None:
    """Where validation built the neighbour memory but left it off (its gain within noise), switch on
    the setting best on validation (the run's metrics.json grid; never the stream): the policy measures
    the memory it was asked for. Returns that setting, or None when nothing was changed."""
    import json

    metrics = Path(checkpoint).parent / "metrics.json"
    model = served.model
    if served.growing is not None or len(model.neighbours) == 0 or not metrics.is_file():
        return None
    grid = json.loads(metrics.read_text()).get("neighbour_memory", {}).get("grid", [])
    best = max((row for row in grid if row["weight"] > 0), key=lambda row: row["ndcg@10"], default=None)
    if best is None:
        return None
    setting = {key: best[key] for key in ("k", "temperature", "weight", "gate", "decay")}
    model.neighbours.set(**setting)
    served.users = {raw: i for i, raw in enumerate(training_users(load_checkpoint(checkpoint)))}
    served.growing = GrowingNeighbours(model)
    return setting


class Retrain(Frozen):
    """No memory; every ``every_days`` of data time, ``epochs`` more epochs on every event so far."""

    name = "retrain"

    def __init__(self, checkpoint, before, stream, every_days: float = 7.0, epochs: int = 2):
        ckpt = load_checkpoint(checkpoint)
        self.config, self.item_ids = ckpt.config, ckpt.item_ids
        self.trainable = ckpt.model
        self.trainable.neighbours.set(k=0, temperature=1.0, weight=0.0)  # no memory: its keys would go stale anyway
        self.served = self._serve()
        self.store = open_store(before, self.served.version)
        self.stream, self.every, self.epochs = stream, every_days * DAY, epochs
        self.start = stream[0].timestamp
        self.retrain_seconds, self.applications = 0.0, 0

    def _serve(self) -> ServedModel:
        return ServedModel(copy.deepcopy(self.trainable), self.item_ids, self.trainable.max_len, self.config.model)

    def due(self, i: int) -> bool:
        if i + 1 >= len(self.stream):
            return False
        period = lambda t: int((t - self.start) // self.every)  # noqa: E731
        return period(self.stream[i + 1].timestamp) > period(self.stream[i].timestamp)

    def apply(self) -> None:
        from memrec.train.trainer import Trainer

        tic = time.perf_counter()
        index = self.served.index
        users = sorted(set(self.store.changes(None)[0]))  # every user with a log
        sequences = [np.array([index[e.item] for e in self.store.history(u) if e.item in index], dtype=np.int64) for u in users]
        ds = SequenceDataset("stream", list(users), self.item_ids, sequences, None, ItemInfo.empty(len(self.item_ids) - 1))
        split = Split(sequences, _eval_set([]), _eval_set([]), "stream: every event so far")
        self.trainable.prepare(ds, split)
        trainer = Trainer(self.trainable, split, self.config, progress=False)
        for epoch in range(1, self.epochs + 1):
            trainer.train_epoch(1000 * (self.applications + 1) + epoch)  # a fresh shuffle each retraining
        self.trainable.eval()
        self.served = self._serve()
        self.applications += 1
        self.retrain_seconds += time.perf_counter() - tic

    def describe(self) -> dict:
        return {"neighbour_memory": "off", "every_days": self.every / DAY, "epochs": self.epochs, "retrainings": self.applications}


def make_policy(name: str, checkpoint, before, stream, sync_every: int = 50, every_days: float = 7.0, epochs: int = 2):
    if name == "frozen":
        return Frozen(checkpoint, before, stream)
    if name == "neighbours":
        return Neighbours(checkpoint, before, stream, sync_every)
    if name == "retrain":
        return Retrain(checkpoint, before, stream, every_days, epochs)
    if name == "user-memory":
        raise MemrecError("policy 'user-memory' (UR4Rec-MoE's per-user memory with its triggers) is not implemented yet")
    raise MemrecError(f"unknown policy {name!r}: expected some of {', '.join(POLICIES)}")


def _toy_policy():
    """A frozen GRU4Rec policy on a toy stream, for the examples."""
    import types

    import torch

    from memrec.config import RunConfig
    from memrec.models import build_model
    from memrec.stream.protocol import StreamEvent
    from memrec.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    path = tempfile.mkdtemp() + "/m.pt"
    ds = types.SimpleNamespace(item_ids=["[PAD]", "a", "b", "c", "d"], user_ids=[], fingerprint=lambda: "x")
    save_checkpoint(path, build_model("gru4rec", 4, 5), RunConfig.from_dict({"model": "gru4rec"}), ds)
    before = {"u": [Event("a", 1.0)], "v": [Event("b", 1.0)]}
    stream = [StreamEvent(u, i, float(t)) for t, (u, i) in enumerate([("u", "b"), ("v", "c"), ("u", "c"), ("w", "e"), ("w", "d")], 2)]
    return Frozen(path, before, stream), stream
