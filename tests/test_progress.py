"""Progress bars: on stderr only when shown, silent when off, and no result depends on them."""
import numpy as np
import pytest
import torch

from memrec import progress
from memrec.config import NeighbourConfig, RunConfig
from memrec.data import SequenceDataset, split_dataset
from memrec.memory.neighbours import build_neighbours
from memrec.models import build_model
from memrec.train import Trainer
from memrec.train.evaluate import rank_evalset
from memrec.train.trainer import seed_everything


@pytest.fixture(autouse=True)
def immediate_bars(monkeypatch):
    monkeypatch.setattr(progress, "DELAY", 0.0)  # show bars at once and redraw them at every step: the steps here are short
    monkeypatch.setattr(progress, "REFRESH", 0.0)
    monkeypatch.delenv("MEMREC_PROGRESS", raising=False)


NUM_ITEMS = 40


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(0)
    users = {f"u{u}": [f"i{i}" for i in rng.permutation(NUM_ITEMS)[:12]] for u in range(60)}
    ds = SequenceDataset.from_sequences(users)
    assert ds.num_items == NUM_ITEMS
    return split_dataset(ds)


def train(split, shown: bool):
    config = RunConfig.from_dict({"model": "gru4rec", "data": {"max_len": 8}, "train": {"epochs": 2, "batch_size": 16, "seed": 5},
                                  "model_config": {"hidden_size": 16}})
    seed_everything(5)
    model = build_model("gru4rec", NUM_ITEMS, 8, config.model_config)
    result = Trainer(model, split, config, progress=shown).fit(log=lambda *_: None)
    return model, result


def test_training_and_evaluation_give_the_same_results_with_bars_shown_or_not(split, capsys):
    model_off, off = train(split, shown=False)
    assert capsys.readouterr().err == ""
    model_on, on = train(split, shown=True)
    err = capsys.readouterr().err
    assert "epoch 1" in err and "epoch 2" in err and "batch" in err and "evaluating" in err and "loss=" in err
    assert [(r.loss, r.valid) for r in off.history] == [(r.loss, r.valid) for r in on.history]
    assert all(torch.equal(model_off.state_dict()[k], model_on.state_dict()[k]) for k in model_off.state_dict())
    with progress.switched(True):
        shown = rank_evalset(model_on, split.test, 8, batch_size=7)
    assert "evaluating" in capsys.readouterr().err
    assert np.array_equal(shown, rank_evalset(model_on, split.test, 8, batch_size=7))


def test_the_neighbour_memory_build_shows_its_steps_and_builds_the_same_memory(split, capsys):
    reports, entries = [], []
    for shown in (False, True):
        torch.manual_seed(0)
        model = build_model("gru4rec", NUM_ITEMS, 8)
        with progress.switched(shown):
            reports.append(build_neighbours(model, split, 8, NeighbourConfig(enabled=True, ks=(4,)), batch_size=16, log=lambda *_: None))
        entries.append(model.neighbours.keys.clone())
        err = capsys.readouterr().err
        assert ("neighbour memory: keys" in err and "settings" in err) if shown else err == ""
    assert reports[0] == reports[1] and torch.equal(entries[0], entries[1])


def test_bars_follow_the_terminal_the_environment_and_the_switch(monkeypatch, capsys):
    assert not progress.shown()  # pytest's stderr is not a terminal
    list(progress.track(range(3), 3, "quiet"))
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("MEMREC_PROGRESS", "1")
    assert progress.shown()
    list(progress.track(range(3), 3, "asked for"))
    assert "asked for" in capsys.readouterr().err
    with progress.switched(False):  # a run's progress=False wins over the environment
        assert not progress.shown()
        with progress.switched(None):
            assert progress.shown()
        progress.note("not written")
    assert progress.shown(False) is False and capsys.readouterr().err == ""
    monkeypatch.setenv("MEMREC_PROGRESS", "off")
    assert not progress.shown()


def test_track_counts_by_size_and_closes_its_bar_when_the_loop_stops_early(capsys):
    with progress.switched(True):
        for i, batch in enumerate(progress.track([[1, 2], [3], [4, 5, 6]], 6, "users", size=len)):
            if i == 1:
                break
    err = capsys.readouterr().err
    assert "2/6" in err and "3/6" not in err  # counted the finished batch; the second was stopped in, the third never started


def test_the_assistant_memory_build_shows_its_users_and_builds_the_same_memory(capsys):
    from memrec.assist.deterministic import DeterministicReasoner
    from memrec.assist.memory import Record, build_memory

    histories = {f"u{i}": [Record(f"i{j}", f"glass beaker {j}", "Lab") for j in range(3)] for i in range(4)}
    encode = lambda texts: torch.arange(2.0 * len(texts)).reshape(len(texts), 2) + 1  # noqa: E731
    with progress.switched(False):
        quiet = build_memory(histories, DeterministicReasoner(), encode)
    assert capsys.readouterr().err == ""
    with progress.switched(True):
        shown = build_memory(histories, DeterministicReasoner(), encode)
    err = capsys.readouterr().err
    assert "local memory" in err and "4/4" in err and "embedding" in err
    assert quiet == shown
