"""benchmarks/index_recall.py's functions on tiny inputs: replicated keys, recall and speed rows, NDCG by backend."""
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import index_recall  # noqa: E402
from memrec.memory.index import faiss_available  # noqa: E402


def real_like(n=300, d=8, users=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1), torch.randint(0, users, (n,), generator=g).sort().values


def test_replicate_keeps_the_real_keys_first_and_gives_copies_to_new_users():
    keys, owners = real_like()
    big, own = index_recall.replicate(keys, owners, 1_000, sigma=0.2, chunk=128)
    assert big.shape == (1_000, 8) and torch.equal(big[:300], keys) and torch.allclose(big.norm(dim=1), torch.ones(1_000))
    assert torch.equal(own[300:600], owners + 20) and torch.equal(own[900:], owners[:100] + 60) and (own[1:] >= own[:-1]).all()
    cos = (big[300:600] * keys).sum(1)
    assert abs(float(cos.mean()) - 1 / math.sqrt(1 + 0.2 ** 2)) < 0.03  # as far from the original as sigma says
    sigma, nearest = index_recall.noise_for(keys, owners, sample=100)
    assert 0 < nearest < 1 and 1 / math.sqrt(1 + sigma ** 2) == pytest.approx(nearest)


def test_recall_counts_ties_and_id_recall_does_not():
    keys = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=1)
    query = torch.tensor([[1.0, 0.0]])
    exact_scores, exact_ids = torch.tensor([[1.0]]), torch.tensor([[0]])
    assert index_recall.recall(torch.tensor([[1]]), query, keys, exact_scores) == 1.0  # the tied twin
    assert index_recall.id_recall(torch.tensor([[1]]), exact_ids) == 0.0
    assert index_recall.recall(torch.tensor([[2]]), query, keys, exact_scores) == 0.0


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
def test_measure_size_gives_one_row_per_backend_and_setting():
    keys, owners = real_like(n=2_000, d=16, users=100)
    queries, users = F.normalize(torch.randn(40, 16), dim=1), torch.randint(0, 100, (40,))
    rows = index_recall.measure_size(keys, owners, queries, users, (4, 16), (2,), (16, 64), batch=16, min_seconds=0.01, label="toy",
                                     log=lambda *_: None)
    assert [(r["backend"], r["nprobe"], r["ef_search"]) for r in rows] == [("torch", None, None), ("faiss", None, None), ("ivf", 2, None),
                                                                           ("hnsw", None, 16), ("hnsw", None, 64)]
    assert rows[0]["recall@16"] == rows[1]["recall@16"] == 1.0
    assert all(0.0 <= r[f"recall@{k}"] <= 1.0 and r[f"qps@{k}"] > 0 for r in rows for k in (4, 16))
    assert rows[4]["recall@16"] >= rows[3]["recall@16"] - 0.05
    assert "| toy | 2000 | hnsw ef=64 |" in index_recall.table({"rows": rows})


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
def test_ndcg_by_backend_scores_the_same_model_through_each_index():
    from memrec.config import NeighbourConfig
    from memrec.data import SequenceDataset, split_dataset
    from memrec.memory.neighbours import build_neighbours
    from memrec.models import build_model

    torch.manual_seed(0)
    ds = SequenceDataset.from_sequences({f"u{i}": [f"i{(i * 3 + j) % 17}" for j in range(6 + i % 4)] for i in range(60)})
    split = split_dataset(ds)
    model = build_model("gru4rec", ds.num_items, 8)
    build_neighbours(model, split, 8, NeighbourConfig(enabled=True, ks=(4,)), log=lambda *_: None)
    model.neighbours.set(k=4, temperature=0.3, weight=0.5)  # used, whatever validation chose
    report = index_recall.ndcg_by_backend(model.eval(), split.test, 8, nprobes=(1,), efs=(16,), batch=16, log=lambda *_: None)
    assert [r["backend"] for r in report["rows"]] == ["torch", "ivf", "hnsw"] and report["entries"] == len(model.neighbours)
    assert all(0.0 <= r["test_ndcg@10"] <= 1.0 for r in report["rows"]) and "difference_ci95" in report["rows"][1]
    assert model.neighbours.search_config.backend == "auto"  # the model's own choice is put back
