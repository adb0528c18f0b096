"""The synthetic scale generator (benchmarks only): sizes, power-law popularity, sessions, bad input."""
import numpy as np
import pytest

from memrec.data import split_dataset
from memrec.data.synthetic import synthetic_dataset
from memrec.errors import ConfigError


@pytest.fixture(scope="module")
def ds():
    return synthetic_dataset(users=20_000, items=50_000, events=240_000, seed=3)


def test_sizes_and_every_user_is_evaluable(ds):
    assert (ds.num_users, ds.num_items) == (20_000, 50_000)
    assert abs(ds.num_interactions - 240_000) < 5_000
    assert min(len(s) for s in ds.sequences) >= 3
    split = split_dataset(ds)
    assert len(split.valid) == len(split.test) == 20_000
    assert all(s.min() >= 1 and s.max() <= 50_000 for s in ds.sequences[:1000])


def test_popularity_follows_a_power_law(ds):
    counts = np.sort(np.bincount(np.concatenate(ds.sequences), minlength=ds.num_items + 1)[1:])[::-1]
    top = counts[: ds.num_items // 100].sum() / counts.sum()
    assert top > 0.3  # the top 1% of items take a large share of events
    ranks = np.arange(1, 1001)
    slope = np.polyfit(np.log(ranks[9:]), np.log(np.maximum(counts[9:1000], 1)), 1)[0]
    assert -1.5 < slope < -0.4, slope  # log count falls linearly with log rank


def test_sessions_make_the_next_item_predictable(ds):
    pairs = {}
    for seq in ds.sequences[:3000]:
        for a, b in zip(seq[:-1], seq[1:]):
            pairs.setdefault(int(a), []).append(int(b))
    # an item's most frequent successor: far above chance when items follow items within sessions
    repeated = [max(np.bincount(nexts)) / len(nexts) for nexts in pairs.values() if len(nexts) >= 20]
    assert np.mean(repeated) > 0.15


def test_same_seed_same_data_and_bad_sizes_are_refused():
    a, b = synthetic_dataset(100, 40, 1000, seed=1), synthetic_dataset(100, 40, 1000, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    with pytest.raises(ConfigError, match="events >= 3 \\* users"):
        synthetic_dataset(users=100, items=40, events=200)
