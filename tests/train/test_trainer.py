"""The shared trainer: determinism, early stopping on validation NDCG@10, best weights kept, losses."""
import numpy as np
import pytest
import torch

from memrec.config import RunConfig
from memrec.data import split_dataset
from memrec.models import build_model
from memrec.train import Trainer, evaluate
from memrec.train.trainer import seed_everything


@pytest.fixture(scope="module")
def small_split(ml100k):
    """ML-100K users cut to their first 60 interactions: real data, quick epochs."""
    from memrec.data import SequenceDataset

    short = SequenceDataset(ml100k.name, ml100k.user_ids, ml100k.item_ids, [s[:60] for s in ml100k.sequences], None, ml100k.items)
    return split_dataset(short)


def fit(split, num_items, **train):
    config = RunConfig.from_dict({"model": "sasrec", "data": {"max_len": 20}, "train": {"batch_size": 128, **train}, "model_config": {"hidden_size": 32}})
    seed_everything(config.train.seed)
    model = build_model("sasrec", num_items, 20, config.model_config)
    trainer = Trainer(model, split, config, progress=False)
    return model, trainer, trainer.fit(log=lambda *_: None)


def test_same_seed_same_run(small_split, ml100k):
    a, _, ra = fit(small_split, ml100k.num_items, epochs=2, seed=7)
    b, _, rb = fit(small_split, ml100k.num_items, epochs=2, seed=7)
    c, _, rc = fit(small_split, ml100k.num_items, epochs=2, seed=8)
    assert [r.loss for r in ra.history] == [r.loss for r in rb.history]
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert ra.history[-1].loss != rc.history[-1].loss


def test_early_stopping_keeps_the_best_validation_weights(small_split, ml100k):
    # a learning rate this high makes validation worse after a while, so patience must end the run
    model, trainer, result = fit(small_split, ml100k.num_items, epochs=40, patience=3, lr=0.05)
    scores = [r.valid["ndcg@10"] for r in result.history]
    best = int(np.argmax(scores))
    assert result.best_epoch == best + 1 and len(result.history) == best + 1 + 3
    assert "no better validation ndcg@10 for 3 epochs" == result.stopped_because
    assert trainer.validate()["ndcg@10"] == pytest.approx(scores[best])  # the best weights were restored


@pytest.mark.parametrize("loss", ["ce", "sampled_softmax", "bpr"])
def test_every_loss_learns_better_than_chance(small_split, ml100k, loss):
    model, _, result = fit(small_split, ml100k.num_items, epochs=3, loss=loss, num_negatives=64, lr=0.005)
    chance = 10 / ml100k.num_items
    assert result.best_valid["hit@10"] > 5 * chance, result.best_valid
    assert result.history[-1].loss < result.history[0].loss


def test_time_limit_stops_training(small_split, ml100k):
    _, _, result = fit(small_split, ml100k.num_items, epochs=50, max_minutes=0.0)
    assert len(result.history) == 1 and result.stopped_because == "time limit of 0.0 minutes"


def test_ctrl_c_keeps_the_best_weights_and_ends_cleanly(small_split, ml100k):
    config = RunConfig.from_dict({"model": "sasrec", "data": {"max_len": 20}, "train": {"batch_size": 128, "epochs": 5}, "model_config": {"hidden_size": 32}})
    model = build_model("sasrec", ml100k.num_items, 20, config.model_config)
    trainer = Trainer(model, small_split, config, progress=False)
    real, calls = trainer.objective, []

    def interrupted_in_epoch_3(*args):
        calls.append(1)
        if len(calls) == 2 * len(trainer.batches) + 1:
            raise KeyboardInterrupt
        return real(*args)

    trainer.objective = interrupted_in_epoch_3
    result = trainer.fit(log=lambda *_: None)
    assert result.stopped_because == "interrupted during epoch 3" and len(result.history) == 2
    assert trainer.validate()["ndcg@10"] == pytest.approx(result.best_valid["ndcg@10"])
