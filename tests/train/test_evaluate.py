"""The full-ranking evaluator: pessimistic ties, errors on NaN, batch-size invariance."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memrec.data.batching import make_eval_batch
from memrec.models import build_model
from memrec.models.base import SequentialRecommender
from memrec.train.evaluate import NonFiniteScoreError, evaluate, metrics_from_ranks, rank_evalset, rank_targets


class ConstantScores(SequentialRecommender):
    """Scores every item the same, whatever the history: it must get zero on every metric."""

    name = "constant"
    config_class = dict

    def __init__(self, num_items, value=1.0):
        super().__init__(num_items, 50, {})
        self.value = value

    def encode_positions(self, items, users=None):
        return torch.ones(*items.shape, 1)

    def item_embeddings(self):
        return torch.full((self.num_items + 1, 1), self.value)


def test_a_model_that_scores_every_item_the_same_gets_zero(ml100k, ml100k_split):
    metrics = evaluate(ConstantScores(ml100k.num_items), ml100k_split.test, max_len=50)
    assert all(value == 0.0 for value in metrics.values()), metrics


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_are_an_error_never_a_hit(ml100k, ml100k_split, bad):
    with pytest.raises(NonFiniteScoreError, match=r"NaN or infinite scores for (\d+) of \1 users"):
        evaluate(ConstantScores(ml100k.num_items, value=bad), ml100k_split.test, max_len=50, batch_size=10_000)


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.integers(-3, 3), min_size=6, max_size=6),
    target=st.integers(1, 5),
    seen=st.sets(st.integers(1, 5), max_size=3),
)
def test_rank_is_the_number_of_unmasked_items_scoring_at_least_as_high(scores, target, seen):
    """Brute force over a 5-item catalogue with small integer scores (many ties)."""
    history = np.array(sorted(seen), dtype=np.int64)
    batch = make_eval_batch(np.array([0]), [history], np.array([target]), max_len=5)
    rank = rank_targets(torch.tensor([scores], dtype=torch.float32), batch).item()
    if target in seen:
        assert rank >= 5 - len(seen)  # a masked target can never be a hit in the top of the unmasked items
    else:
        others = [i for i in range(1, 6) if i != target and i not in seen]
        assert rank == sum(scores[i] >= scores[target] for i in others)


def test_metric_formulas():
    m = metrics_from_ranks(np.array([0, 1, 9, 10]), ks=(10,))
    assert m["hit@10"] == m["recall@10"] == 0.75
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 4)


def test_results_are_identical_for_any_evaluation_batch_size(ml100k, ml100k_split):
    torch.manual_seed(0)
    for name in ("sasrec", "gru4rec"):
        model = build_model(name, ml100k.num_items, 50).eval()
        reference = rank_evalset(model, ml100k_split.test, 50, batch_size=943)
        for batch_size in (1, 7, 128):
            assert np.array_equal(rank_evalset(model, ml100k_split.test, 50, batch_size), reference), (name, batch_size)
