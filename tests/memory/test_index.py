"""The shared vector index: exact torch search, the FAISS backend, persistence, bad input."""
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memrec.memory import index as vi
from memrec.memory.index import FaissMissingError, TorchIndex, VectorIndexError, exact_search, load_index, make_index, select_topk


def brute_force(queries, vectors, ids, k, metric):
    if metric == "cosine":
        queries, vectors = torch.nn.functional.normalize(queries, dim=-1), torch.nn.functional.normalize(vectors, dim=-1)
    scores = queries @ vectors.T
    order = scores.argsort(dim=1, descending=True)[:, :k]
    return scores.gather(1, order), ids[order]


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_torch_index_is_exact(metric):
    torch.manual_seed(0)
    vectors, queries = torch.randn(300, 16), torch.randn(20, 16)
    index = TorchIndex(16, metric)
    ids = index.add(vectors, torch.arange(1000, 1300))
    scores, found = index.search(queries, k=7)
    want_scores, want_ids = brute_force(queries, vectors, ids, 7, metric)
    assert torch.equal(found, want_ids) and torch.allclose(scores, want_scores, atol=1e-5)
    assert isinstance(index, vi.VectorIndex)


def test_fewer_vectors_than_k_pad_with_minus_one_and_empty_index_answers():
    index = TorchIndex(2)
    assert index.search(torch.ones(1, 2), k=2)[1].tolist() == [[-1, -1]]
    index.add(torch.tensor([[1.0, 0.0]]))
    scores, ids = index.search(torch.ones(3, 2), k=2)
    assert ids.tolist() == [[0, -1]] * 3 and torch.isinf(scores[:, 1]).all()


def test_remove_and_fresh_ids():
    index = TorchIndex(3)
    assert index.add(torch.eye(3)).tolist() == [0, 1, 2]
    assert index.remove(torch.tensor([1, 99])) == 1 and len(index) == 2
    assert index.search(torch.tensor([[0.0, 1.0, 0.0]]), k=3)[1][0, 2].item() == -1
    assert index.add(torch.ones(1, 3)).tolist() == [3]  # ids are never reused


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_save_and_load_round_trip(tmp_path, metric):
    torch.manual_seed(1)
    index = TorchIndex(8, metric)
    index.add(torch.randn(50, 8) * 3)
    index.save(tmp_path / "index.pt")
    loaded = load_index(tmp_path / "index.pt", backend="torch")
    queries = torch.randn(5, 8)
    assert loaded.metric == metric and len(loaded) == 50
    assert all(torch.equal(a, b) for a, b in zip(loaded.search(queries, 4), index.search(queries, 4)))
    assert loaded.add(torch.randn(1, 8)).tolist() == [50]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda i: i.add(torch.ones(2, 3)), r"shape \(n, 4\), got \(2, 3\)"),
        (lambda i: i.add(torch.full((1, 4), float("nan"))), "NaN"),
        (lambda i: i.add(torch.ones(2, 4, dtype=torch.int64)), "float tensor"),
        (lambda i: i.add(torch.ones(2, 4), torch.tensor([5, 5])), "unique"),
        (lambda i: i.add(torch.ones(1, 4), torch.tensor([-2])), ">= 0"),
        (lambda i: i.add(torch.ones(2, 4), torch.tensor([1])), "2 vectors but 1 ids"),
        (lambda i: i.search(torch.ones(1, 4), k=0), "k must be >= 1"),
        (lambda i: i.search(torch.ones(4), k=1), r"queries must have shape"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(call, message):
    with pytest.raises(VectorIndexError, match=message):
        call(TorchIndex(4))


def test_bad_metric_and_backend():
    with pytest.raises(VectorIndexError, match="metric"):
        TorchIndex(4, "l2")
    with pytest.raises(VectorIndexError, match="backend"):
        make_index(4, backend="annoy")


def test_faiss_requested_but_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail, as on a machine without it
    with pytest.raises(FaissMissingError, match="pip install"):
        make_index(4, backend="faiss")
    assert make_index(4, backend="auto", expected_size=10 * vi.FAISS_THRESHOLD).backend == "torch"


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_faiss_backend_matches_exact_search(metric, tmp_path):
    pytest.importorskip("faiss", reason="faiss-cpu is not installed (pip install 'memrec[faiss]')")
    torch.manual_seed(2)
    vectors, queries = torch.randn(500, 12), torch.randn(10, 12)
    exact, fast = TorchIndex(12, metric), make_index(12, metric, backend="faiss")
    assert fast.backend == "faiss" and make_index(12, expected_size=vi.FAISS_THRESHOLD).backend == "faiss"
    for index in (exact, fast):
        index.add(vectors, torch.arange(500) * 2)
        index.remove(torch.arange(0, 100, 2))
    assert len(fast) == len(exact) == 450
    (s1, i1), (s2, i2) = exact.search(queries, 5), fast.search(queries, 5)
    assert torch.equal(i1, i2) and torch.allclose(s1, s2, atol=1e-4)
    fast.save(tmp_path / "f.pt")
    assert torch.equal(load_index(tmp_path / "f.pt", backend="faiss").search(queries, 5)[1], i1)
    assert fast.search(queries[:1], 600)[1][0, -1].item() == -1


def test_exact_search_with_a_mask():
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]])  # (1, 3, 2)
    valid = torch.tensor([[True, True, False]])
    scores, pos = exact_search(torch.tensor([[[1.0, 0.0]]]), keys, k=3, valid=valid)
    assert pos.tolist() == [[[0, 1, -1]]] and scores[0, 0, 2] == float("-inf")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(0, 14), st.integers(0, 2**31 - 1))
def test_select_topk_keeps_the_k_best_valid(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(3, n, generator=g)
    valid = torch.rand(3, n, generator=g) < 0.7
    chosen = select_topk(scores, valid, torch.full((3,), k))
    for r in range(3):
        assert chosen[r].sum() == min(k, int(valid[r].sum()))
        assert not (chosen[r] & ~valid[r]).any()
        rest = valid[r] & ~chosen[r]
        if chosen[r].any() and rest.any():
            assert scores[r][chosen[r]].min() >= scores[r][rest].max()


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_one_vector_at_a_time_equals_one_batch(backend):
    """Adds grow buffers in place (amortised O(1) per vector); the index holds exactly what was added."""
    torch.manual_seed(0)
    vectors = torch.randn(300, 8)
    one_by_one, batch = make_index(8, "cosine", backend), make_index(8, "cosine", backend)
    for n in range(300):
        one_by_one.add(vectors[n : n + 1], torch.tensor([1000 + n]))
    batch.add(vectors, torch.arange(1000, 1300))
    assert len(one_by_one) == 300
    torch.testing.assert_close(one_by_one.vectors, batch.vectors)
    assert one_by_one.search(vectors[:5], k=3)[1].tolist() == batch.search(vectors[:5], k=3)[1].tolist()
    with pytest.raises(VectorIndexError, match="unique"):
        one_by_one.add(vectors[:1], torch.tensor([1299]))
    assert one_by_one.remove(torch.tensor([1000, 1299])) == 2
    one_by_one.add(vectors[:1], torch.tensor([1299]))  # removed ids may come back
    assert len(one_by_one) == 299
