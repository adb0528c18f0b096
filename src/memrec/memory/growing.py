"""The neighbour memory grows while serving: every position of a user's event log becomes an entry.

After training, a model's neighbour memory (:mod:`memrec.memory.neighbours`) holds the training
positions of the training users. While serving, users keep acting: :class:`GrowingNeighbours` turns
each position ``t >= 1`` of a user's event log into an entry of the same kind (key: the model's
neighbour state after the user's items ``0..t-1``, from ``model.scores_and_states``; values: the
items at ``t .. t + H - 1``, filled in as they arrive; owner: the user's index) and attaches them to
the model's memory (:meth:`NeighbourMemory.attach_online`), so other users' next rankings find them.

The entries are a function of the weights and the logs, which live in the store: every process
serving the same store derives the same entries from the same logs (``memrec.serve`` follows the
store's :meth:`~memrec.store.events.EventLog.changes`). Positions the checkpoint's memory already
holds (a training user's imported training sequence) are not added twice.
"""
from __future__ import annotations

import numpy as np
import torch

from memrec.data.batching import make_eval_batch
from memrec.memory.neighbours import NeighbourMemory


class GrowingNeighbours:
    """Entries of positions seen after training, per owner, attached to ``model.neighbours``.

    Example:
        >>> from memrec.models import build_model
        >>> model = build_model("gru4rec", num_items=9, max_len=4).eval()
        >>> model.neighbours.build(torch.randn(2, 64), torch.tensor([[3], [4]]), torch.tensor([0, 1]))
        >>> model.neighbours.set(k=4, temperature=0.3, weight=0.5)
        >>> growing = GrowingNeighbours(model)
        >>> growing.update(owner=5, items=[1, 2, 7])  # positions 1 and 2: keys of [1] and [1, 2]
        2
        >>> growing.memory.values.tolist(), growing.memory.owners.tolist()
        ([[2], [7]], [5, 5])
    """

    def __init__(self, model):
        self.model = model
        self.horizon = model.neighbours.values.size(1)
        self.logs: dict[int, list[int]] = {}  # owner -> item indices of their log
        self.starts: dict[int, int] = {}  # owner -> first position that is an entry here
        self.keys: dict[int, torch.Tensor] = {}  # owner -> (positions since start, d)
        self.memory = NeighbourMemory()
        model.neighbours.attach_online(self.memory)

    def __len__(self) -> int:
        return len(self.memory)

    @torch.no_grad()
    def update(self, owner: int, items: list[int], start: int = 1, rebuild: bool = True) -> int:
        """Make ``owner``'s entries those of their log ``items`` (item indices, oldest first; a log only
        grows) from position ``start`` on; returns how many entries were added. ``rebuild=False`` leaves
        the searched memory as it was until :meth:`rebuild` (one rebuild after many owners' updates)."""
        start = max(1, self.starts.setdefault(owner, start))
        done = start + len(self.keys.get(owner, ()))
        self.logs[owner] = list(items)
        positions = list(range(done, len(items)))
        if not positions:
            return 0
        batch = make_eval_batch(np.full(len(positions), owner), [np.asarray(items[:t], dtype=np.int64) for t in positions],
                                np.zeros(len(positions), dtype=np.int64), self.model.max_len)
        was = self.model.training
        self.model.eval()
        try:
            keys = self.model.scores_and_states(batch)[1].float()  # (P, d)
        finally:
            self.model.train(was)
        self.keys[owner] = torch.cat([self.keys[owner], keys]) if owner in self.keys else keys
        if rebuild:
            self.rebuild()
        return len(positions)

    def rebuild(self) -> None:
        """Make the searched memory hold every owner's entries so far (values filled in from their logs)."""
        owners = [o for o in self.keys if len(self.keys[o])]
        keys = torch.cat([self.keys[o] for o in owners])
        ahead = np.arange(self.horizon)[None, :]  # (1, H)
        values = torch.from_numpy(np.concatenate([  # (M, H): each entry's next H items, -1 past the end of the log
            np.asarray(self.logs[o] + [-1] * self.horizon, dtype=np.int64)[np.arange(self.starts[o], self.starts[o] + len(self.keys[o]))[:, None] + ahead]
            for o in owners]))
        owner_ids = torch.cat([torch.full((len(self.keys[o]),), o, dtype=torch.int64) for o in owners])
        memory = NeighbourMemory()
        memory.build(keys, values, owner_ids)
        self.memory = memory
        self.model.neighbours.attach_online(memory)
