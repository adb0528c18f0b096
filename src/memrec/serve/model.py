"""A checkpoint, ready to serve: raw item ids, frozen item vectors, memory updates and top-k.

Every model in :data:`memrec.models.MODELS` is served the same way, through the served-state
protocol of :class:`~memrec.models.SequentialRecommender` (this module imports no model class):

- the user's history (raw item ids, from the event log) is mapped to the checkpoint's item indices
  and scored over the whole catalogue, history excluded (``model.serve_scores``);
- a model that keeps a per-user memory (``model.user_memory_cell()``, UR4Rec-MoE's GRU memory) folds
  each event into the user's memory (:meth:`ServedModel.observe`, the same
  :meth:`~memrec.memory.user_memory.MemoryCell.observe` the model was trained to match), kept in the
  store, and reads the stored memory when it recommends;
- a model that ranks a user of its training data apart from an anonymous one
  (``model.ranks_training_users_apart()``: RAMRec's training banks, a neighbour memory in use) is
  served with its data set's user ids (:func:`training_users`): a user id of the data set is that
  user, any other id is anonymous (user index -1), whatever its spelling.

Memories derived from the event logs grow while serving (:meth:`ServedModel.follow`, before each
ranking): every position the store's logs gain, through this process or another on the same store,
becomes an entry other users find in a neighbour memory in use (:mod:`memrec.memory.growing`), and an
entry of the user's own state for a model that keeps one (``model.follows_logs()``: RAMRec's banks,
which the user reads once the item has left the window of the last ``max_len`` items). The store holds
the logs; each process derives the same entries from them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from memrec.data import load_dataset
from memrec.data.batching import make_eval_batch
from memrec.errors import MemrecError
from memrec.memory.growing import GrowingNeighbours
from memrec.memory.item_search import approximate_search
from memrec.memory.user_memory import UserMemory
from memrec.models import masked_topk
from memrec.store.events import Event
from memrec.train.checkpoint import Checkpoint, CheckpointError, load_checkpoint

HISTORY_ONLY = "history-only"  # the store version of a model that keeps no memories


@dataclass
class Recommendation:
    items: list[str]
    scores: list[float]
    routing: dict[str, float] | None  # expert -> weight, for models with a router
    memory: dict | None  # memory statistics, for models with a memory


class ServedModel:
    """Example:
        >>> import tempfile, types, torch
        >>> from memrec.config import RunConfig
        >>> from memrec.models import build_model
        >>> from memrec.train.checkpoint import save_checkpoint
        >>> path = tempfile.mkdtemp() + "/m.pt"
        >>> ds = types.SimpleNamespace(item_ids=["[PAD]", "a", "b", "c"], user_ids=[], fingerprint=lambda: "x")
        >>> save_checkpoint(path, build_model("gru4rec", 3, 5), RunConfig.from_dict({"model": "gru4rec"}), ds)
        >>> served = ServedModel.load(path)
        >>> len(served.recommend([Event("a", 1.0)], None, k=5).items)  # 'a' is excluded
        2
    """

    def __init__(self, model, item_ids: list[str], max_len: int, name: str, user_ids: list[str] | None = None):
        self.model = model.eval()
        self.name = name
        self.item_ids = list(item_ids)
        self.index = {raw: i for i, raw in enumerate(self.item_ids) if i > 0}  # row 0 is padding
        if model.ranks_training_users_apart() and user_ids is None:
            raise ValueError(f"model {name!r} keeps per-user banks or a neighbour memory keyed by training user index: give the data set's user_ids")
        self.users = {raw: i for i, raw in enumerate(user_ids)} if model.ranks_training_users_apart() else {}  # raw user id -> training index
        self.max_len = max_len
        with torch.inference_mode():
            table = model.item_embeddings().detach().clone()  # (N + 1, d), frozen while serving
        self.table = table
        model.item_embeddings = lambda: table  # the weights never change while serving: compute once
        self.cell = model.user_memory_cell()  # the per-user memory kept in the store, or None
        self.search = approximate_search(model) if self.cell is None else None  # from 10^6 items: top-k through an item index
        self.version = model.memory_version() if self.cell is not None else HISTORY_ONLY
        # a neighbour memory in use grows with the logs in the store (follow): other users find each new position
        self.growing = GrowingNeighbours(model) if model.neighbours.active else None
        self.newcomers: dict[str, int] = {}  # users the training data lacks -> their owner index in the grown memory
        self.cursor: str | None = None  # how far follow() has read the store's changes
        self.followed: dict[str, int] = {}  # user -> positions of their log already folded into the model's own state

    @classmethod
    def load(cls, path: str | Path) -> "ServedModel":
        ckpt = load_checkpoint(path)  # weights_only: no arbitrary objects unpickled
        users = training_users(ckpt) if ckpt.model.ranks_training_users_apart() else None
        return cls(ckpt.model, ckpt.item_ids, ckpt.model.max_len, ckpt.config.model, users)

    @property
    def has_memory(self) -> bool:
        return self.cell is not None

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1

    def unknown_items(self, items: list[str]) -> list[str]:
        return [i for i in items if i not in self.index]

    # -- memory ------------------------------------------------------------------------------------
    def observe(self, memory: UserMemory | None, events: list[Event]) -> tuple[UserMemory, list[bool]]:
        """Fold ``events`` into ``memory`` (a new one for None), in order; returns it and, per event,
        whether the trigger fired."""
        memory = memory if memory is not None else self.cell.new_memory()
        fired = [self.cell.observe(memory, self.index[e.item], self.table, e.timestamp) for e in events]
        return memory, fired

    def step(self, memory: UserMemory | None, reset: bool = False) -> UserMemory:
        """An explicit update from the pending items, or with ``reset`` a fresh start."""
        memory = memory if memory is not None else self.cell.new_memory()
        self.cell.step(memory, self.table, force_reset=reset)
        return memory

    def replay(self, history: list[Event]) -> UserMemory | None:
        """The memory a user would have after its whole log (items this model does not know skipped)."""
        return self.observe(None, [e for e in history if e.item in self.index])[0] if self.has_memory else None

    # -- the neighbour memory, grown from the store's logs ----------------------------------------------
    def owner(self, user: str) -> int:
        """The user's index: their training index, else one beyond the training users, given on first sight."""
        if user in self.users:
            return self.users[user]
        return self.newcomers.setdefault(user, len(self.users) + len(self.newcomers))

    def follow(self, store) -> int:
        """Turn the positions the store's logs gained since the last call (any process may have written
        them) into neighbour-memory entries, and into the user's own state for a model that keeps one
        (RAMRec's bank); returns how many neighbour entries were added (0 without a neighbour memory).
        An imported training sequence (keys ``train-*``, see :mod:`memrec.serve.training_users`) adds
        none: the checkpoint's memory holds its training positions, and, as offline, not its held-out ones."""
        if self.growing is None and not self.model.follows_logs():
            return 0
        users, self.cursor = store.changes(self.cursor)
        added = 0
        for user in users:
            log = store.history(user)
            imported = next((n for n, e in enumerate(log) if not (e.key or "").startswith("train-")), len(log))
            known = [self.index[e.item] for e in log if e.item in self.index]
            owner, done = self.owner(user), self.followed.get(user, max(1, imported))
            self.model.follow_log(owner, known, done)  # the user's own state (RAMRec's bank)
            self.followed[user] = len(known)
            if self.growing is not None:
                added += self.growing.update(owner, known, start=max(1, imported), rebuild=False)
        if added:
            self.growing.rebuild()  # once for every user the logs gained
        return added

    @torch.inference_mode()
    def neighbours_of(self, history: list[Event], user: str, k: int) -> list[dict]:
        """The other users' entries the neighbour memory mixes into this user's ranking now, nearest
        first: their user id, cosine similarity and the items they went on to (empty without a
        neighbour memory in use). Call :meth:`follow` first to include the store's newest positions."""
        if self.growing is None:
            return []
        seen = np.array([self.index[e.item] for e in history if e.item in self.index], dtype=np.int64)
        batch = make_eval_batch(np.array([self.users.get(user, self.newcomers.get(user, -1))]), [seen], np.array([0]), self.max_len)
        query = self.model.scores_and_states(batch)[1]  # (1, d): the state the memory is searched with
        sims, owners, values = self.model.neighbours.explain(query, batch.users, k)
        names = self.__dict__.setdefault("_names", {})
        if len(names) != len(self.users) + len(self.newcomers):
            names.update({i: u for u, i in {**self.users, **self.newcomers}.items()})
        return [{"user": names.get(int(o), f"#{int(o)}"), "similarity": round(float(s), 6),
                 "next": [self.item_ids[i] for i in v.tolist() if i > 0]}
                for s, o, v in zip(sims[0], owners[0], values[0]) if int(o) >= 0]

    # -- ranking -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def recommend(self, history: list[Event], memory: UserMemory | None, k: int, user: str | None = None) -> Recommendation:
        """Top ``k`` items over the whole catalogue, the user's history excluded; ``user`` picks the
        user's training bank for RAMRec and spares a training user their own neighbour-memory entries
        (None or an id the data set does not have: the anonymous path)."""
        seen = np.array([self.index[e.item] for e in history if e.item in self.index], dtype=np.int64)
        batch = make_eval_batch(np.array([self.users.get(user, self.newcomers.get(user, -1))]), [seen], np.array([0]), self.max_len)
        state = torch.from_numpy((memory or self.cell.new_memory()).vector)[None] if self.cell is not None else None  # (1, D)
        found, routing = self.search.recommend(self.model, batch, k) if self.search is not None else None, None  # None: scored exactly
        if found is None:
            scores, routing = self.model.serve_scores(batch, state)  # (1, N + 1)
            found = masked_topk(scores.clone(), k, (batch.seen_rows, batch.seen_items))  # the whole history
        indices, values = found
        items = [self.item_ids[i] for i in indices[0].tolist()]
        return Recommendation(items, [round(float(s), 6) for s in values[0].tolist()], routing,
                              memory_stats(memory, self.cell) if self.has_memory else None)


