"""memrec.testing: a conforming custom model passes, and each broken model fails the check it breaks."""
import numpy as np
import pytest
import torch

from memrec.data import SequenceDataset
from memrec.models import SequentialRecommender, UR4RecConfig, UR4RecMoE
from memrec.testing import CHECKS, Subject, check_model, run_check


class MeanOfPast(SequentialRecommender):
    """A conforming model: the user vector at position t is the mean of the item vectors 0..t."""

    name = "mean-of-past"

    def __init__(self, num_items, max_len):
        super().__init__(num_items, max_len, config=None)
        self.emb = torch.nn.Embedding(num_items + 1, 8, padding_idx=0)

    def encode_positions(self, items, users=None):  # (B, L) -> (B, L, 8)
        return self.emb(items).cumsum(1) / torch.arange(1, items.size(1) + 1)[:, None]

    def item_embeddings(self):  # (N + 1, 8)
        return self.emb.weight


class ReadsTheFuture(MeanOfPast):
    def encode_positions(self, items, users=None):  # every position sees the whole window
        return self.emb(items).mean(1, keepdim=True).expand(-1, items.size(1), -1) + super().encode_positions(items)


class IgnoresExcludeSeen(MeanOfPast):
    def recommend(self, batch, k=10, exclude_seen=True):
        return super().recommend(batch, k, exclude_seen=False)


class ForgetsOnLoad(MeanOfPast):
    def __init__(self, num_items, max_len):
        super().__init__(num_items, max_len)
        self.bias = torch.randn(num_items + 1)  # a plain attribute: not in the state dict

    def item_embeddings(self):
        return self.emb.weight + self.bias[:, None]


class LossWritesState(MeanOfPast):
    def __init__(self, num_items, max_len):
        super().__init__(num_items, max_len)
        self.register_buffer("calls", torch.zeros(()))

    def loss(self, batch, objective, *writes):
        self.calls += 1  # evaluation reads it
        return super().loss(batch, objective, *writes)

    def item_embeddings(self):
        return self.emb.weight * (1 + self.calls)


class AcceptsUnknownItems(MeanOfPast):
    def check_items(self, items, any_length=False):
        pass

    def encode_positions(self, items, users=None):
        return super().encode_positions(items.clamp(0, self.num_items))


class MixesRows(MeanOfPast):
    def encode_positions(self, items, users=None):  # rows see the batch's mean
        states = super().encode_positions(items)
        return states - states.mean(0, keepdim=True)


class IgnoresNeighbours(MeanOfPast):
    def score_all(self, batch):
        return self.scores_and_states(batch, states=False)[0]


class ReadsOwnNeighbours(MeanOfPast):
    def score_all(self, batch):
        from dataclasses import replace

        return super().score_all(replace(batch, users=torch.full_like(batch.users, -1)))  # as if nobody owned an entry


class ServesWithoutMemory(UR4RecMoE):
    def __init__(self, num_items, max_len):
        super().__init__(num_items, max_len, UR4RecConfig(hidden_size=16, inner_size=32, memory_dim=8, modalities=["id"], interaction_threshold=2))

    def serve_scores(self, batch, memory=None):
        return super().serve_scores(batch, None)


@pytest.fixture(scope="module")
def dataset():
    rng = np.random.default_rng(0)
    return SequenceDataset.from_sequences({f"u{u}": [f"i{i}" for i in rng.choice(30, size=9, replace=False)] for u in range(12)})


def test_a_conforming_model_passes_every_check(dataset):
    ran = check_model(MeanOfPast, dataset, max_len=6)
    assert set(ran) == set(CHECKS) - {"memory_is_read", "served_memory", "logged_state"}


@pytest.mark.parametrize("broken, check", [
    (ReadsTheFuture, "causal"),
    (IgnoresExcludeSeen, "history_excluded"),
    (ForgetsOnLoad, "save_load"),
    (LossWritesState, "loss_no_side_effects"),
    (AcceptsUnknownItems, "unknown_items_refused"),
    (MixesRows, "batch_size_independent"),
    (IgnoresNeighbours, "neighbours"),
    (ReadsOwnNeighbours, "neighbours"),
    (ServesWithoutMemory, "served_memory"),
])
def test_a_broken_model_fails_the_check_it_breaks(dataset, broken, check):
    subject = Subject(broken, dataset, max_len=6)
    with pytest.raises(AssertionError, match=f"conformance check '{check}' failed for {broken.__name__}"):
        run_check(check, subject)
    with pytest.raises(AssertionError, match="conformance check '"):
        check_model(broken, dataset, max_len=6)


def test_a_memory_that_is_never_read_fails(dataset):
    with pytest.raises(AssertionError, match="'memory_is_read' failed .* neither the memory written"):
        check_model(MeanOfPast, dataset, checks=["memory_is_read"], max_len=6, memory=True, remember=lambda model, split, users: None)


def test_checks_that_do_not_apply_are_reported_and_unknown_checks_refused(dataset):
    subject = Subject(MeanOfPast, dataset, max_len=6)
    assert run_check("memory_is_read", subject) is False
    with pytest.raises(KeyError, match="unknown conformance check 'speed'"):
        run_check("speed", subject)
