"""The memory-enhanced MoE layer: routing, memory reads that learn, writes only when asked, persistence."""
import pytest
import torch

from memrec.errors import ConfigError
from memrec.memory.expert_memory import ExpertMemoryConfig, MemoryInputError
from memrec.memory.index import faiss_available
from memrec.memory.moe_layer import ExpertSpecialization, MemoryContext, MemoryEnhancedMoE


def layer(num_experts=3, **config) -> MemoryEnhancedMoE:
    torch.manual_seed(0)
    cfg = ExpertMemoryConfig(**{"similarity_threshold": 0.5, **config})
    return MemoryEnhancedMoE(input_dim=8, output_dim=4, num_experts=num_experts, hidden_dim=16, memory_config=cfg)


def test_gate_routes_each_row_to_top_k_experts_and_counts_usage():
    moe = layer(num_experts=4)
    out, info = moe(torch.randn(10, 8))
    w = info["routing_weights"]
    assert torch.allclose(w.sum(-1), torch.ones(10)) and ((w > 0).sum(-1) == 2).all()
    usage = moe.gate.get_usage_statistics()
    assert usage["total_forwards"] == 10 and sum(usage["expert_counts"].values()) == 10 and usage["forward_calls"] == 1
    assert info["balance_loss"].requires_grad
    out, _ = moe(torch.randn(2, 5, 8))  # any leading shape
    assert out.shape == (2, 5, 4)
    with pytest.raises(ConfigError):
        MemoryEnhancedMoE(8, 4, num_experts=2, top_k=0)


def test_an_empty_memory_is_a_plain_mixture_of_experts():
    moe = layer()
    x = torch.randn(6, 8)
    assert torch.equal(moe(x, use_memory=True)[0], moe(x, use_memory=False)[0])
    assert moe(x)[1]["total_memories_retrieved"] == 0


def test_storing_goes_to_the_top_experts_short_term_memory_and_reading_writes_nothing():
    moe = layer()
    x = torch.randn(6, 8)
    _, info = moe(x, store_experience=True)
    top = info["routing_weights"].argmax(-1)
    stats = moe.get_memory_statistics()
    assert info["memories_stored"] == 6 and stats["short_term_count"] == 6
    assert [stats["per_expert"][e]["short_term"] for e in range(3)] == [int((top == e).sum()) for e in range(3)]
    before = {k: v for k, v in moe.state_dict().items() if "extra_state" in k and "experts" in k}
    moe.eval()
    _, info = moe(x)  # reads
    assert info["total_memories_retrieved"] >= 6
    after = {k: v for k, v in moe.state_dict().items() if "extra_state" in k and "experts" in k}
    assert str(before) == str(after) and moe.steps == 1


def test_gradients_reach_everything_that_reads_memory():
    moe = layer(similarity_threshold=0.0)
    x = torch.randn(30, 8)
    table = torch.randn(12, 4, requires_grad=True)
    moe(x, store_experience=True, context=MemoryContext(items=torch.arange(30) % 10, value_table=table))
    query = (x + 0.01 * torch.randn(30, 8)).requires_grad_()
    out, info = moe(query, context=MemoryContext(value_table=table))
    assert info["total_memories_retrieved"] > 0
    out.square().sum().backward()
    read = [e for e, n in enumerate(info["memories_per_expert"]) if n > 0]
    for e in read:
        expert = moe.experts[e]
        for p in (expert.read_proj.weight, expert.read_gate.weight, expert.log_scale):
            assert p.grad is not None and p.grad.abs().sum() > 0
    assert table.grad[:10].abs().sum() > 0 and table.grad[10:].abs().sum() == 0  # only the recalled items
    assert query.grad.abs().sum() > 0


def test_consolidation_and_pruning_run_on_their_intervals_and_on_demand():
    moe = layer(consolidation_interval=2, consolidation_threshold=0.0, prune_interval=3, min_importance=0.99)
    moe(torch.randn(4, 8), store_experience=True)
    assert moe.get_memory_statistics()["long_term_count"] == 0
    moe(torch.randn(4, 8), store_experience=True)  # step 2: consolidation
    stats = moe.get_memory_statistics()
    assert stats["long_term_count"] == 8 and stats["short_term_count"] == 0 and stats["semantic_count"] > 0
    moe(torch.randn(4, 8), store_experience=True)  # step 3: pruning below 0.99 drops everything
    assert moe.get_memory_statistics()["total_memories"] == 0 and moe.maintenance == {"consolidations": 1, "prunings": 1}
    moe(torch.randn(4, 8), store_experience=True)  # step 4: consolidation again
    assert moe.get_memory_statistics()["long_term_count"] == 4
    moe.experts[0].memory.store(torch.randn(3, 8), torch.randn(3, 4))  # on demand, between intervals:
    assert moe.consolidate_memory()["moved"] == 3
    assert moe.prune_memory(min_importance=1.0)["long_term"] == 7


def test_few_shot_examples_pull_similar_inputs_towards_their_labels():
    moe = layer(num_experts=2).eval()
    torch.manual_seed(1)
    xs, ys = torch.randn(5, 8), torch.tensor([0, 1, 2, 3, 0])
    queries = xs + 0.05 * torch.randn(5, 8)
    before = moe(queries)[0]
    info = moe.few_shot_adapt(list(zip(xs, ys)))
    assert info["num_examples"] == 5 and info["memories_stored"] == 5
    after, used = moe(queries)
    assert used["total_memories_retrieved"] >= 5
    gain = (after - before)[torch.arange(5), ys]
    assert (gain > 0.2).all()
    assert moe.get_memory_statistics()["episodic_count"] == 5


