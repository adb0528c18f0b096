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

The events between two applications of a policy (a sync of the neighbour memory, a retraining) are
ranked in one batch, each from what its user's log and memory held just before it (a user's
consecutive events included); each row's score does not depend on the batch
(:func:`~memrec.train.evaluate.padded_scores`), so the ranks are those of one-at-a-time replay
(``batch_size=1``).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import numpy as np
import torch

from memrec.data.batching import make_eval_batch
from memrec.errors import MemrecError
from memrec.store.events import Event
from memrec.train.evaluate import MIN_ROWS, padded_scores, rank_targets


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


@dataclass(frozen=True)
class Known:
    """What the system knows of a user just before one of their events: their log and stored memory
    (None for a model without one), read from the policy's store before the event is applied."""

    user: str
    log: list[Event]
    memory: object | None  # memrec.memory.user_memory.UserMemory


def served_scores(served, batch, states: torch.Tensor | None = None) -> torch.Tensor:
    """Scores (B, N + 1) as :meth:`ServedModel.recommend` computes them (``model.serve_scores`` with each
    row's stored memory, ``states`` (B, D), for a model that keeps one), padded like
    :func:`~memrec.train.evaluate.padded_scores` so every row's scores do not depend on the batch."""
    if not served.has_memory:
        return padded_scores(served.model, batch)
    n = len(batch.targets)
    if n < MIN_ROWS:
        extra = MIN_ROWS - n
        batch = replace(batch, users=torch.cat([batch.users, batch.users[:1].expand(extra)]),
                        history=torch.cat([batch.history, batch.history.new_zeros(extra, batch.history.size(1))]),
                        lengths=torch.cat([batch.lengths, batch.lengths.new_zeros(extra)]))
        states = torch.cat([states, states[:1].expand(extra, -1)])
    return served.model.serve_scores(batch, states)[0][:n]


@torch.inference_mode()
def rank_events(served, known: list[Known], events: list[StreamEvent]) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of ``events`` under ``served``, each read with what was known just before it (``known``:
    the log and memory, as :meth:`ServedModel.recommend` reads them: known items of the log, the
    user's owner index, the stored memory or a new one)."""
    is_known = np.array([e.item in served.index for e in events])
    seen = [np.array([served.index[x.item] for x in k.log if x.item in served.index], dtype=np.int64) for k in known]
    users = np.array([served.users.get(e.user, served.newcomers.get(e.user, -1)) for e in events])
    targets = np.array([served.index.get(e.item, 1) for e in events])  # an unknown item: any column, overwritten below
    batch = make_eval_batch(users, seen, targets, served.max_len)
    states = None
    if served.has_memory:
        states = torch.from_numpy(np.stack([(k.memory or served.cell.new_memory()).vector for k in known]))  # (B, D)
    ranks = rank_targets(served_scores(served, batch, states), batch).numpy()
    return np.where(is_known, ranks, served.num_items), ~is_known


def _past(policy, user: str, scored: int) -> list[Event]:
    """The user's log in the policy's store, which must hold exactly ``scored`` events (else LeakError)."""
    log = policy.store.history(user)
    if len(log) != scored:
        raise LeakError(f"policy {policy.name!r} held an event of user {user!r} before it was scored")
    return log


def replay(policy, stream: list[StreamEvent], batch_size: int = 256) -> Replay:
    """Test, then learn, for every event of ``stream`` in order. ``policy`` has ``served``, ``store``,
    ``observe(event)`` (append it to the log, update the user's memory), ``due(i)`` (apply after event
    i?) and ``apply()`` (what changes the model or the shared memory: a sync, a retraining).

    The events between two applications are ranked in one batch. Before the batch, each of its users'
    logs is read from the store and checked to hold exactly the events already scored (else
    :class:`LeakError`); before event i is applied, its user's stored memory is read; event i is
    ranked from those (:class:`Known`: the log read plus the batch's earlier events of that user,
    which the store then holds too). Nothing else a ranking reads changes within a batch (``apply``
    runs after it), so the ranks are those of one-at-a-time replay (``batch_size=1``).

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
        rows = [i]
        while len(rows) < batch_size and rows[-1] + 1 < n and not policy.due(rows[-1]):
            rows.append(rows[-1] + 1)
        tic = time.perf_counter()
        logs = {user: _past(policy, user, logged[user]) for user in dict.fromkeys(stream[j].user for j in rows)}
        rank_seconds += time.perf_counter() - tic
        known = []
        for j in rows:
            e = stream[j]
            tic = time.perf_counter()
            memory = policy.store.get(e.user) if policy.served.has_memory else None  # the stored memory, before e
            known.append(Known(e.user, list(logs[e.user]), memory))
            rank_seconds += time.perf_counter() - tic
            tic = time.perf_counter()
            policy.observe(e)
            logs[e.user].append(Event(e.item, e.timestamp))  # the store's log now: the past and e
            logged[e.user] += 1
            apply_seconds += time.perf_counter() - tic
        tic = time.perf_counter()
        for user in logs:  # the batch's events are in, and nothing after them
            _past(policy, user, logged[user])
        ranks[rows], new_item[rows] = rank_events(policy.served, known, [stream[j] for j in rows])
        rank_seconds += time.perf_counter() - tic
        tic = time.perf_counter()
        if policy.due(rows[-1]):
            policy.apply()
        apply_seconds += time.perf_counter() - tic
        i = rows[-1] + 1
    return Replay(ranks, new_item, rank_seconds, apply_seconds)
