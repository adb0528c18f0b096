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
    assert vi.SearchConfig().choose(10 * vi.APPROXIMATE_THRESHOLD) == "torch"  # "auto" stays exact without FAISS
    with pytest.raises(FaissMissingError, match="'ivf' backend"):
        vi.index_of(torch.eye(2), "ivf")


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


# ----------------------------------------------------------------------------- approximate indexes, owner exclusion
needs_faiss = pytest.mark.skipif(not vi.faiss_available(), reason="faiss-cpu is not installed (pip install 'memrec[faiss]')")


def clustered(n, dim=32, clusters=200, spread=0.35, seed=0):
    """Unit vectors around ``clusters`` random centres: the structure IVF and HNSW rely on (and real keys have)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g)
    points = centres[torch.randint(0, clusters, (n,), generator=g)] + spread * torch.randn(n, dim, generator=g)
    return torch.nn.functional.normalize(points, dim=1)


def brute_excluding(queries, vectors, ids, k, lo, hi):
    scores = queries @ vectors.T
    scores[(ids >= lo[:, None]) & (ids < hi[:, None])] = float("-inf")
    top = scores.topk(min(k, len(ids)), dim=1)
    return top.values, ids[top.indices].masked_fill(torch.isinf(top.values), -1)


def recall(found, exact):
    return sum(len(set(f) & set(e) - {-1}) / max(1, len(set(e) - {-1})) for f, e in zip(found.tolist(), exact.tolist())) / len(found)


@pytest.mark.parametrize("backend", ["torch", pytest.param("faiss", marks=needs_faiss)])
@pytest.mark.parametrize("ordered", [True, False])
def test_search_excluding_is_exact_and_skips_each_querys_range(backend, ordered):
    torch.manual_seed(3)
    vectors, queries = torch.randn(400, 16), torch.randn(30, 16)
    ids = torch.arange(400) if ordered else torch.randperm(400)
    index = make_index(16, "ip", backend)
    index.add(vectors, ids)
    lo = torch.randint(0, 400, (30,))
    hi = lo + torch.randint(0, 60, (30,))
    hi[0], lo[1], hi[1] = lo[0], 0, 399  # an empty range; a range holding all but one id
    scores, found = index.search_excluding(queries, 10, lo, hi)
    want_scores, want = brute_excluding(queries, vectors, ids, 10, lo, hi)
    assert torch.equal(found, want) and torch.allclose(scores, want_scores, atol=1e-5)
    assert found[1].tolist()[1:] == [-1] * 9 and torch.isinf(scores[1, 1:]).all()  # only id 399 is left for query 1
    assert not ((found >= lo[:, None]) & (found < hi[:, None])).any()
    assert index.search_excluding(queries[:2], 1000, lo[:2], hi[:2])[1].shape == (2, 400)  # k' = min(k, n)


def test_exact_search_in_chunks_equals_one_piece(monkeypatch):
    torch.manual_seed(4)
    index = vi.index_of(torch.randn(500, 8))
    queries, lo = torch.randn(64, 8), torch.randint(0, 500, (64,))
    whole = index.search_excluding(queries, 20, lo, lo + 7)
    monkeypatch.setattr(vi, "EXACT_CHUNK", 500 * 9)  # 9 queries at a time: 8 chunks
    chunked = index.search_excluding(queries, 20, lo, lo + 7)
    assert torch.equal(whole[1], chunked[1]) and torch.allclose(whole[0], chunked[0])


@needs_faiss
@pytest.mark.parametrize("backend, bound, wider, wide_bound", [("ivf", 0.88, vi.ApproximateConfig(nprobe=64), 0.99),
                                                              ("hnsw", 0.75, vi.ApproximateConfig(ef_search=512), 0.97)])
def test_approximate_backends_find_most_true_neighbours_on_clustered_data(backend, bound, wider, wide_bound):
    """Default parameters (measured here: IVF recall@32 0.93, HNSW 0.86 at ef_search 128), and more cells
    probed / a longer candidate list near exact; with a large own range too (k + 500 asked for, 500 dropped)."""
    vectors, queries = clustered(20_000), clustered(200, seed=1)
    exact = vi.index_of(vectors)
    approx, wide = vi.index_of(vectors, backend), vi.index_of(vectors, backend, params=wider)
    assert approx.backend == backend and len(approx) == 20_000
    lo = torch.randint(0, 19_000, (200,), generator=torch.Generator().manual_seed(5))
    hi = lo + 500
    for k in (32, 128):
        assert recall(approx.search(queries, k)[1], exact.search(queries, k)[1]) >= bound
        assert recall(wide.search(queries, k)[1], exact.search(queries, k)[1]) >= wide_bound
        got = approx.search_excluding(queries, k, lo, hi)[1]
        assert recall(got, exact.search_excluding(queries, k, lo, hi)[1]) >= bound
        assert not ((got >= lo[:, None]) & (got < hi[:, None])).any()


@needs_faiss
def test_ivf_with_few_cells_probed_is_worse_and_all_cells_is_exact():
    vectors, queries = clustered(5_000, dim=16, clusters=50), clustered(100, dim=16, clusters=50, seed=1)
    want = vi.index_of(vectors).search(queries, 32)[1]
    narrow = vi.index_of(vectors, "ivf", params=vi.ApproximateConfig(nlist=64, nprobe=1)).search(queries, 32)[1]
    wide = vi.index_of(vectors, "ivf", params=vi.ApproximateConfig(nlist=64, nprobe=64)).search(queries, 32)[1]
    assert recall(narrow, want) < 0.99 and recall(wide, want) == 1.0


@needs_faiss
@pytest.mark.parametrize("backend", ["ivf", "hnsw"])
def test_approximate_indexes_add_remove_save_and_load(backend, tmp_path):
    vectors = clustered(2_000, dim=8, clusters=20)
    index = make_index(8, "cosine", backend, params=vi.ApproximateConfig(nprobe=20, ef_search=64))
    index.add(vectors[:1_500] * 3)
    first = index.search(vectors[:5], 4)[1]  # IVF trains here
    index.add(vectors[1_500:] * 3)
    assert len(index) == 2_000 and index.search(vectors[1_600:1_605], 1)[1].flatten().tolist() == list(range(1_600, 1_605))
    assert index.remove(torch.arange(0, 1_000)) == 1_000
    found = index.search(vectors[:50], 10)[1]
    assert not ((found >= 0) & (found < 1_000)).any() and (found >= 1_000).all()
    index.save(tmp_path / "i.pt")
    loaded = load_index(tmp_path / "i.pt", backend=backend, params=index.params)
    assert loaded.backend == backend and torch.equal(loaded.search(vectors[1_000:1_010], 3)[1], index.search(vectors[1_000:1_010], 3)[1])
    assert first[:, 0].tolist() == list(range(5))


def test_settings_are_validated_and_auto_switches_at_the_threshold():
    with pytest.raises(VectorIndexError, match="nprobe >= 1"):
        vi.ApproximateConfig(nprobe=0)
    with pytest.raises(VectorIndexError, match="backend"):
        vi.SearchConfig(backend="annoy")
    with pytest.raises(VectorIndexError, match="approximate"):
        vi.SearchConfig(approximate="torch")
    config = vi.SearchConfig(approximate_from=1_000, approximate="hnsw")
    approximate = "hnsw" if vi.faiss_available() else "torch"
    assert (config.choose(999), config.choose(1_000), vi.SearchConfig(backend="faiss").choose(10**8)) == ("torch", approximate, "faiss")
    assert vi.SearchConfig().choose(vi.APPROXIMATE_THRESHOLD - 1) == "torch"
    assert vi.SearchConfig().choose(vi.APPROXIMATE_THRESHOLD) == ("ivf" if vi.faiss_available() else "torch")  # the default: IVF from 10^6
    assert vi.ApproximateConfig().lists(100) == 2 and vi.ApproximateConfig().lists(10) == 1  # at least 39 training points a cell
    with pytest.raises(VectorIndexError, match="one id range per query"):
        vi.index_of(torch.eye(3)).search_excluding(torch.eye(3), 1, torch.zeros(2), torch.zeros(2))


def test_index_cache_follows_the_tensor_and_the_choice():
    cache, keys = vi.IndexCache(), torch.eye(4)
    first = cache.get(keys, vi.SearchConfig())
    assert cache.get(keys, vi.SearchConfig()) is first
    keys.mul_(2.0)  # changed in place: made again
    assert cache.get(keys, vi.SearchConfig()) is not first
    assert cache.get(torch.eye(4), vi.SearchConfig()) is not cache.get(keys, vi.SearchConfig())
    if vi.faiss_available():
        assert cache.get(keys, vi.SearchConfig(backend="hnsw")).backend == "hnsw"


def test_exact_search_stable_keeps_the_lower_position_on_ties():
    keys = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    scores, pos = exact_search(torch.tensor([[1.0, 0.0]]), keys, k=3, stable=True)
    assert pos.tolist() == [[1, 3, 4]] and scores.tolist() == [[1.0, 1.0, 0.5]]
    valid = torch.tensor([True, False, True, True, True])
    assert exact_search(torch.tensor([[0.0, 1.0]]), keys, k=5, valid=valid, stable=True)[1].tolist() == [[0, 2, 4, 3, -1]]
