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
