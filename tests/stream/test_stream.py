"""The stream protocol on tiny data the tests write: test-then-learn order, batching, the standard
evaluator's ranks, new items apart, clear errors, the CLI's report and plot."""
from __future__ import annotations

import json
import os
import types

import numpy as np
import pytest
import torch

from memrec.config import RunConfig
from memrec.data import SequenceDataset
from memrec.data.split import _eval_set
from memrec.models import build_model
from memrec.store.events import Event
from memrec.stream import LeakError, StreamError, cut_dataset, replay
from memrec.stream.policies import Frozen, Neighbours
from memrec.stream.protocol import StreamEvent
from memrec.train.checkpoint import save_checkpoint
from memrec.train.evaluate import rank_evalset

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
ITEMS = [f"i{n}" for n in range(1, 13)]


def toy_stream(seed: int = 0, n: int = 60):
    """Six users with pasts, two newcomers, a stream with repeats of users and one unknown item."""
    rng = np.random.default_rng(seed)
    users = [f"u{k}" for k in range(6)]
    before = {u: [Event(str(it), float(t)) for t, it in enumerate(rng.choice(ITEMS, 4, replace=False))] for u in users}
    stream = [StreamEvent(str(rng.choice(users + ["new1", "new2"])), str(rng.choice(ITEMS)), 10.0 + t) for t in range(n)]
    stream[7] = StreamEvent(stream[7].user, "unseen-item", stream[7].timestamp)
    return before, stream


def checkpoint(tmp_path, neighbours: bool):
    torch.manual_seed(0)
    model = build_model("gru4rec", len(ITEMS), 5).eval()
    users = [f"u{k}" for k in range(6)]
    if neighbours:
        model.neighbours.build(torch.randn(12, 64), torch.randint(1, len(ITEMS) + 1, (12, 2)), torch.arange(12) % 6)
        model.neighbours.set(k=4, temperature=0.3, weight=0.5)
    ds = types.SimpleNamespace(item_ids=["[PAD]"] + ITEMS, user_ids=users, fingerprint=lambda: "toy")
    path = tmp_path / ("nb.pt" if neighbours else "plain.pt")
    save_checkpoint(path, model, RunConfig.from_dict({"model": "gru4rec", "data": {"max_len": 5}}), ds)
    return path


@pytest.mark.parametrize("neighbours", [False, True])
def test_batched_replay_equals_one_at_a_time(tmp_path, neighbours):
    before, stream = toy_stream()
    path = checkpoint(tmp_path, neighbours)
    make = (lambda: Neighbours(path, before, stream, sync_every=3)) if neighbours else (lambda: Frozen(path, before, stream))
    batched, single = replay(make(), stream, batch_size=256), replay(make(), stream, batch_size=1)
    assert batched.ranks.tolist() == single.ranks.tolist()
    if neighbours:  # the growing memory changed the ranks: the comparison is not vacuous
        assert batched.ranks.tolist() != replay(Frozen(path, before, stream), stream).ranks.tolist()


class Peeking(Frozen):
    """Cheats: at each application it writes the next event into the store before it is scored."""

    def due(self, i):
        return True

    def apply(self):
        self.seen = getattr(self, "seen", 0) + 1
        if self.seen < len(self.stream):
            super().observe(self.stream[self.seen])


def test_a_policy_that_sees_an_event_before_it_is_scored_is_caught(tmp_path):
    before, stream = toy_stream()
    with pytest.raises(LeakError, match="before it was scored"):
        replay(Peeking(checkpoint(tmp_path, False), before, stream), stream)


def test_the_scored_event_is_never_in_the_log_or_memory_when_ranked(tmp_path):
    before, stream = toy_stream()
    policy = Neighbours(checkpoint(tmp_path, True), before, stream, sync_every=1)
    import memrec.stream.protocol as protocol

    real, checked = protocol.rank_events, []

    def spy(served, store, events):
        for e in events:
            log = store.history(e.user)
            assert len(log) == len(before.get(e.user, [])) + sum(s.user == e.user for s in stream[:stream.index(e)])
        scored = stream.index(events[0])
        assert len(served.growing) <= scored  # at most one entry per event already scored
        checked.append(len(events))
        return real(served, store, events)

    protocol.rank_events = spy
    try:
        replay(policy, stream)
    finally:
        protocol.rank_events = real
    assert sum(checked) == len(stream)


def test_frozen_stream_ranks_equal_the_standard_evaluator(tmp_path):
    before, stream = toy_stream()
    policy = Frozen(checkpoint(tmp_path, False), before, stream)
    out = replay(policy, stream)
    index = policy.served.index
    rows, logs = [], {u: [index[e.item] for e in events] for u, events in before.items()}
    for e in stream:
        if e.item in index:
            rows.append((-1, np.array(logs.get(e.user, []), dtype=np.int64), index[e.item]))
        if e.item in index:
            logs.setdefault(e.user, []).append(index[e.item])
    expected = rank_evalset(policy.served.model, _eval_set(rows), max_len=5)
    assert out.ranks[~out.new_item].tolist() == expected.tolist()


def test_new_items_are_counted_apart_as_misses(tmp_path):
    before, stream = toy_stream()
    out = replay(Frozen(checkpoint(tmp_path, False), before, stream), stream)
    assert out.new_item.tolist() == [e.item == "unseen-item" for e in stream]
    assert out.ranks[7] == len(ITEMS)  # a miss, kept in the denominator


def test_clear_errors():
    ds = SequenceDataset.from_sequences({"u": ["a", "b", "c"]})
    with pytest.raises(StreamError, match="no timestamps"):
        cut_dataset(ds, 0.8)
    ds.timestamps = [np.array([1.0, 2.0, 3.0])]
    with pytest.raises(StreamError, match="no events after"):
        cut_dataset(ds, "2000-01-01")
    with pytest.raises(StreamError, match="no events before"):
        cut_dataset(ds, "1")  # a timestamp: nothing before it


def test_cli_writes_report_and_plot(tmp_path):
    from memrec.cli import main

    rng = np.random.default_rng(1)
    rows = "".join(f"u{u},i{rng.integers(1, 15)},{u * 3 + 40 * j}\n" for u in range(12) for j in range(8))
    (tmp_path / "clicks.csv").write_text("user,item,timestamp\n" + rows)
    out = tmp_path / "run"
    code = main(["stream", "--model", "gru4rec", "--dataset", str(tmp_path / "clicks.csv"), "--cut", "0.7", "--memory", "off",
                 "--policies", "frozen,retrain", "--retrain-days", "0.001", "--retrain-epochs", "1", "--buckets", "3",
                 "--output", str(out), "--train.epochs=1", "--model_config.hidden_size=8"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["policies"]) == {"frozen", "retrain"}
    assert report["policies"]["retrain"]["cost"]["applications"] >= 1
    assert len(report["policies"]["frozen"]["buckets"]) == 3
    assert (out / "stream.png").stat().st_size > 0
    assert main(["stream", "--dataset", str(tmp_path / "clicks.csv"), "--policies", "frozen,magic", "--output", str(out)]) == 2
