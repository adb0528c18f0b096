"""The neighbour memory searches through the one vector index: bit for bit the exact search it had on
the default path (random and real keys), never the querying user's own entries on any backend."""
import copy

import pytest
import torch
import torch.nn.functional as F

from memrec.config import NeighbourConfig
from memrec.data.batching import eval_batches
from memrec.memory import index as vi
from memrec.memory.neighbours import NeighbourMemory, build_neighbours
from memrec.models import build_model


def matmul_search(mem: NeighbourMemory, queries, users, k):
    """NeighbourMemory.search as it was before the index (commit 6cf5283): a matmul, the own range masked, topk."""
    sims = F.normalize(queries.float(), dim=1) @ mem.keys.T
    starts = torch.searchsorted(mem.owners, users)
    counts = torch.searchsorted(mem.owners, users, right=True) - starts
    rows = torch.repeat_interleave(torch.arange(len(users)), counts)
    sims[rows, torch.repeat_interleave(starts - counts.cumsum(0) + counts, counts) + torch.arange(int(counts.sum()))] = float("-inf")
    top = sims.topk(min(k, sims.size(1)), dim=1)
    return top.values, torch.where(torch.isfinite(top.values).unsqueeze(2), mem.values[top.indices], -1)


def random_memory(n=3_000, dim=16, users=150, seed=0) -> NeighbourMemory:
    g = torch.Generator().manual_seed(seed)
    mem = NeighbourMemory(dim)
    mem.build(torch.randn(n, dim, generator=g), torch.randint(1, 500, (n, 3), generator=g), torch.randint(0, users, (n,), generator=g))
    return mem


@pytest.mark.parametrize("k", [1, 32, 128, 5_000])
def test_default_search_is_bit_for_bit_the_matmul_on_random_keys(k):
    mem = random_memory()
    queries, users = torch.randn(64, 16), torch.cat([torch.arange(60), torch.tensor([500, 0, 0, 149])])  # a user without entries
    assert mem.search_config.choose(len(mem)) == "torch"
    got, want = mem.search(queries, users, k), matmul_search(mem, queries, users, k)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.fixture(scope="module")
def real_memory(ml100k, ml100k_split):
    """Keys of every ML-100K training position from a SASRec (seed 0, untrained: the keys carry the
    real sequences' structure), built and tuned by the trainer's own step."""
    torch.manual_seed(0)
    model = build_model("sasrec", ml100k.num_items, 50).eval()
    build_neighbours(model, ml100k_split, 50, NeighbourConfig(enabled=True, ks=(32, 128), temperatures=(0.3,), weights=(0.5,), decays=(0.0,)),
                     log=lambda *_: None)
    queries = [(batch.users, model.scores_and_states(batch)[1]) for _, batch in eval_batches(ml100k_split.valid, 50, 256)]
    return model.neighbours, queries


def test_default_search_is_bit_for_bit_the_matmul_on_real_keys(real_memory):
    mem, batches = real_memory
    assert len(mem) > 90_000
    for users, queries in batches:
        for k in (32, 128):
            got, want = mem.search(queries, users, k), matmul_search(mem, queries, users, k)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.skipif(not vi.faiss_available(), reason="faiss-cpu is not installed (pip install 'memrec[faiss]')")
@pytest.mark.parametrize("backend, bound", [("faiss", 0.999), ("ivf", 0.8), ("hnsw", 0.7)])
def test_every_backend_skips_the_users_own_entries_on_real_keys(real_memory, backend, bound):
    """No returned entry is the user's own; the share of returned entries at least as similar as the
    exact k-th (ties count: untrained keys repeat) is near 1 for FAISS flat and high for IVF / HNSW."""
    mem, batches = real_memory
    approx = copy.deepcopy(mem)
    approx.search_config = vi.SearchConfig(backend=backend)
    good = total = 0
    for users, queries in batches[:2]:
        sims, values = approx.search(queries, users, 32)
        index = approx._index.get(approx.keys, approx.search_config)
        assert index.backend == backend
        _, rows = index.search_excluding(F.normalize(queries, dim=1), 32, torch.searchsorted(mem.owners, users),
                                         torch.searchsorted(mem.owners, users, right=True))
        assert torch.equal(values, torch.where(rows.unsqueeze(2) >= 0, mem.values[rows.clamp(min=0)], -1))
        assert (rows >= 0).all() and not (mem.owners[rows] == users.unsqueeze(1)).any()
        kth = mem.search(queries, users, 32)[0][:, -1:]  # the exact 32nd similarity
        cos = F.normalize(queries, dim=1) @ mem.keys.T
        good += int((cos.gather(1, rows) >= kth - 1e-5).sum())
        total += rows.numel()
    assert good / total >= bound, good / total


def test_the_approximate_index_is_chosen_above_the_threshold_and_copies_start_empty(monkeypatch):
    pytest.importorskip("faiss")
    mem = random_memory(n=2_000)
    mem.search_config = vi.SearchConfig(approximate_from=1_000, approximate="ivf")
    queries, users = torch.randn(8, 16), torch.arange(8)
    sims, values = mem.search(queries, users, 16)
    assert mem._index.get(mem.keys, mem.search_config).backend == "ivf" and values.shape == (8, 16, 3)
    twin = copy.deepcopy(mem)  # the FAISS index is not copied: the copy builds its own
    assert torch.equal(twin.search(queries, users, 16)[1], values)
    mem.build(torch.randn(500, 16), torch.ones(500, dtype=torch.int64), torch.arange(500) % 7)  # new entries, below the threshold: exact
    assert mem._index.get(mem.keys, mem.search_config).backend == "torch"
    assert torch.equal(mem.search(queries, users, 16)[1], matmul_search(mem, queries, users, 16)[1])
