"""Expert memories: tiers and capacities, retrieval, consolidation, pruning, visibility, persistence."""
import io

import pytest
import torch

from memrec.errors import ConfigError
from memrec.memory.expert_memory import ExpertMemory, ExpertMemoryConfig, MemoryInputError, importance
from memrec.memory.index import faiss_available


def memory(**config) -> ExpertMemory:
    return ExpertMemory(key_dim=4, value_dim=2, config=ExpertMemoryConfig(**{"similarity_threshold": 0.5, **config}))


def unit(*rows) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_the_seeds_capacities_and_settings_are_the_defaults():
    c = ExpertMemoryConfig()
    assert (c.short_term_capacity, c.long_term_capacity, c.episodic_capacity, c.semantic_capacity) == (100, 10000, 5000, 5000)
    assert (c.top_k_retrieve, c.similarity_threshold, c.consolidation_interval, c.consolidation_threshold) == (5, 0.7, 1000, 0.8)
    assert (c.enable_pruning, c.prune_interval, c.min_importance, c.use_faiss) == (True, 5000, 0.1, False)
    with pytest.raises(ConfigError, match="top_k_retrieve must be >= 1"):
        ExpertMemoryConfig(top_k_retrieve=0)


def test_retrieval_returns_the_top_k_above_the_threshold():
    mem = memory()
    keys = unit([1, 0, 0, 0], [0.9, 0.1, 0, 0], [0.6, 0.4, 0, 0], [0, 1, 0, 0])
    mem.store(keys, torch.arange(8.0).view(4, 2), importance=0.9)
    recall = mem.retrieve(torch.tensor([[1.0, 0, 0, 0]]), k=3)
    assert recall.valid.tolist() == [[True, True, True]]
    assert recall.values[0].tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]  # best first
    assert (recall.scores[0, :-1] >= recall.scores[0, 1:]).all()
    recall = mem.retrieve(torch.tensor([[1.0, 0, 0, 0]]), k=3, threshold=0.95)
    assert recall.valid.tolist() == [[True, True, False]] and recall.values[0, 2].abs().sum() == 0


def test_bad_input_gives_clear_errors():
    mem = memory()
    with pytest.raises(MemoryInputError, match="holds no memories yet"):
        mem.search(torch.randn(1, 4))
    with pytest.raises(MemoryInputError, match=r"shape \(n, 4\)"):
        mem.store(torch.randn(2, 3), torch.randn(2, 2))
    with pytest.raises(MemoryInputError, match="NaN"):
        mem.store(torch.tensor([[float("nan"), 0, 0, 0]]), torch.randn(1, 2))
    with pytest.raises(MemoryInputError, match="importance"):
        mem.store(torch.randn(1, 4), torch.randn(1, 2), importance=1.5)
    mem.store(torch.randn(2, 4), torch.randn(2, 2))
    with pytest.raises(MemoryInputError, match="k must be an integer >= 1"):
        mem.retrieve(torch.randn(1, 4), k=0)
    with pytest.raises(MemoryInputError, match="queries"):
        mem.retrieve(torch.randn(1, 5))


def test_importance_decays_with_age_and_grows_with_access():
    cfg = ExpertMemoryConfig(importance_half_life=100.0, access_gain=0.1)
    i0, t0 = torch.tensor([0.8]), torch.tensor([0.0])
    assert importance(i0, t0, torch.tensor([0.0]), 100.0, cfg).item() == pytest.approx(0.4)
    assert importance(i0, t0, torch.tensor([0.0]), 200.0, cfg).item() == pytest.approx(0.2)
    assert importance(i0, t0, torch.tensor([4.0]), 100.0, cfg).item() == pytest.approx(0.4 + 0.1 * torch.log(torch.tensor(5.0)).item())
    assert importance(torch.tensor([1.0]), t0, torch.tensor([1e6]), 0.0, cfg).item() == 1.0  # capped