def training_users(ckpt: Checkpoint) -> list[str]:
    """The raw user ids of the data set a checkpoint was trained on, by user index (the keys of
    RAMRec's banks): saved in the checkpoint, or, for older checkpoints, read from that data set
    (never downloaded here)."""
    users = ckpt.user_ids
    if users is None:
        try:
            ds = load_dataset(replace(ckpt.config.data, download=False))
        except MemrecError as e:
            raise CheckpointError(
                f"this {ckpt.config.model} checkpoint keeps per-user memory banks keyed by its training users and predates "
                f"checkpoints that carry their user ids, so serving it needs its data set {ckpt.config.data.dataset!r}, "
                f"which could not be read ({e}); point MEMREC_DATA_DIR at the data") from None
        ckpt.check_dataset(ds)
        users = list(ds.user_ids)
    try:
        ckpt.model.check_training_users(len(users))
    except ValueError as e:
        raise CheckpointError(f"the checkpoint {e}") from None
    return users


def memory_stats(memory: UserMemory | None, cell=None) -> dict:
    """What a client may see of a memory: counts and times, not the vector."""
    if memory is None:
        memory = cell.new_memory()
    return {
        "interaction_count": memory.interaction_count,
        "updates": memory.updates,
        "pending_items": len(memory.pending_items),
        "history_size": int(len(memory.history)),
        "norm": round(float(np.linalg.norm(memory.vector)), 6),
        "last_update_time": memory.last_update_time,
        "last_event_time": memory.last_event_time,
    }
