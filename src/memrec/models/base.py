"""The interface every memrec sequence model implements.

A model reads right-padded item sequences (0 = padding) and returns one hidden vector per position,
causally: the vector at position t depends on items 0..t only and predicts item t+1. Scores are dot
products with the item embedding table, so training can use every position at once and ranking
covers the whole catalogue. Memory models add their own state and override ``encode`` / ``loss``.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from memrec.data.batching import EvalBatch, TrainBatch
from memrec.errors import UnknownItemError
from memrec.memory.neighbours import NeighbourMemory, seen_mask


class SequentialRecommender(nn.Module):
    """Base class: subclasses set ``name`` and ``config_class`` and implement two methods.

    - ``encode_positions(items (B, L), users (B,)) -> (B, L, d)``
    - ``item_embeddings() -> (N + 1, d)`` (row 0 is padding and is never recommended)
    """

    name: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, num_items: int, max_len: int, config):
        super().__init__()
        if num_items < 1 or max_len < 1:
            raise ValueError(f"expected num_items >= 1 and max_len >= 1, got {num_items} and {max_len}")
        self.num_items = num_items
        self.max_len = max_len
        self.config = config
        self.neighbours = NeighbourMemory()  # other users' training positions; empty and unused until the trainer builds it

    def encode_positions(self, items: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def item_embeddings(self) -> torch.Tensor:
        raise NotImplementedError

    def check_items(self, items: torch.Tensor, any_length: bool = False) -> None:
        """Refuse item indices outside 0..N and sequences longer than ``max_len`` (unless ``any_length``),
        with a clear message."""
        if items.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"item sequences must be an integer tensor, got {items.dtype}")
        if items.dim() != 2:
            raise ValueError(f"item sequences must have shape (batch, length), got {tuple(items.shape)}")
        if not any_length and items.size(1) > self.max_len:
            raise ValueError(f"sequences of length {items.size(1)} exceed max_len={self.max_len}; keep the last {self.max_len} items")
        if items.numel() and (items.min() < 0 or items.max() > self.num_items):
            bad = items[(items < 0) | (items > self.num_items)][0].item()
            raise UnknownItemError(f"item index {bad} is out of range: this model knows items 1..{self.num_items} (0 = padding)")

    def encode(self, history: torch.Tensor, lengths: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """User vector for the next item: the hidden state at the last real position.

        history: (B, L) right-padded; lengths: (B,). An empty history (length 0) reads only padding,
        which is the model's cold-start path. Returns (B, d).
        """
        self.check_items(history)
        return self.encode_last(history, (lengths - 1).clamp(min=0), users)

    def encode_last(self, items: torch.Tensor, last: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden state at position ``last`` of each row: (B, L), (B,) -> (B, d). Models may skip
        work that other positions would need."""
        return self.encode_positions(items, users)[torch.arange(len(last)), last]

    def prepare(self, dataset, split) -> None:
        """Called with the data set and its split before training or evaluation; models that read item
        side information or users' full sequences take them here. The base model needs nothing."""

    def after_training(self, split, max_len: int, batch_size: int = 256, log=print) -> dict:
        """Called once the best weights are restored, before the final evaluation: models that build
        state from the training data with their trained weights (and choose its settings on
        ``split.valid``) do it here and return what they chose, for ``metrics.json``. The base model
        has nothing to do."""
        return {}

    def score_all(self, batch: EvalBatch) -> torch.Tensor:
        """Scores of every item (column 0 = padding) for each row: (B, N + 1), mixed with the neighbour
        memory (:mod:`memrec.memory.neighbours`) when it is built and its setting uses it."""
        mixing = not self.training and self.neighbours.active
        logits, states = self.scores_and_states(batch, states=mixing)
        if not mixing:
            return logits
        return self.neighbours.mix(logits, seen_mask(batch, logits.size(1)), states, batch.users)

    def scores_and_states(self, batch: EvalBatch, states: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The model's own scores (B, N + 1) and its neighbour state (B, d), or None when ``states`` is
        False: the state that keys the neighbour memory's entries and queries it. Models whose user
        vector reads more than the window (RAMRec's bank) return the window's state here."""
        user = self.encode(batch.history, batch.lengths, batch.users)  # (B, d)
        return user @ self.item_embeddings().T, user if states else None

    def user_vectors(self, batch: EvalBatch) -> torch.Tensor | None:
        """The (B, d) vectors whose dot products with ``item_embeddings()`` are :meth:`score_all`'s scores,
        or None where scores are more than that (the neighbour memory in use, a model's own scoring): what
        chunked evaluation and an item index (:mod:`memrec.memory.item_search`) rank by."""
        if (not self.training and self.neighbours.active) or type(self).scores_and_states is not SequentialRecommender.scores_and_states:
            return None
        return self.encode(batch.history, batch.lengths, batch.users)

    def loss(self, batch: TrainBatch, objective, writes: list | None = None) -> torch.Tensor:
        """Training loss over every non-padding position of the batch. It never changes the model: a
        model that remembers what it trains on appends its memory writes (callables) to ``writes``
        when given one, and the trainer applies them with :meth:`write_memory` after the optimizer step."""
        self.check_items(batch.inputs)
        hidden = self.encode_positions(batch.inputs, batch.users)  # (B, L, d)
        mask = batch.targets > 0
        return objective(hidden[mask], batch.targets[mask], self.item_embeddings())  # (T, d), (T,)

    # -- served state: what the model keeps per user between requests, and how an event updates it ----
    def user_memory_cell(self):
        """The per-user memory this model keeps between requests (a
        :class:`~memrec.memory.user_memory.MemoryCell`: one vector per user, updated by each event
        under its trigger and kept in the store), or None: the base model keeps none."""
        return None

    def ranks_training_users_apart(self) -> bool:
        """Whether a user of the training data is ranked differently from an anonymous user with the
        same history: a neighbour memory in use never offers users their own training entries."""
        return self.neighbours.active

    def check_training_users(self, count: int) -> None:
        """Refuse per-user state keyed beyond ``count`` training users (ValueError); the base keeps none."""

    def follows_logs(self) -> bool:
        """Whether the model keeps per-user state derived from each user's event log, grown by
        :meth:`follow_log` while serving (RAMRec's banks); the base keeps none."""
        return False

    def follow_log(self, owner: int, items: list[int], start: int) -> int:
        """Fold positions ``start ..`` of user ``owner``'s log ``items`` (item indices, oldest first)
        into the per-user state :meth:`follows_logs` declares; returns how many entries were written.
        The state is a function of the weights and the log, so every process serving one store
        derives the same from the same log. The base keeps none."""
        return 0

    def serve_scores(self, batch: EvalBatch, memory: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float] | None]:
        """Scores (B, N + 1) for serving, given each row's stored per-user memory (B, D) when the model
        keeps one, and what the model exposes about its answer (e.g. routing weights by expert) or None."""
        return self.score_all(batch), None

    def write_memory(self, writes: list) -> None:
        """Apply the memory writes :meth:`loss` collected, in order (the trainer's explicit memory step)."""
        for write in writes:
            write()

    @torch.no_grad()
    def recommend(self, batch: EvalBatch, k: int = 10, exclude_seen: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k items and scores per row over the whole catalogue: (B, k'), (B, k'). Only rankable
        items are listed (not padding, nor, with ``exclude_seen``, a row's history): k' is ``k`` or,
        when a row has fewer rankable items, that row's count (the smallest in the batch).

        Example:
            >>> import numpy as np
            >>> from memrec.data.batching import make_eval_batch
            >>> from memrec.models import build_model
            >>> model = build_model("gru4rec", num_items=5, max_len=4).eval()
            >>> items, scores = model.recommend(make_eval_batch(np.array([0]), [np.array([1, 2])], np.array([0]), 4), k=100)
            >>> sorted(items[0].tolist())  # items 1 and 2 were seen
            [3, 4, 5]
        """
        return masked_topk(self.score_all(batch), k, (batch.seen_rows, batch.seen_items) if exclude_seen else None)


def masked_topk(scores: torch.Tensor, k: int, seen: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` rankable items of each row of ``scores`` (B, N + 1): never padding, nor the
    ``seen`` (row indices, item indices) pairs, e.g. each row's history (an ``EvalBatch``'s
    ``seen_rows, seen_items``); fewer than ``k`` when a row has fewer rankable items (the smallest
    count in the batch). Returns indices and scores (B, k'); ``scores`` is changed in place.

    Example:
        >>> masked_topk(torch.tensor([[9.0, 3.0, 8.0, 1.0]]), k=5, seen=(torch.tensor([0]), torch.tensor([2])))[0].tolist()
        [[1, 3]]
    """
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    scores[:, 0] = float("-inf")
    if seen is not None:
        scores[seen] = float("-inf")
    rankable = int((scores > float("-inf")).sum(dim=1).min()) if len(scores) else 0
    top = scores.topk(min(k, rankable), dim=1)
    return top.indices, top.values
