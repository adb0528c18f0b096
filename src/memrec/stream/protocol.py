"""The stream protocol: cut a time-stamped data set at T, then replay every later event in time order.

Before each event the system ranks the whole catalogue for that user with what it knows at that
moment (test), the event's item is scored, and only then is the event applied (learn). A policy
(:mod:`memrec.stream.policies`) owns a :class:`~memrec.serve.model.ServedModel` and a store holding
each user's event log, the service's own objects; it never receives an event before it is scored:
:func:`replay` ranks from the store and the model, computes the target's rank itself, and refuses a
policy whose store already holds an event that has not been scored yet (:class:`LeakError`).

Ranking is the standard protocol's (:func:`~memrec.train.evaluate.rank_targets`): full catalogue,
the user's whole history masked (a repeat of a seen item is a miss), ties pessimistic. An event
whose item the model does not know (first seen after T) cannot be ranked: it counts as a miss and
is flagged, never dropped.

Events of different users between two applications of a policy are ranked in one batch; each row's
score does not depend on the batch (:func:`~memrec.train.evaluate.padded_scores`), so the ranks are
those of one-at-a-time replay (``batch_size=1``).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import torch

from memrec.data.batching import make_eval_batch
from memrec.errors import MemrecError
from memrec.store.events import Event
from memrec.train.evaluate import padded_scores, rank_targets


class StreamError(MemrecError, ValueError):
    """The data set cannot be streamed as asked (no timestamps, a cut leaving no events)."""


class LeakError(MemrecError, RuntimeError):
    """A policy held an event before it was scored."""


@dataclass(frozen=True)
class StreamEvent:
    user: str
    item: str
    timestamp: float


@dataclass
class Cut:
    """A data set cut at ``time``: each user's events before it (raw ids, time order) and the stream after."""

    time: float
    before: dict[str, list[Event]]
    stream: list[StreamEvent]


def cut_time(stamps: np.ndarray, cut: float | str) -> float:
    """T from a quantile of the time line (a float in (0, 1)) or a date (``YYYY-MM-DD``, UTC).

    Example:
        >>> cut_time(np.arange(10.0), 0.8), cut_time(np.array([0.0]), "1970-01-02")
        (7.2, 86400.0)
    """
    if isinstance(cut, str):
        try:
            cut = float(cut)
        except ValueError:
            pass
        else:
            return cut_time(stamps, cut) if 0 < cut < 1 else cut  # a quantile, else a timestamp
        try:
            day = dt.datetime.strptime(cut, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            raise StreamError(f"--cut {cut!r}: expected a quantile of the time line in (0, 1) or a date YYYY-MM-DD") from None
        return day.timestamp()
    if not 0 < cut < 1:
        raise StreamError(f"--cut {cut}: a quantile of the time line must lie in (0, 1)")
    return float(np.quantile(stamps, cut))


def cut_dataset(ds, cut: float | str) -> Cut:
    """Split ``ds`` (a :class:`~memrec.data.SequenceDataset` with timestamps) at T: events at t < T are
    the past, the rest the stream in time order (ties: by user, then each user's own order).

    Example:
        >>> from memrec.data import SequenceDataset
        >>> ds = SequenceDataset.from_sequences({"u": ["a", "b", "c"], "v": ["b", "d"]})
        >>> ds.timestamps = [np.array([1.0, 2.0, 5.0]), np.array([3.0, 4.0])]
        >>> c = cut_dataset(ds, "3.5")
        >>> [e.item for e in c.before["u"]], [(e.user, e.item) for e in c.stream]
        (['a', 'b'], [('v', 'd'), ('u', 'c')])
    """
    if ds.timestamps is None:
        raise StreamError(f"data set {ds.name!r} has no timestamps: the stream protocol replays events on the time line and needs them "
                          "(ml-100k has them; the S3-Rec and Amazon files do not)")
    T = cut_time(np.concatenate(ds.timestamps), cut)
    before, rows = {}, []
    for user, seq, ts in zip(ds.user_ids, ds.sequences, ds.timestamps):
        early = [Event(ds.item_ids[i], float(t)) for i, t in zip(seq, ts) if t < T]
        if early:
            before[user] = early
        rows += [(float(t), user, pos, ds.item_ids[i]) for pos, (i, t) in enumerate(zip(seq, ts)) if t >= T]
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    stream = [StreamEvent(u, item, t) for t, u, _, item in rows]
    if not before:
        raise StreamError(f"cut {cut!r} (T={T:.0f}) leaves no events before it to train on")
    if not stream:
        raise StreamError(f"cut {cut!r} (T={T:.0f}) leaves no events after it to replay")
    return Cut(T, before, stream)


@dataclass
class Replay:
    """Per stream event: its 0-based rank (``num_items`` for an item the model does not know) and flags."""

    ranks: np.ndarray
    new_item: np.ndarray  # the model could not rank it: its item is unknown to the checkpoint
    rank_seconds: float
    apply_seconds: float


@torch.inference_mode()
def rank_events(served, store, events: list[StreamEvent]) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of ``events`` (distinct users) under ``served`` reading each user's log in ``store``, as
    :meth:`ServedModel.recommend` scores them (known items of the log, the user's owner index)."""
    known = np.array([e.item in served.index for e in events])
    logs = [store.history(e.user) for e in events]
    seen = [np.array([served.index[x.item] for x in log if x.item in served.index], dtype=np.int64) for log in logs]
    users = np.array([served.users.get(e.user, served.newcomers.get(e.user, -1)) for e in events])
    targets = np.array([served.index.get(e.item, 1) for e in events])  # an unknown item: any column, overwritten below
    batch = make_eval_batch(users, seen, targets, served.max_len)
    ranks = rank_targets(padded_scores(served.model, batch), batch).numpy()
    return np.where(known, ranks, served.num_items), ~known


def replay(policy, stream: list[StreamEvent], batch_size: int = 256) -> Replay:
    """Test, then learn, for every event of ``stream`` in order. ``policy`` has ``served``, ``store``,
    ``observe(event)`` (append it to the log), ``due(i)`` (apply after event i?) and ``apply()``.

    Example:
        >>> from memrec.stream.policies import _toy_policy
        >>> policy, stream = _toy_policy()
        >>> out = replay(policy, stream)
        >>> out.ranks.tolist() == replay(_toy_policy()[0], stream, batch_size=1).ranks.tolist()
        True
    """
    import time

    n = len(stream)
    ranks, new_item = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    logged = {u: len(policy.store.history(u)) for u in {e.user for e in stream}}
    rank_seconds = apply_seconds = 0.0
    i = 0
    while i < n:
        rows, users = [i], {stream[i].user}
        while (len(rows) < batch_size and rows[-1] + 1 < n and not policy.due(rows[-1])
               and stream[rows[-1] + 1].user not in users):
            rows.append(rows[-1] + 1)
            users.add(stream[rows[-1]].user)
        events = [stream[j] for j in rows]
        tic = time.perf_counter()
        for e in events:  # what the policy holds for these users must be the past only
            if len(policy.store.history(e.user)) != logged[e.user]:
                raise LeakError(f"policy {policy.name!r} held an event of user {e.user!r} before it was scored")
        ranks[rows], new_item[rows] = rank_events(policy.served, policy.store, events)
        rank_seconds += time.perf_counter() - tic
        tic = time.perf_counter()
        for e in events:
            policy.observe(e)
            logged[e.user] += 1
        if policy.due(rows[-1]):
            policy.apply()
        apply_seconds += time.perf_counter() - tic
        i = rows[-1] + 1
    return Replay(ranks, new_item, rank_seconds, apply_seconds)
