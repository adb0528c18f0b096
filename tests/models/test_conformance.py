"""Conformance tests every registered model must pass (run on real ML-100K histories)."""
import numpy as np
import pytest
import torch

from memrec.config import RunConfig
from memrec.data.batching import TrainBatches, make_eval_batch, training_windows
from memrec.errors import UnknownItemError
from memrec.models import MODELS, build_model
from memrec.train.checkpoint import load_checkpoint, save_checkpoint
from memrec.train.evaluate import rank_evalset
from memrec.train.losses import make_objective

MAX_LEN = 20


@pytest.fixture(params=sorted(MODELS))
def model(request, ml100k, ml100k_split):
    torch.manual_seed(0)
    model = build_model(request.param, ml100k.num_items, MAX_LEN)
    model.prepare(ml100k, ml100k_split)
    return model.eval()


def batch_of(histories, max_len=MAX_LEN):
    return make_eval_batch(np.arange(len(histories)), [np.asarray(h, dtype=np.int64) for h in histories], np.ones(len(histories), dtype=np.int64), max_len)


def test_save_and_load_give_the_same_scores(model, ml100k, ml100k_split, tmp_path):
    config = RunConfig.from_dict({"model": model.name, "data": {"max_len": MAX_LEN}})
    save_checkpoint(tmp_path / "m.pt", model, config, ml100k)
    loaded = load_checkpoint(tmp_path / "m.pt")
    batch = batch_of(ml100k_split.test.histories[:50])
    assert torch.equal(loaded.model.score_all(batch), model.score_all(batch))
    assert loaded.config == config and loaded.item_ids == ml100k.item_ids
    loaded.check_dataset(ml100k)


def test_unknown_item_ids_are_refused(model, ml100k):
    with pytest.raises(UnknownItemError, match=f"item index {ml100k.num_items + 1} is out of range: this model knows items 1..{ml100k.num_items}"):
        model.score_all(batch_of([[1, 2, ml100k.num_items + 1]]))
    with pytest.raises(UnknownItemError, match="out of range"):
        model.score_all(batch_of([[-3]]))
    with pytest.raises(UnknownItemError):
        ml100k.item_index("no-such-movie")


def test_empty_history_and_unknown_user_get_finite_scores(model, ml100k):
    scores = model.score_all(batch_of([[], [5, 6]]))  # an unknown user has an empty history
    assert scores.shape == (2, ml100k.num_items + 1)
    assert torch.isfinite(scores).all()
    items, _ = model.recommend(batch_of([[]]), k=10)
    assert items.shape == (1, 10) and (items > 0).all()


def test_padding_does_not_change_scores(model):
    history = torch.tensor([[4, 8, 15, 16]])
    short = model.encode(history, torch.tensor([4]))
    padded = model.encode(torch.cat([history, torch.zeros(1, 6, dtype=torch.long)], 1), torch.tensor([4]))
    assert torch.allclose(short, padded, atol=1e-6)


def test_positions_are_causal(model):
    """The hidden state at position t must not depend on later items (training relies on it)."""
    a = model.encode_positions(torch.tensor([[4, 8, 15, 16, 23]]))
    b = model.encode_positions(torch.tensor([[4, 8, 15, 99, 42]]))
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-6)
    assert not torch.allclose(a[:, 3:], b[:, 3:], atol=1e-4)


def test_encode_last_matches_every_position(model):
    items = torch.tensor([[4, 8, 15, 16, 23], [7, 9, 0, 0, 0]])
    every = model.encode_positions(items)
    last = model.encode_last(items, torch.tensor([4, 1]))
    assert torch.allclose(last, every[[0, 1], [4, 1]], atol=1e-5)


def test_batch_size_does_not_change_rankings(model, ml100k_split):
    evalset = ml100k_split.test.subset(np.arange(100))
    reference = rank_evalset(model, evalset, MAX_LEN, batch_size=100)
    for batch_size in (1, 3, 33):
        assert np.array_equal(rank_evalset(model, evalset, MAX_LEN, batch_size), reference)


def test_training_steps_lower_the_loss(model, ml100k_split):
    batches = TrainBatches(training_windows(ml100k_split.train[:200], MAX_LEN), batch_size=64)
    objective = make_objective("ce")
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    first = [b for b in batches.epoch(0)][:4]
    before = float(np.mean([model.loss(b, objective).item() for b in first]))
    for _ in range(3):
        for batch in batches.epoch(1):
            optimizer.zero_grad()
            model.loss(batch, objective).backward()
            optimizer.step()
    after = float(np.mean([model.loss(b, objective).item() for b in first]))
    assert after < before - 0.3, (before, after)