def test_experiences_go_to_the_asked_or_specialised_expert():
    specs = [ExpertSpecialization.VISION, ExpertSpecialization.LANGUAGE, ExpertSpecialization.REASONING]
    moe = MemoryEnhancedMoE(8, 4, num_experts=3, hidden_dim=16, expert_specializations=specs)
    assert moe.store_experience(torch.randn(8), {"task": "language", "label": 1}, importance=0.9)["experts"] == [1]
    assert moe.store_experience(torch.randn(2, 8), {"task": "vision"}, target_expert=2)["experts"] == [2, 2]
    stats = moe.get_memory_statistics()
    assert stats["per_expert"][1]["episodic"] == 1 and stats["per_expert"][2]["episodic"] == 2
    assert stats["per_expert"][0]["specialization"] == "vision"
    with pytest.raises(MemoryInputError, match="target_expert must be in 0..2"):
        moe.store_experience(torch.randn(8), target_expert=3)


def test_bad_input_gives_clear_errors():
    moe = layer()
    with pytest.raises(MemoryInputError, match=r"shape \(\.\.\., 8\)"):
        moe(torch.randn(3, 7))
    with pytest.raises(MemoryInputError, match="NaN"):
        moe(torch.full((1, 8), float("nan")))
    with pytest.raises(MemoryInputError, match="float tensor"):
        moe(torch.ones(2, 8, dtype=torch.long))
    with pytest.raises(MemoryInputError, match="at least one"):
        moe.few_shot_adapt([])
    with pytest.raises(MemoryInputError, match="out of range"):
        moe.few_shot_adapt([(torch.randn(8), 9)])
    with pytest.raises(MemoryInputError, match="pair"):
        moe.few_shot_adapt([torch.randn(8)])


def test_memories_are_saved_with_the_state_dict_and_alone(tmp_path):
    moe = layer(consolidation_threshold=0.0)
    moe(torch.randn(20, 8), store_experience=True)
    moe.consolidate_memory()
    moe.few_shot_adapt([(torch.randn(8), 2)])
    x = torch.randn(7, 8)
    expected = moe.eval()(x)[0]
    usage = moe.gate.get_usage_statistics()
    torch.save(moe.state_dict(), tmp_path / "moe.pt")
    copy = layer(consolidation_threshold=0.0).eval()
    copy.load_state_dict(torch.load(tmp_path / "moe.pt", weights_only=True))
    assert copy.gate.get_usage_statistics() == usage
    assert torch.equal(copy(x)[0], expected)
    assert copy.get_memory_statistics() == moe.get_memory_statistics()
    moe.save_memory(tmp_path / "memories.pt")
    fresh = layer(consolidation_threshold=0.0)
    fresh.load_state_dict({k: v for k, v in moe.state_dict().items() if "extra_state" not in k}, strict=False)
    fresh.load_memory(tmp_path / "memories.pt")
    assert torch.equal(fresh.eval()(x)[0], expected)
    with pytest.raises(MemoryInputError, match="3 experts"):
        layer(num_experts=2).load_memory(tmp_path / "memories.pt")


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
def test_faiss_memories_give_the_same_outputs():
    exact, faiss = layer(), layer(use_faiss=True)
    x = torch.randn(30, 8)
    for moe in (exact, faiss):
        moe(x, store_experience=True)
    q = x + 0.01 * torch.randn(30, 8)
    assert torch.allclose(exact.eval()(q)[0], faiss.eval()(q)[0], atol=1e-6)


def test_episodes_recall_their_items_from_the_live_table_and_count_one_step():
    moe = layer(num_experts=2).eval()
    table = torch.randn(6, 4)
    x = torch.randn(3, 8)
    assert moe.store_episodes(x, torch.tensor([1, 4, 5]), 0.9, owners=torch.tensor([7, 7, 7]), upto=torch.tensor([1, 2, 3]), value_table=table) == 3
    assert moe.steps == 1 and moe.get_memory_statistics()["episodic_count"] == 3
    expert = moe.experts[int(moe.gate.proj(x[:1]).argmax())]
    recall = expert.memory.retrieve(x[:1], k=1, threshold=0.99)
    assert recall.items[0, 0] > 0 and torch.equal(recall.values[0, 0], table[recall.items[0, 0]])
    changed = table.clone()
    changed[recall.items[0, 0]] += 1.0  # reads resolve the value from the table they are given
    assert not torch.allclose(expert.read(x[:1], recall, table), expert.read(x[:1], recall, changed))


def test_episodes_give_clear_errors():
    moe = layer()
    with pytest.raises(MemoryInputError, match="2 rows but 1 items"):
        moe.store_episodes(torch.randn(2, 8), torch.tensor([1]), value_table=torch.randn(5, 4))
    with pytest.raises(MemoryInputError, match="value_table of shape"):
        moe.store_episodes(torch.randn(1, 8), torch.tensor([1]))
    with pytest.raises(MemoryInputError, match="items must be in 0..4"):
        moe.store_episodes(torch.randn(1, 8), torch.tensor([5]), value_table=torch.randn(5, 4))
