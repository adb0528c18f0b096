"""Next-item objectives over hidden states (T, d), targets (T,) and the item table (N + 1, d)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from memrec.errors import ConfigError

LOSSES = ("ce", "sampled_softmax", "bpr")


class FullSoftmax:
    """Cross-entropy over every item in the catalogue (padding excluded)."""

    def __call__(self, hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        logits = hidden @ items[1:].T  # (T, N): padding is never a class
        return F.cross_entropy(logits, targets - 1)


class SampledSoftmax:
    """Softmax over the target and ``num_negatives`` items drawn uniformly, shared by the batch.

    A negative that equals a row's target is masked out for that row.
    """

    def __init__(self, num_negatives: int):
        self.num_negatives = num_negatives

    def __call__(self, hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        negatives = torch.randint(1, items.size(0), (self.num_negatives,))  # (S,)
        positive = (hidden * items[targets]).sum(-1, keepdim=True)  # (T, 1)
        negative = hidden @ items[negatives].T  # (T, S)
        negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
        logits = torch.cat([positive, negative], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long))


class BPR:
    """Bayesian personalised ranking with one uniformly drawn negative per position."""

    def __call__(self, hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        negatives = torch.randint(1, items.size(0), targets.shape)
        diff = (hidden * (items[targets] - items[negatives])).sum(-1)  # (T,)
        return -F.logsigmoid(diff[negatives != targets]).mean()


def make_objective(name: str, num_negatives: int = 256):
    """Example:
    >>> make_objective("ce").__class__.__name__
    'FullSoftmax'
    """
    if name == "ce":
        return FullSoftmax()
    if name == "sampled_softmax":
        return SampledSoftmax(num_negatives)
    if name == "bpr":
        return BPR()
    raise ConfigError(f"unknown loss {name!r}: expected one of {LOSSES}")
