"""The stream protocol on tiny data the tests write: test-then-learn order, batching, the standard
evaluator's ranks, new items apart, clear errors, the CLI's report and plot."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from memrec.data import SequenceDataset
from memrec.data.split import _eval_set
from memrec.stream import LeakError, StreamError, cut_dataset, replay
from memrec.errors import MemrecError
from memrec.stream.policies import Frozen, Neighbours, make_policy
from memrec.train.evaluate import rank_evalset

from .conftest import ITEMS, toy_checkpoint, toy_stream

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


def checkpoint(tmp_path, neighbours: bool):
    return toy_checkpoint(tmp_path, neighbours)


@pytest.mark.parametrize("neighbours", [False, True])
def test_batched_replay_equals_one_at_a_time(tmp_path, neighbours):
    before, stream = toy_stream()
    path = checkpoint(tmp_path, neighbours)
    make = (lambda: Neighbours(path, before, stream, sync_every=3)) if neighbours else (lambda: Frozen(path, before, stream))
    batched, single = replay(make(), stream, batch_size=256), replay(make(), stream, batch_size=1)
    assert batched.ranks.tolist() == single.ranks.tolist()
    if neighbours:  # the growing memory changed the ranks (and the memory as built did): the comparison is not vacuous
        frozen = replay(Frozen(path, before, stream), stream).ranks.tolist()
        assert batched.ranks.tolist() != frozen
        assert frozen != replay(make_policy("plain", path, before, stream), stream).ranks.tolist()


CASES = [("frozen", "gru4rec", False), ("plain", "gru4rec", True), ("neighbours", "gru4rec", True), ("user-memory", "ur4rec-moe", False),
         ("both", "ur4rec-moe", True), ("retrain", "gru4rec", False)]


def run(name, path, before, stream, batch_size=256, sync_every=1):
    policy = make_policy(name, path, before, stream, sync_every=sync_every, every_days=7 / 86400, epochs=1)  # retrain every 7 s of data time
    try:
        return replay(policy, stream, batch_size).ranks
    finally:
        policy.close()


@pytest.mark.parametrize("name,model,neighbours", CASES)
def test_no_ranking_reads_its_event_or_anything_after_it(tmp_path, name, model, neighbours):
    """Every event after position j replaced (other users, other items): the ranks up to j are the same."""
    path = toy_checkpoint(tmp_path, neighbours, model)
    before, stream = toy_stream()
    j = 30
    changed = stream[:j + 1] + toy_stream(seed=5)[1][j + 1:]
    ranks, other = run(name, path, before, stream, sync_every=3), run(name, path, before, changed, sync_every=3)
    assert ranks[:j + 1].tolist() == other[:j + 1].tolist()
    assert ranks[j + 1:].tolist() != other[j + 1:].tolist()  # the future did change what it ranks: the check is not vacuous


def test_the_user_memory_learns_online_and_batches_like_one_at_a_time(tmp_path):
    """user-memory and both: batched ranks equal one-at-a-time replay; the online memory changes the ranks
    (user-memory vs frozen), and so does the neighbour memory on top (both vs user-memory)."""
    before, stream = toy_stream()
    plain, nb = toy_checkpoint(tmp_path, False, "ur4rec-moe"), toy_checkpoint(tmp_path, True, "ur4rec-moe")
    memory = run("user-memory", plain, before, stream)
    assert memory.tolist() == run("user-memory", plain, before, stream, batch_size=1).tolist()
    assert memory.tolist() != run("frozen", plain, before, stream).tolist()
    both = run("both", nb, before, stream, sync_every=3)
    assert both.tolist() == run("both", nb, before, stream, batch_size=1, sync_every=3).tolist()
    assert both.tolist() != run("user-memory", nb, before, stream).tolist()


def test_user_memory_needs_a_model_that_keeps_one(tmp_path):
    before, stream = toy_stream()
    with pytest.raises(MemrecError, match="needs a model that keeps a per-user memory"):
        make_policy("user-memory", toy_checkpoint(tmp_path, False), before, stream)


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

    def spy(served, known, events):
        first = sum(checked)  # the stream position of events[0]
        for n, (k, e) in enumerate(zip(known, events)):
            past = stream[:first + n]
            assert [x.item for x in k.log] == [x.item for x in before.get(e.user, [])] + [s.item for s in past if s.user == e.user]
        assert len(served.growing) <= first  # at most one entry per event already scored
        checked.append(len(events))
        return real(served, known, events)

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
