"""What the system does with the stream's events once they are scored: the policies compared.

Each policy owns a :class:`~memrec.serve.model.ServedModel` (loaded from the checkpoint trained on
the events before T) and an SQLite state store, the service's own (:class:`SQLiteStateStore`), that
starts with every user's events before T (keys ``train-*``, as ``memrec serve`` imports them):

- ``frozen``: the trained model as it is (a neighbour memory it was trained with stays as built;
  a per-user memory stays as the events before T left it); it reads each user's growing log and
  learns nothing else;
- ``plain``: ``frozen`` with the neighbour memory switched off (the weights alone: what ``retrain``
  starts from);
- ``user-memory``: a model that keeps a per-user memory (UR4Rec-MoE's GRU memory) folds each event
  into its user's memory as the service does (:meth:`ServedModel.observe`, under the model's trigger:
  every N events, drift or time), the memory kept in the store beside the log;
- ``neighbours``: the neighbour memory grows online: every ``sync_every`` events the policy does what
  the service does before a ranking (:meth:`ServedModel.follow`), so each stream position becomes an
  entry other users find. Needs a model trained with ``--memory neighbours``;
- ``both``: ``user-memory`` and ``neighbours`` together;
- ``retrain``: no memory (the neighbour memory switched off); every ``every_days`` of data time the
  weights are trained further (warm start, ``epochs`` epochs of the usual trainer on every event so
  far, items the checkpoint lacks still unknown), the reference for a team without memory. A per-user
  memory is folded again from every log under the retrained weights (counted in the retraining
  time) and frozen between retrainings.

A user first seen after T is a user with an empty log: every policy ranks them from their own events
(the neighbours policy gives them an owner index, so they never find their own entries).
"""
from __future__ import annotations

import copy
import shutil
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

POLICIES = ("frozen", "plain", "neighbours", "user-memory", "both", "retrain")
DAY = 86400.0


def _no_memory(_memory, _new):
    return None  # the stored memory (if any) is left as it is: the log alone grows


def folding(served: ServedModel):
    """The store's memory update for ``served``: fold the events it knows into the user's memory, as
    ``POST /events`` does (:meth:`ServedModel.observe`); items unknown to the model are skipped."""
    def apply(memory, new):
        known = [e for e in new if e.item in served.index]
        return served.observe(memory, known)[0] if known else memory
    return apply if served.has_memory else _no_memory


def open_store(before: dict[str, list[Event]], served: ServedModel) -> SQLiteStateStore:
    """A fresh SQLite state store (on tmpfs where there is one) holding each user's events before T
    (keys ``train-*``), folded into each user's memory for a model that keeps one, as
    ``memrec serve --import-training-users`` does."""
    root = "/dev/shm" if Path("/dev/shm").is_dir() else None
    store = SQLiteStateStore(Path(tempfile.mkdtemp(prefix="memrec-stream-", dir=root)) / "state.db", served.version)
    for user, events in before.items():
        store.record(user, [Event(e.item, e.timestamp, key=f"train-{n}") for n, e in enumerate(events)], folding(served))
    return store


class Frozen:
    """The trained model reading each user's growing log; nothing else changes."""

    name = "frozen"
    learns_memory = False  # whether stream events update the per-user memory

    def __init__(self, checkpoint: str | Path, before: dict[str, list[Event]], stream):
        self.served = ServedModel.load(checkpoint)
        if self.learns_memory and not self.served.has_memory:
            raise MemrecError(f"policy {self.name!r} needs a model that keeps a per-user memory (ur4rec-moe with use_memory); "
                              f"{self.served.name!r} keeps none")
        self.store = open_store(before, self.served)
        self.stream = stream
        self.retrain_seconds = 0.0
        self.applications = 0

    def observe(self, event) -> None:
        self.store.record(event.user, [Event(event.item, event.timestamp)], folding(self.served) if self.learns_memory else _no_memory)

    def due(self, i: int) -> bool:
        return False

    def apply(self) -> None:
        self.applications += 1

    def close(self) -> None:
        """Remove the policy's store (a temporary folder)."""
        self.store.close()
        shutil.rmtree(Path(self.store.path).parent, ignore_errors=True)

    def describe(self) -> dict:
        nb = self.served.model.neighbours
        memory = {"user_memory": "updated online" if self.learns_memory else "as the events before T left it"} if self.served.has_memory else {}
        return {"neighbour_memory": nb.describe() if nb.active else "off", **memory}


class Plain(Frozen):
    """The trained weights with the neighbour memory switched off, reading each user's growing log."""

    name = "plain"

    def __init__(self, checkpoint, before, stream):
        super().__init__(checkpoint, before, stream)
        self.served.model.neighbours.set(k=0, temperature=1.0, weight=0.0)
        self.served.model.neighbours.attach_online(None)
        self.served.growing = None


class UserMemory(Frozen):
    """Each event folded into its user's memory under the model's trigger (the service's event path)."""

    name = "user-memory"
    learns_memory = True


class Neighbours(Frozen):
    """The neighbour memory growing online, synced every ``sync_every`` events (the service syncs before
    every ranking: ``sync_every=1``)."""

    name = "neighbours"

    def __init__(self, checkpoint, before, stream, sync_every: int = 100):
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


class Both(Neighbours):
    """The per-user memory and the growing neighbour memory together."""

    name = "both"
    learns_memory = True


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
        self.store = open_store(before, self.served)
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
        if self.served.has_memory:  # the memories were folded by the old weights: fold every log again
            old, self.store = self.store, open_store({u: self.store.history(u) for u in users}, self.served)
            old.close()
            shutil.rmtree(Path(old.path).parent, ignore_errors=True)
        self.applications += 1
        self.retrain_seconds += time.perf_counter() - tic

    def describe(self) -> dict:
        return {"neighbour_memory": "off", "every_days": self.every / DAY, "epochs": self.epochs, "retrainings": self.applications}


def make_policy(name: str, checkpoint, before, stream, sync_every: int = 100, every_days: float = 7.0, epochs: int = 2):
    if name == "frozen":
        return Frozen(checkpoint, before, stream)
    if name == "neighbours":
        return Neighbours(checkpoint, before, stream, sync_every)
    if name == "plain":
        return Plain(checkpoint, before, stream)
    if name == "user-memory":
        return UserMemory(checkpoint, before, stream)
    if name == "both":
        return Both(checkpoint, before, stream, sync_every)
    if name == "retrain":
        return Retrain(checkpoint, before, stream, every_days, epochs)
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
