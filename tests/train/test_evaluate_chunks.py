"""Full-ranking evaluation in item chunks: the same ranks as the whole (B, N + 1) score matrix."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memrec.data.batching import make_eval_batch
from memrec.models import build_model
from memrec.train.evaluate import NonFiniteScoreError, rank_evalset, rank_in_chunks, rank_targets
from tests.train.test_evaluate import ConstantScores


@settings(max_examples=100, deadline=None)
@given(
    scores=st.lists(st.integers(-3, 3), min_size=8, max_size=8),
    target=st.integers(1, 7),
    seen=st.sets(st.integers(1, 7), max_size=3),
    chunk=st.integers(1, 9),
)
def test_chunked_rank_equals_the_whole_matrix_rank_with_ties_and_masks(scores, target, seen, chunk):
    items = torch.tensor(scores, dtype=torch.float32)[:, None]  # (8, 1): small integers, many ties
    batch = make_eval_batch(np.array([0]), [np.array(sorted(seen), dtype=np.int64)], np.array([target]), max_len=5)
    users = torch.ones(1, 1)
    assert rank_in_chunks(users, items, batch, chunk).tolist() == rank_targets(users @ items.T, batch).tolist()


@pytest.mark.parametrize("chunk", [97, 1682])  # odd chunks; a last chunk of one item (1683 = 1682 + 1)
def test_evaluation_in_item_chunks_gives_the_same_ranks_on_real_data(ml100k, ml100k_split, chunk):
    torch.manual_seed(0)
    model = build_model("sasrec", ml100k.num_items, 50).eval()
    whole = rank_evalset(model, ml100k_split.test, 50, batch_size=256)  # 1,683 columns: one matrix
    chunked = rank_evalset(model, ml100k_split.test, 50, batch_size=256, item_chunk=chunk)
    assert np.array_equal(chunked, whole)
    assert len(np.unique(whole)) > 100  # real rankings, not one tie


def test_ties_stay_pessimistic_in_chunks(ml100k, ml100k_split):
    ranks = rank_evalset(ConstantScores(ml100k.num_items), ml100k_split.test, 50, item_chunk=100)
    assert (ranks >= 10).all()  # every item ties the target and ranks above it


def test_non_finite_scores_in_any_chunk_are_an_error(ml100k, ml100k_split):
    model = ConstantScores(ml100k.num_items)
    table = model.item_embeddings().clone()
    table[1500] = float("nan")  # in the last chunks only
    model.item_embeddings = lambda: table
    with pytest.raises(NonFiniteScoreError, match="NaN or infinite scores"):
        rank_evalset(model, ml100k_split.test, 50, item_chunk=100)
