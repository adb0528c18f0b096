"""Batches for training (every position of a sequence at once, or one target per prefix) and for evaluation.

Sequences are right-padded with item 0: position t holds the t-th item of the window, so a causal
model's output at t depends only on real items and never on padding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from memrec.data.split import EvalSet


@dataclass
class TrainBatch:
    users: torch.Tensor  # (B,) user indices
    inputs: torch.Tensor  # (B, L) item indices, right-padded with 0
    targets: torch.Tensor  # (B, L) next item at each position, 0 where there is none
    starts: torch.Tensor | None = None  # (B,) where inputs[:, 0] sits in the user's training sequence
    last_only: bool = False  # each row has one target, at its last real position (``train_windows: prefixes``)


@dataclass
class EvalBatch:
    users: torch.Tensor  # (B,)
    history: torch.Tensor  # (B, max_len) last max_len history items, right-padded with 0
    lengths: torch.Tensor  # (B,) number of real items in `history` (0 for an empty history)
    targets: torch.Tensor  # (B,) item to rank
    seen_rows: torch.Tensor  # (S,) with seen_items: every (row, item) of the FULL history, for masking
    seen_items: torch.Tensor  # (S,)


WINDOW_MODES = ("all", "last", "prefixes")


def training_windows(train: list[np.ndarray], max_len: int, mode: str = "all") -> list[tuple[int, int, np.ndarray]]:
    """Cut each training sequence into windows of at most ``max_len + 1`` items.

    ``all``: windows end at the last item and step back by ``max_len``, so every item after the first
    is a target exactly once per epoch. ``last``: only the last window (SASRec's original recipe).
    ``prefixes``: one window per target, ending at it (the BSARec / FMLP-Rec recipe; train its last
    position only, :class:`TrainBatches` with ``last_only``): every item after the first is a target
    once per epoch, each in its own sample with its own dropout.
    Returns ``(user, start, window)`` triples, ``start`` being the window's offset in the sequence.

    Example:
        >>> [(start, w.tolist()) for _, start, w in training_windows([np.arange(1, 8)], max_len=3)]
        [(3, [4, 5, 6, 7]), (0, [1, 2, 3, 4])]
        >>> [w.tolist() for _, _, w in training_windows([np.arange(1, 5)], max_len=2, mode="prefixes")]
        [[1, 2], [1, 2, 3], [2, 3, 4]]
    """
    if mode not in WINDOW_MODES:
        raise ValueError(f"train_windows must be one of {', '.join(WINDOW_MODES)}, got {mode!r}")
    windows = []
    for user, seq in enumerate(train):
        if mode == "prefixes":
            windows.extend((user, max(0, end - max_len - 1), seq[max(0, end - max_len - 1) : end]) for end in range(2, len(seq) + 1))
            continue
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len - 1)
            windows.append((user, start, seq[start:end]))
            if mode == "last":
                break
            end -= max_len
    return windows


class TrainBatches:
    """Shuffled training batches, deterministic for a given epoch seed.

    Windows of similar length are batched together (sorted inside chunks of 50 batches, then the
    batches are shuffled), which removes most padding without changing what each epoch contains.
    With ``last_only`` each window's last item is its only target (``train_windows: prefixes``).
    """

    def __init__(self, windows: list[tuple[int, int, np.ndarray]], batch_size: int, last_only: bool = False):
        if not windows:
            raise ValueError("no training windows: every training sequence has fewer than 2 items")
        self.windows = windows
        self.batch_size = batch_size
        self.last_only = last_only
        self.lengths = np.array([len(w) for _, _, w in windows])

    def __len__(self) -> int:
        return -(-len(self.windows) // self.batch_size)

    def epoch(self, seed: int):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self.windows))
        chunk = self.batch_size * 50
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches.extend(part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size))
        for b in rng.permutation(len(batches)):
            yield self._collate(batches[b])

    def _collate(self, rows: np.ndarray) -> TrainBatch:
        width = int(self.lengths[rows].max()) - 1
        inputs = np.zeros((len(rows), width), dtype=np.int64)
        targets = np.zeros((len(rows), width), dtype=np.int64)
        users = np.empty(len(rows), dtype=np.int64)
        starts = np.empty(len(rows), dtype=np.int64)
        for r, i in enumerate(rows):
            users[r], starts[r], w = self.windows[i]
            inputs[r, : len(w) - 1] = w[:-1]
            if self.last_only:
                targets[r, len(w) - 2] = w[-1]
            else:
                targets[r, : len(w) - 1] = w[1:]
        return TrainBatch(torch.from_numpy(users), torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(starts), self.last_only)


def history_width(length: int, max_len: int) -> int:
    """Width of an evaluation row: the smallest multiple of 8 (at most ``max_len``) that holds the last
    ``max_len`` items of its history. It depends on the row alone, so a row's scores never depend on
    which other rows share its batch, and short histories cost short rows.

    Example:
        >>> [history_width(n, 50) for n in (0, 8, 9, 40, 41, 500)]
        [8, 8, 16, 40, 48, 50]
    """
    return min(max(8, -(-min(length, max_len) // 8) * 8), max_len)


def eval_batches(evalset: EvalSet, max_len: int, batch_size: int):
    """Evaluation batches of rows that share a width (:func:`history_width`), as ``(rows, batch)``:
    ``rows`` are the positions in ``evalset`` of the batch's examples; histories keep their last
    ``max_len`` items."""
    widths = np.array([history_width(len(h), max_len) for h in evalset.histories], dtype=np.int64)
    for width in np.unique(widths):
        same = np.flatnonzero(widths == width)
        for start in range(0, len(same), batch_size):
            rows = same[start : start + batch_size]
            yield rows, make_eval_batch(evalset.users[rows], [evalset.histories[i] for i in rows], evalset.targets[rows], int(width))


def make_eval_batch(users: np.ndarray, histories: list[np.ndarray], targets: np.ndarray, max_len: int) -> EvalBatch:
    lengths = np.array([min(len(h), max_len) for h in histories], dtype=np.int64)
    history = np.zeros((len(histories), max_len), dtype=np.int64)  # width max_len, whatever the batch
    for r, (h, n) in enumerate(zip(histories, lengths)):
        if n:
            history[r, :n] = h[len(h) - n :]
    seen_rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    seen_items = np.concatenate(histories) if histories else np.zeros(0, dtype=np.int64)
    return EvalBatch(
        torch.from_numpy(np.asarray(users, dtype=np.int64)),
        torch.from_numpy(history),
        torch.from_numpy(lengths),
        torch.from_numpy(np.asarray(targets, dtype=np.int64)),
        torch.from_numpy(seen_rows.astype(np.int64)),
        torch.from_numpy(seen_items.astype(np.int64)),
    )