def test_short_term_overflow_consolidates_the_important_and_forgets_the_rest():
    mem = memory(short_term_capacity=2)
    mem.store(unit([1, 0, 0, 0], [0, 1, 0, 0]), torch.zeros(2, 2), importance=torch.tensor([0.9, 0.2]))
    mem.store(unit([0, 0, 1, 0], [0, 0, 0, 1]), torch.zeros(2, 2), importance=0.5)  # pushes out the two oldest
    s = mem.statistics()
    assert (s["short_term"], s["long_term"], s["semantic"]) == (2, 1, 1)
    assert mem.tiers["long_term"].keys[0].tolist() == [1.0, 0.0, 0.0, 0.0]  # the important one survived


def test_consolidation_moves_by_importance_and_folds_similar_entries_into_prototypes():
    mem = memory(consolidation_threshold=0.8, semantic_merge_threshold=0.9)
    mem.store(unit([1, 0, 0, 0], [0.99, 0.1, 0, 0], [0, 1, 0, 0]), torch.tensor([[2.0, 0], [4.0, 0], [0, 1.0]]), importance=torch.tensor([0.9, 0.9, 0.3]))
    result = mem.consolidate()
    assert result == {"moved": 2, "merged": 0, "new_prototypes": 2}  # the two moved together start two prototypes
    mem.store(unit([1, 0.05, 0, 0]), torch.tensor([[6.0, 0]]), importance=0.95)
    assert mem.consolidate() == {"moved": 1, "merged": 1, "new_prototypes": 0}
    s = mem.statistics()
    assert (s["short_term"], s["long_term"], s["semantic"]) == (1, 3, 2)
    counts = sorted(mem.tiers["semantic"].count.tolist())
    assert counts == [1.0, 2.0]
    merged = mem.tiers["semantic"].values[mem.tiers["semantic"].count == 2][0]
    assert merged.tolist() in ([4.0, 0.0], [5.0, 0.0])  # running mean of the prototype and the newcomer


def test_prototypes_never_mix_owners():
    mem = memory(consolidation_threshold=0.0)
    mem.store(unit([1, 0, 0, 0]), torch.zeros(1, 2), owners=torch.tensor([3]), upto=torch.tensor([5]))
    mem.consolidate()
    mem.store(unit([1, 0, 0, 0]), torch.zeros(1, 2), owners=torch.tensor([4]), upto=torch.tensor([9]))
    assert mem.consolidate()["merged"] == 0
    mem.store(unit([1, 0, 0, 0]), torch.zeros(1, 2), owners=torch.tensor([3]), upto=torch.tensor([7]))
    assert mem.consolidate()["merged"] == 1
    semantic = mem.tiers["semantic"]
    assert sorted(zip(semantic.owner.tolist(), semantic.upto.tolist())) == [(3, 7), (4, 9)]  # upto = latest merged


def test_pruning_drops_what_fell_below_the_minimum_in_every_tier():
    mem = memory(importance_half_life=10.0)
    mem.store(torch.randn(3, 4), torch.zeros(3, 2), importance=torch.tensor([0.9, 0.5, 0.15]), tier="episodic")
    mem.store(torch.randn(1, 4), torch.zeros(1, 2), importance=0.15)
    assert mem.prune(0.1) == {"short_term": 0, "long_term": 0, "episodic": 0, "semantic": 0}
    for _ in range(10):
        mem.tick()  # one half-life: 0.45, 0.25, 0.075
    assert mem.prune(0.1) == {"short_term": 1, "long_term": 0, "episodic": 1, "semantic": 0}
    assert len(mem) == 2


def test_a_full_tier_evicts_its_least_important_entries():
    mem = memory(episodic_capacity=2)
    mem.store(unit([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]), torch.zeros(3, 2), importance=torch.tensor([0.9, 0.1, 0.5]), tier="episodic")
    assert mem.tiers["episodic"].importance.tolist() == pytest.approx([0.9, 0.5])


def test_an_owners_entry_is_invisible_before_its_position():
    mem = memory()
    mem.store(unit([1, 0, 0, 0]), torch.ones(1, 2), items=torch.tensor([42]), owners=torch.tensor([7]), upto=torch.tensor([5]))
    q = torch.tensor([[1.0, 0, 0, 0]]).repeat(4, 1)
    owners, positions = torch.tensor([7, 7, 8, -1]), torch.tensor([4, 5, 0, 0])
    recall = mem.retrieve(q, k=1, owners=owners, positions=positions)
    assert recall.valid[:, 0].tolist() == [False, True, True, True]  # user 7 predicting item 5 must not see it
    assert recall.items[:, 0].tolist() == [-1, 42, 42, 42]
    assert mem.retrieve(q, k=1).valid.all()  # no owner: everything is visible


