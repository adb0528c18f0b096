"""Train / validation / test splits. Training only ever sees ``Split.train``.

- ``leave_one_out`` (default): per user with at least 3 interactions, the last item is the test
  target, the second-to-last the validation target, the rest is training. Test history = training
  + validation item; validation history = training. Users with fewer than 3 interactions are
  trained on and not evaluated.
- ``global_time``: one cut on the global time line for validation and one for test. Training is
  every interaction before the validation cut; a user's validation target is their first
  interaction in the validation window (history: their training items), their test target the first
  interaction after the test cut (history: everything before the test cut).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memrec.data.dataset import SequenceDataset
from memrec.errors import ConfigError

SPLITS = ("leave_one_out", "global_time")


@dataclass
class EvalSet:
    """Examples to rank: a user, the history the model may read, and the next item."""

    users: np.ndarray  # (E,) user indices
    histories: list[np.ndarray]  # E arrays of item indices, time order
    targets: np.ndarray  # (E,) item indices

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, rows: np.ndarray) -> "EvalSet":
        return EvalSet(self.users[rows], [self.histories[i] for i in rows], self.targets[rows])


@dataclass
class Split:
    train: list[np.ndarray]  # per user index: the training sequence (possibly empty)
    valid: EvalSet
    test: EvalSet
    protocol: str


def split_dataset(ds: SequenceDataset, how: str = "leave_one_out", valid_fraction: float = 0.1, test_fraction: float = 0.1) -> Split:
    """Split a data set for training and evaluation.

    Example:
        >>> ds = SequenceDataset.from_sequences({"u": ["a", "b", "c", "d"]})
        >>> s = split_dataset(ds)
        >>> s.train[0].tolist(), s.valid.targets.tolist(), s.test.targets.tolist()
        ([1, 2], [3], [4])
    """
    if how == "leave_one_out":
        return _leave_one_out(ds)
    if how == "global_time":
        return _global_time(ds, valid_fraction, test_fraction)
    raise ConfigError(f"unknown split {how!r}: expected one of {SPLITS}")


def _leave_one_out(ds: SequenceDataset) -> Split:
    train, valid, test = [], [], []
    for user, seq in enumerate(ds.sequences):
        if len(seq) < 3:
            train.append(seq.copy())
            continue
        train.append(seq[:-2].copy())
        valid.append((user, seq[:-2].copy(), seq[-2]))
        test.append((user, seq[:-1].copy(), seq[-1]))
    return Split(train, _eval_set(valid), _eval_set(test), "leave-one-out by time (last item test, second-to-last validation)")


def _global_time(ds: SequenceDataset, valid_fraction: float, test_fraction: float) -> Split:
    if ds.timestamps is None:
        raise ConfigError(f"split=global_time needs timestamps, and data set {ds.name!r} has none; use split=leave_one_out")
    if not (0 < valid_fraction and 0 < test_fraction and valid_fraction + test_fraction < 1):
        raise ConfigError("global_time: expected 0 < valid_fraction, test_fraction and their sum < 1")
    stamps = np.concatenate(ds.timestamps)
    t_valid, t_test = np.quantile(stamps, [1 - valid_fraction - test_fraction, 1 - test_fraction])
    train, valid, test = [], [], []
    for user, (seq, ts) in enumerate(zip(ds.sequences, ds.timestamps)):
        n_train = int(np.searchsorted(ts, t_valid, side="left"))
        n_before_test = int(np.searchsorted(ts, t_test, side="left"))
        train.append(seq[:n_train].copy())
        if n_train > 0 and n_train < n_before_test:
            valid.append((user, seq[:n_train].copy(), seq[n_train]))
        if n_before_test > 0 and n_before_test < len(seq):
            test.append((user, seq[:n_before_test].copy(), seq[n_before_test]))
    protocol = f"global time split (validation from t={t_valid:.0f}, test from t={t_test:.0f})"
    return Split(train, _eval_set(valid), _eval_set(test), protocol)


def _eval_set(rows: list[tuple[int, np.ndarray, int]]) -> EvalSet:
    if not rows:
        return EvalSet(np.zeros(0, dtype=np.int64), [], np.zeros(0, dtype=np.int64))
    users, histories, targets = zip(*rows)
    return EvalSet(np.array(users, dtype=np.int64), list(histories), np.array(targets, dtype=np.int64))
