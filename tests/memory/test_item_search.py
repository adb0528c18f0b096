"""Top-k items through an item index, history excluded by over-fetching: /recommend and batch inference."""
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from memrec.api import _tiny_run
from memrec.batch import recommend_all
from memrec.data.batching import make_eval_batch
from memrec.memory.index import ApproximateConfig, SearchConfig
from memrec.memory.item_search import ItemSearch, approximate_search
from memrec.models import build_model, masked_topk

EVERY_CELL = ApproximateConfig(nlist=8, nprobe=8)  # IVF that visits every cell: exact, through the approximate code path


def histories(rng, users, items, longest):
    return [rng.choice(np.arange(1, items + 1), size=rng.integers(0, longest + 1), replace=False) for _ in range(users)]


@pytest.mark.parametrize("backend, params", [("torch", ApproximateConfig()), ("ivf", EVERY_CELL), ("hnsw", ApproximateConfig(ef_search=2000))])
def test_top_k_equals_exact_masked_top_k_with_the_history_excluded(backend, params):
    rng, torch_gen = np.random.default_rng(0), torch.manual_seed(0)
    table, users = torch.randn(1001, 16), torch.randn(40, 16)  # 1,000 items
    seen = histories(rng, 40, 1000, 60)
    batch = make_eval_batch(np.arange(40), seen, np.zeros(40, dtype=np.int64), 60)
    items, scores = ItemSearch(table, SearchConfig(backend=backend, params=params)).topk(users, 10, (batch.seen_rows, batch.seen_items))
    expected_items, expected_scores = masked_topk(users @ table.T, 10, (batch.seen_rows, batch.seen_items))
    assert torch.equal(items, expected_items)
    assert torch.allclose(scores, expected_scores, atol=1e-5)


def test_rows_whose_history_fills_the_first_fetch_are_fetched_again():
    table = torch.cat([torch.zeros(1, 2), torch.tensor([[float(100 - i), 0.0] for i in range(100)])])  # item i scores 101 - i
    seen = [np.arange(1, 91), np.array([], dtype=np.int64)]  # the first row has seen the 90 best
    batch = make_eval_batch(np.arange(2), seen, np.zeros(2, dtype=np.int64), 5)
    search = ItemSearch(table, SearchConfig(backend="ivf", params=ApproximateConfig(nlist=2, nprobe=2)))
    items, _ = search.topk(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), 5, (batch.seen_rows, batch.seen_items))
    assert items.tolist() == [[91, 92, 93, 94, 95], [1, 2, 3, 4, 5]]
    few, _ = search.topk(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), 50, (batch.seen_rows, batch.seen_items))
    assert few.size(1) == 10  # only ten items are left to the first row: as masked_topk, the fewest any row has


def test_only_large_catalogues_are_searched_approximately():
    model = build_model("sasrec", 500, 5)
    assert approximate_search(model) is None  # below 10^6 items: exact
    assert approximate_search(model, SearchConfig(approximate_from=500)).backend == "ivf"


def test_served_recommendations_through_the_index_equal_exact_ones():
    from memrec.serve.model import ServedModel
    from memrec.store.events import Event

    rec = _tiny_run()
    served = ServedModel(rec.model, rec.checkpoint.item_ids, rec.model.max_len, rec.model.name, rec.dataset.user_ids)
    assert served.search is None  # a small catalogue is scored exactly
    history = [Event(item, float(t)) for t, item in enumerate(rec.dataset.item_ids[1:4])]
    exact = served.recommend(history, None, k=5)
    served.search = ItemSearch(served.table, SearchConfig(backend="hnsw", params=ApproximateConfig(ef_search=500)))
    approximate = served.recommend(history, None, k=5)
    assert approximate.items == exact.items and approximate.scores == pytest.approx(exact.scores, abs=1e-5)
    assert not set(approximate.items) & set(rec.dataset.item_ids[1:4])


def test_batch_inference_through_the_index_equals_exact(tmp_path):
    rec = _tiny_run()
    recommend_all(rec, tmp_path / "exact.parquet", k=3, chunk=5, log=lambda *_: None)
    report = recommend_all(rec, tmp_path / "index.parquet", k=3, chunk=5, log=lambda *_: None,
                           search=SearchConfig(backend="hnsw", params=ApproximateConfig(ef_search=500)))
    exact, approximate = pq.read_table(tmp_path / "exact.parquet").to_pydict(), pq.read_table(tmp_path / "index.parquet").to_pydict()
    assert report["users"] == 12 and approximate["item"] == exact["item"] and approximate["user"] == exact["user"]


def test_exact_batch_inference_scores_a_bounded_number_of_pairs_at_a_time(tmp_path, monkeypatch):
    import memrec.batch

    rec = _tiny_run()
    recommend_all(rec, tmp_path / "whole.parquet", k=3, chunk=12, log=lambda *_: None)
    sizes, real = [], rec.model.recommend
    monkeypatch.setattr(rec.model, "recommend", lambda batch, k: sizes.append(len(batch.users)) or real(batch, k=k))
    monkeypatch.setattr(memrec.batch, "SCORED_AT_ONCE", 30)  # 3 users of 10 columns (9 items + padding)
    recommend_all(rec, tmp_path / "bounded.parquet", k=3, chunk=12, log=lambda *_: None)
    assert sizes == [3, 3, 3, 3]
    bounded, whole = pq.read_table(tmp_path / "bounded.parquet").to_pydict(), pq.read_table(tmp_path / "whole.parquet").to_pydict()
    assert [bounded[c] for c in ("user", "rank", "item")] == [whole[c] for c in ("user", "rank", "item")]
    assert bounded["score"] == pytest.approx(whole["score"], abs=1e-6)  # 3-row products round in other kernels
