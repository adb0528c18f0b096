"""Metrics on hand-computed examples."""
from __future__ import annotations

import math
import random

import pytest
import torch

from memrec.assist.catalog import ItemCatalog
from memrec.assist.metrics import auc, efficiency, mean_defined, ndcg_at, overlap_share, recall_at


def test_recall_and_ndcg_by_hand():
    ranks = [0, 3, 9, 10, 150, 999, 1000]
    assert recall_at(ranks, 10) == pytest.approx(3 / 7)
    assert recall_at(ranks, 100) == pytest.approx(4 / 7)
    assert recall_at(ranks, 1000) == pytest.approx(6 / 7)
    expected = (1 + 1 / math.log2(5) + 1 / math.log2(11)) / 7
    assert ndcg_at(ranks, 10) == pytest.approx(expected)
    assert ndcg_at(ranks, 1000) == pytest.approx(expected + (1 / math.log2(12) + 1 / math.log2(152) + 1 / math.log2(1001)) / 7)


def test_memory_contribution_by_hand():
    used = ["Pyrex glass beaker", "steel ruler", "glass funnel"]
    assert overlap_share(used, "a glass container, beaker style") == pytest.approx(2 / 3)
    assert overlap_share(used, "a wooden ruler") == pytest.approx(1 / 3)
    assert overlap_share([], "anything") is None
    assert mean_defined([2 / 3, None, 1 / 3]) == pytest.approx(0.5)


def test_efficiency_by_hand():
    assert efficiency(0.3, 50) == pytest.approx(0.6)
    assert efficiency(0.261, 283.51) == pytest.approx(0.092, abs=5e-4)
    assert efficiency(0.5, 0) is None


def test_auc_by_hand_and_against_all_pairs():
    assert auc([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]) == 1.0
    assert auc([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0]) == 0.0
    assert auc([0.5, 0.5, 0.5], [1, 0, 1]) == 0.5
    rng = random.Random(0)
    scores = [rng.choice([0.1, 0.2, 0.3, 0.4, 0.5]) for _ in range(200)]
    labels = [rng.random() < 0.4 for _ in range(200)]
    pairs = [(s, t) for s, y in zip(scores, labels) if y for t, z in zip(scores, labels) if not z]
    brute = sum(1.0 if s > t else 0.5 if s == t else 0.0 for s, t in pairs) / len(pairs)
    assert auc(scores, labels) == pytest.approx(brute)
    with pytest.raises(ValueError, match="both classes"):
        auc([0.1, 0.2], [1, 1])


def test_catalogue_ranks_are_pessimistic_and_mask_the_history():
    vocab = {"a": [1.0, 0.0], "b": [1.0, 0.0], "c": [0.0, 1.0], "q": [1.0, 0.0]}
    catalog = ItemCatalog(["a", "b", "c"], ["a", "b", "c"], lambda texts: torch.tensor([vocab[t] for t in texts]))
    assert catalog.ranks(["q", "q"], ["a", "c"]).tolist() == [1, 2]  # tie with b counts against a
    assert catalog.ranks(["q"], ["a"], exclude=[["b"]]).tolist() == [0]
    assert catalog.ranks(["q"], ["a"], exclude=[["a"]]).tolist() == [2]  # a masked target is a miss
    assert [h.item for h in catalog.search(["q"], k=3, exclude=[["a", "unknown"]])[0]] == ["b", "c"]


def test_the_assistant_uses_the_evaluators_ndcg(toy_ranks=(0, 2, 99, 100, 999, 1000)):
    """One NDCG in memrec: the assistant's metric and the GRPO reward's terms are memrec.train.evaluate's."""
    import importlib

    import numpy as np

    grpo, metrics, evaluate = (importlib.import_module(f"memrec.{m}") for m in ("assist.grpo", "assist.metrics", "train.evaluate"))

    assert metrics.ndcg_at is evaluate.ndcg_at and not hasattr(grpo, "ndcg_at")
    assert ndcg_at(list(toy_ranks), 100) == pytest.approx(float(evaluate.user_ndcg(np.array(toy_ranks), 100).mean()))
    assert ndcg_at(torch.tensor(toy_ranks), 1000) == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(101) + 1 / math.log2(102) + 1 / math.log2(1001)) / 6)
    assert ndcg_at([], 10) == 0.0
