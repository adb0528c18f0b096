"""SASRec's backbone options (issue 19): positions counted from the end, training on prefixes, no
dropout inside the feed-forward; each keeps the model's contracts and changes what it should."""
import numpy as np
import pytest
import torch

from memrec.data.batching import TrainBatches, make_eval_batch, training_windows
from memrec.errors import ConfigError
from memrec.models import build_model
from memrec.models.base import SequentialRecommender
from memrec.models.sasrec import SASRecConfig
from memrec.train.losses import make_objective

MAX_LEN = 6


def sasrec(**options):
    torch.manual_seed(0)
    return build_model("sasrec", 40, MAX_LEN, SASRecConfig(hidden_size=16, num_heads=2, inner_size=32, **options))


def test_from_end_puts_the_last_item_at_the_last_position_embedding():
    model = sasrec(positions="from_end")
    items = torch.tensor([[5, 6, 0, 0], [7, 8, 9, 10]])
    assert torch.equal(model.positions(items), model.pos_emb.weight[torch.tensor([[4, 5, 5, 5], [2, 3, 4, 5]])])
    assert torch.equal(sasrec().positions(items), sasrec().pos_emb.weight[:4])  # from_start: position t is embedding t


def test_from_end_scores_a_history_the_same_whatever_its_padding():
    model = sasrec(positions="from_end").eval()
    history = np.array([3, 4, 5])
    narrow, wide = (make_eval_batch(np.array([0]), [history], np.array([1]), width) for width in (3, MAX_LEN))
    assert torch.allclose(model.score_all(narrow), model.score_all(wide), atol=1e-5)
    state = model.encode(wide.history, wide.lengths)
    model.config.positions = "from_start"  # the same weights reading the last item at position 2, not 5
    assert not torch.allclose(model.encode(wide.history, wide.lengths), state, atol=1e-2)


def test_prefix_batches_train_each_row_at_its_last_item_only_and_match_the_generic_loss():
    train = [np.arange(1, 9), np.array([3, 4]), np.array([5])]
    windows = training_windows(train, max_len=3, mode="prefixes")
    assert [w[-1] for _, _, w in windows] == list(range(2, 9)) + [4]  # every target once, one user of 1 item has none
    assert all(len(w) <= 4 for _, _, w in windows)
    batch = next(TrainBatches(windows, batch_size=16, last_only=True).epoch(0))
    assert batch.last_only and ((batch.targets > 0).sum(1) == 1).all()
    last = (batch.inputs > 0).sum(1) - 1
    assert sorted(batch.targets[torch.arange(len(last)), last].tolist()) == sorted(int(w[-1]) for _, _, w in windows)
    model = sasrec(positions="from_end").eval()  # no dropout: both paths compute the same function
    objective = make_objective("ce", 1)
    assert torch.allclose(model.loss(batch, objective), SequentialRecommender.loss(model, batch, objective), atol=1e-5)


def test_inner_dropout_zero_removes_only_the_feed_forward_dropout():
    assert sasrec().encoder.blocks[0].ff[2].p == 0.2
    assert sasrec(inner_dropout=0.0).encoder.blocks[0].ff[2].p == 0.0
    assert sasrec(inner_dropout=0.0).encoder.blocks[0].dropout.p == 0.2


def test_unknown_position_scheme_is_one_clear_error():
    with pytest.raises(ConfigError, match="from_start, from_end"):
        SASRecConfig(positions="relative")
