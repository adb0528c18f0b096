import pytest
import torch
import torch.nn.functional as F

from memrec.train.losses import BPR, FullSoftmax, SampledSoftmax, make_objective
from memrec.errors import ConfigError


@pytest.mark.parametrize("rows", [1, 255, 256, 600])  # below, at and across chunk boundaries
def test_full_softmax_matches_cross_entropy_in_value_and_gradients(rows):
    torch.manual_seed(rows)
    hidden = torch.randn(rows, 8, requires_grad=True)
    items = torch.randn(40, 8, requires_grad=True)
    targets = torch.randint(1, 40, (rows,))

    loss = FullSoftmax()(hidden, targets, items)
    (loss * 3.0).backward()  # a non-unit upstream gradient must be applied too
    grads = hidden.grad.clone(), items.grad.clone()
    hidden.grad, items.grad = None, None

    expected = F.cross_entropy(hidden @ items[1:].T, targets - 1)
    (expected * 3.0).backward()
    assert torch.allclose(loss, expected, atol=1e-5)
    assert torch.allclose(grads[0], hidden.grad, atol=1e-5)
    assert torch.allclose(grads[1], items.grad, atol=1e-5)
    assert grads[1][0].abs().sum() == 0  # padding row never receives a gradient


@pytest.mark.parametrize("objective", [FullSoftmax(), SampledSoftmax(16), BPR()])
def test_objectives_prefer_the_target(objective):
    torch.manual_seed(0)
    items = torch.randn(50, 16)
    targets = torch.randint(1, 50, (64,))
    aligned = objective(items[targets] * 5, targets, items)
    random = objective(torch.randn(64, 16), targets, items)
    assert aligned < random


def test_unknown_loss_is_refused():
    with pytest.raises(ConfigError, match="expected one of"):
        make_objective("hinge")


def _average_gradient(objective, hidden, targets, items, draws):
    total = torch.zeros_like(hidden)
    for seed in range(draws):
        torch.manual_seed(seed)
        h = hidden.clone().requires_grad_(True)
        objective(h, targets, items).backward()
        total += h.grad
    return total / draws


@pytest.mark.parametrize("sampler, ratio", [("popularity", 0.7), ("in_batch", 0.9)])  # in_batch: one batch, so no averaging over draws
def test_logq_correction_brings_the_sampled_gradient_to_full_cross_entropy(sampler, ratio):
    # a skewed catalogue: popular items are drawn often, so without the correction they are over-penalised
    torch.manual_seed(0)
    n, d, rows = 300, 16, 256
    counts = torch.cat([torch.zeros(1), (1000.0 / torch.arange(1, n + 1) ** 1.2).round()]).long()  # (N + 1,), a power law
    items = torch.randn(n + 1, d) * 0.5
    targets = torch.multinomial(counts.float(), rows, replacement=True)  # popular targets, as in real data
    hidden = torch.randn(rows, d)
    full = _average_gradient(FullSoftmax(), hidden, targets, items, 1)
    error = {}
    for logq in (True, False):
        sampled = _average_gradient(SampledSoftmax(64, sampler, logq, counts), hidden, targets, items, 100)
        error[logq] = float((sampled - full).norm() / full.norm())
    assert error[True] < ratio * error[False], error  # measured 0.21 vs 0.37 (popularity), 0.37 vs 0.43 (in_batch)


def test_in_batch_never_counts_the_target_again_as_a_negative():
    items = torch.randn(6, 4)
    hidden = torch.randn(4, 4)
    counts = torch.tensor([0, 5, 5, 5, 5, 5])
    loss = SampledSoftmax(1, "in_batch", logq=False, counts=counts)
    # every position has the same target: no negatives remain, so each row's softmax is certain
    assert float(loss(hidden, torch.tensor([2, 2, 2, 2]), items)) == pytest.approx(0.0, abs=1e-6)


def test_popularity_sampler_draws_by_training_counts():
    counts = torch.tensor([0, 99, 0, 0])  # item 1 is popular; items 2 and 3 have only the add-one
    loss = SampledSoftmax(10_000, "popularity", counts=counts)
    torch.manual_seed(0)
    drawn = torch.multinomial(loss.probs, 10_000, replacement=True)
    assert 0 not in drawn.tolist()  # never padding
    assert abs((drawn == 1).float().mean().item() - 100 / 102) < 0.01


@pytest.mark.parametrize("kwargs, message", [({"sampler": "zipf"}, "train.sampler: expected one of"),
                                              ({"sampler": "popularity"}, "needs the items' training counts"),
                                              ({"num_negatives": 0}, "train.num_negatives")])
def test_bad_sampled_softmax_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_objective("sampled_softmax", **{"num_negatives": 8, **kwargs})


def test_the_trainer_reads_the_sampler_from_the_run_config():
    import numpy as np

    from memrec.config import RunConfig
    from memrec.data import SequenceDataset, split_dataset
    from memrec.models import build_model
    from memrec.train import Trainer

    ds = SequenceDataset.from_sequences({f"u{i}": [f"i{(i + j) % 30}" for j in range(8)] for i in range(40)})
    config = RunConfig.from_dict({"data": {"max_len": 6}, "train": {"epochs": 1, "loss": "sampled_softmax", "sampler": "popularity",
                                                                     "logq": False, "num_negatives": 8}})
    trainer = Trainer(build_model("sasrec", ds.num_items, 6), split_dataset(ds), config, progress=False)
    assert (trainer.objective.sampler, trainer.objective.logq) == ("popularity", False)
    assert np.isfinite(trainer.train_epoch(1))
