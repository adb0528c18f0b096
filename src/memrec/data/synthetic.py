"""A synthetic data set for scale benchmarks only: never a source of accuracy figures.

Power-law item popularity and sessions: each user has ``3 + Geometric`` events (mean
``events / users``); an event starts a new session with probability ``1 / session_length`` (and at each
user's first event). A session starts at an item drawn by popularity (item rank r drawn with
probability proportional to ``(r + 1) ** -exponent``) and walks forward 1-3 ranks per event, so the
next item depends on the last one, as in real sessions. Ranks map to item indices through a seeded
permutation. 10^6 users, 10^6 items and 1.2 * 10^7 events take about 0.7 GiB and half a minute on one thread.

Example:
    >>> ds = synthetic_dataset(users=1000, items=50, events=10_000, seed=0)
    >>> ds.num_users, ds.num_items, round(ds.num_interactions, -3), min(len(s) for s in ds.sequences)
    (1000, 50, 10000, 3)
"""
from __future__ import annotations

import numpy as np

from memrec.data.dataset import PAD_ID, ItemInfo, SequenceDataset
from memrec.errors import ConfigError


def synthetic_dataset(users: int = 1_000_000, items: int = 1_000_000, events: int = 12_000_000, exponent: float = 1.0,
                      session_length: float = 5.0, seed: int = 0) -> SequenceDataset:
    """The data set described above (user ids ``u0..``, item ids ``i0..``, no timestamps)."""
    if users < 1 or items < 2 or events < 3 * users or exponent <= 0 or session_length < 1:
        raise ConfigError(f"synthetic data: expected users >= 1, items >= 2, events >= 3 * users, exponent > 0 and session_length >= 1, "
                          f"got users={users} items={items} events={events} exponent={exponent} session_length={session_length}")
    rng = np.random.default_rng(seed)
    mean_extra = events / users - 3.0  # the geometric part of each length
    lengths = 3 + (rng.geometric(1.0 / (mean_extra + 1.0), users) - 1 if mean_extra > 0 else np.zeros(users, dtype=np.int64))
    starts = np.zeros(users + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    total = int(starts[-1])
    first = np.zeros(total, dtype=bool)
    first[starts[:-1]] = True
    new_session = first | (rng.random(total) < 1.0 / session_length)  # (E,)
    session = np.cumsum(new_session) - 1  # (E,) session of each event
    del first
    popularity = np.arange(1, items + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(popularity / popularity.sum())
    del popularity
    session_rank = np.searchsorted(cdf, rng.random(int(session[-1]) + 1), side="right").clip(max=items - 1)  # (S,)
    del cdf
    steps = rng.integers(1, 4, total, dtype=np.int64)  # (E,)
    steps[new_session] = 0
    walked = np.cumsum(steps)
    walked -= walked[np.flatnonzero(new_session)][session]  # ranks walked since the session began
    del steps, new_session
    rank = (session_rank[session] + walked) % items
    del walked, session, session_rank
    sequence = (rng.permutation(items)[rank] + 1).astype(np.int64)  # (E,) item indices 1..N
    del rank
    return SequenceDataset(f"synthetic-{users}u-{items}i", [f"u{u}" for u in range(users)], [PAD_ID] + [f"i{i}" for i in range(items)],
                           np.split(sequence, starts[1:-1]), None, ItemInfo.empty(items),
                           source="memrec.data.synthetic (benchmarks only, never accuracy)")