def test_hidden_entries_do_not_crowd_out_visible_ones():
    mem = memory(candidate_slack=0)
    n = 20  # many near-perfect entries of the querying user from later positions, one visible weaker entry
    mem.store(unit(*[[1, 0.01 * i, 0, 0] for i in range(n)]), torch.zeros(n, 2), owners=torch.full((n,), 1), upto=torch.full((n,), 50))
    mem.store(unit([0.8, 0.6, 0, 0]), torch.ones(1, 2), owners=torch.tensor([2]), upto=torch.tensor([1]))
    recall = mem.retrieve(torch.tensor([[1.0, 0, 0, 0]]), k=1, owners=torch.tensor([1]), positions=torch.tensor([3]))
    assert recall.valid.item() and recall.values[0, 0].tolist() == [1.0, 1.0]


def test_a_querys_result_does_not_depend_on_its_batch():
    torch.manual_seed(0)
    mem = memory(similarity_threshold=0.0)
    mem.store(torch.randn(300, 4), torch.randn(300, 2))
    mem.consolidate()
    mem.store(torch.randn(50, 4), torch.randn(50, 2))
    queries = torch.randn(64, 4)
    together = mem.retrieve(queries, k=5)
    for r in (0, 17, 63):
        alone = mem.retrieve(queries[r : r + 1], k=5)
        assert torch.equal(alone.values[0], together.values[r]) and torch.equal(alone.scores[0], together.scores[r])


def test_reading_does_not_change_the_memory_and_accesses_count_only_when_recorded():
    mem = memory()
    mem.store(unit([1, 0, 0, 0], [0, 1, 0, 0]), torch.zeros(2, 2))
    recall = mem.retrieve(torch.tensor([[1.0, 0, 0, 0]]), k=2)
    assert mem.tiers["short_term"].access.tolist() == [0.0, 0.0]
    mem.record_access(recall)
    assert mem.tiers["short_term"].access.tolist() == [1.0, 0.0]


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
def test_faiss_backend_gives_the_same_retrieval():
    torch.manual_seed(1)
    keys, values, queries = torch.randn(500, 4), torch.randn(500, 2), torch.randn(20, 4)
    exact, faiss = memory(similarity_threshold=0.3), memory(similarity_threshold=0.3, use_faiss=True)
    for mem in (exact, faiss):
        mem.store(keys, values, tier="long_term")
    assert faiss.tiers["long_term"].index.backend == "faiss" and exact.tiers["long_term"].index.backend == "torch"
    a, b = exact.retrieve(queries, k=5), faiss.retrieve(queries, k=5)
    assert torch.equal(a.valid, b.valid) and torch.equal(a.values, b.values)


def test_memories_round_trip_through_the_state_dict_and_torch_load():
    mem = memory(consolidation_threshold=0.5)
    mem.store(torch.randn(5, 4), torch.randn(5, 2), importance=0.9, items=torch.arange(5), owners=torch.tensor([1, 1, 2, 2, -1]), upto=torch.arange(5))
    mem.consolidate()
    mem.store(torch.randn(2, 4), torch.randn(2, 2), tier="episodic", metadata=[{"task": "vision", "label": torch.tensor(5)}, None])
    buffer = io.BytesIO()
    torch.save(mem.state_dict(), buffer)
    buffer.seek(0)
    copy = memory(consolidation_threshold=0.5)
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    assert copy.statistics() == mem.statistics()
    assert copy.tiers["episodic"].meta == ['{"task": "vision", "label": 5}', None]
    q = torch.randn(3, 4)
    a, b = mem.retrieve(q, k=4, threshold=-1.0), copy.retrieve(q, k=4, threshold=-1.0)
    assert torch.equal(a.values, b.values) and torch.equal(a.items, b.items)
