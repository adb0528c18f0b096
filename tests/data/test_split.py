"""Splits and the leakage self-test: training never sees a validation or test item."""
import numpy as np
import pytest
import torch

from memrec.data import SequenceDataset, split_dataset
from memrec.data.batching import TrainBatches, eval_batches, training_windows
from memrec.errors import ConfigError


def test_leave_one_out_on_ml100k(ml100k, ml100k_split):
    s = ml100k_split
    assert len(s.valid) == len(s.test) == ml100k.num_users
    for user, seq in enumerate(ml100k.sequences):
        assert np.array_equal(s.train[user], seq[:-2])
    assert np.array_equal(s.valid.targets, [seq[-2] for seq in ml100k.sequences])
    assert np.array_equal(s.test.targets, [seq[-1] for seq in ml100k.sequences])
    for h, seq in zip(s.valid.histories, ml100k.sequences):
        assert np.array_equal(h, seq[:-2])
    for h, seq in zip(s.test.histories, ml100k.sequences):
        assert np.array_equal(h, seq[:-1])


@pytest.mark.parametrize("mode", ["all", "last"])
def test_no_validation_or_test_item_leaks_into_training(ml100k, ml100k_split, mode):
    """Every training input and target is a position of the user's training prefix, and the
    windows of one epoch cover that prefix exactly (mode=all) or its last max_len+1 items."""
    max_len = 50
    batches = TrainBatches(training_windows(ml100k_split.train, max_len, mode), batch_size=64)
    seen: dict[int, list[tuple[int, ...]]] = {}
    for batch in batches.epoch(seed=0):
        for user, inputs, targets in zip(batch.users.tolist(), batch.inputs, batch.targets):
            n = int((targets > 0).sum())
            window = inputs[:n].tolist() + [int(targets[n - 1])]
            assert inputs[:n].tolist()[1:] == targets[: n - 1].tolist()
            seen.setdefault(user, []).append(tuple(window))
    for user, seq in enumerate(ml100k.sequences):
        train = seq[:-2].tolist()
        held_out_positions = {len(seq) - 2, len(seq) - 1}
        windows = seen.get(user, [])
        covered = 0
        for w in windows:
            # locate the window inside the training prefix: it must lie entirely within it
            starts = [i for i in range(len(train) - len(w) + 1) if tuple(train[i : i + len(w)]) == w]
            assert starts, f"user {user}: a training window is not part of the training prefix"
            assert max(starts) + len(w) - 1 < min(held_out_positions)
            covered += len(w) - 1
        expected = len(train) - 1 if mode == "all" else min(len(train) - 1, max_len)
        assert covered == expected


def test_evaluation_history_is_the_visible_past_only(ml100k, ml100k_split):
    rows = 0
    seen_rows = []
    for positions, batch in eval_batches(ml100k_split.test, max_len=50, batch_size=300):
        seen_rows.extend(positions.tolist())
        assert (batch.users.numpy() == ml100k_split.test.users[positions]).all()
        for r in range(len(batch.targets)):
            user = int(batch.users[r])
            seq = ml100k.sequences[user]
            n = int(batch.lengths[r])
            assert batch.history[r, :n].tolist() == seq[:-1][-50:].tolist()  # last 50 before the target
            assert (batch.history[r, n:] == 0).all()
            masked = batch.seen_items[batch.seen_rows == r]
            assert sorted(masked.tolist()) == sorted(seq[:-1].tolist())  # the full history, not the target
            rows += 1
    assert rows == ml100k.num_users and sorted(seen_rows) == list(range(rows))  # every example once


def test_global_time_split(ml100k):
    s = split_dataset(ml100k, "global_time", valid_fraction=0.1, test_fraction=0.1)
    stamps = np.concatenate(ml100k.timestamps)
    t_valid, t_test = np.quantile(stamps, [0.8, 0.9])
    for user, (seq, ts) in enumerate(zip(ml100k.sequences, ml100k.timestamps)):
        assert (ts[: len(s.train[user])] < t_valid).all()
        assert len(s.train[user]) == (ts < t_valid).sum()
    for user, history, target in zip(s.test.users, s.test.histories, s.test.targets):
        ts = ml100k.timestamps[user]
        assert ts[len(history)] >= t_test and (ts[: len(history)] < t_test).all()
        assert ml100k.sequences[user][len(history)] == target
    for user, history, target in zip(s.valid.users, s.valid.histories, s.valid.targets):
        ts = ml100k.timestamps[user]
        assert t_valid <= ts[len(history)] < t_test and len(history) == len(s.train[user])
    assert 0 < len(s.test) < ml100k.num_users


def test_split_errors_and_short_users():
    ds = SequenceDataset.from_sequences({"a": ["x", "y"], "b": ["x", "y", "z"]})
    s = split_dataset(ds)
    assert s.train[0].tolist() == [1, 2] and s.test.users.tolist() == [1]
    with pytest.raises(ConfigError, match="needs timestamps"):
        split_dataset(ds, "global_time")
    with pytest.raises(ConfigError, match="unknown split 'random'"):
        split_dataset(ds, "random")


def test_training_batches_are_deterministic_per_seed(ml100k_split):
    batches = TrainBatches(training_windows(ml100k_split.train, 50), batch_size=32)
    first = [b.inputs for b in batches.epoch(seed=3)]
    again = [b.inputs for b in batches.epoch(seed=3)]
    other = [b.inputs for b in batches.epoch(seed=4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other))
