"""The seed's examples (memory_enhanced_moe.md), run as written with `from memrec.memory_moe import ...`."""
import pytest
import torch

from memrec.memory.index import faiss_available
from memrec.memory_moe import ExpertSpecialization, MemoryConfig, create_memory_enhanced_moe


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(16, 256)


def test_quick_start_and_basic_forward(x):
    model = create_memory_enhanced_moe(input_dim=256, output_dim=10, num_experts=8)
    output, info = model(x, use_memory=True, store_experience=True)
    assert output.shape == (16, 10) and info["total_memories_retrieved"] == 0
    output, info = model(x, use_memory=False)  # standard MoE
    assert info["total_memories_retrieved"] == 0
    output, info = model(x, use_memory=True, store_experience=False)  # retrieval only
    assert info["total_memories_retrieved"] >= 16  # each input finds itself
    output, info = model(x, use_memory=True, store_experience=True)
    assert f"Retrieved {info['total_memories_retrieved']} memories"


def test_few_shot_adaptation(x):
    model = create_memory_enhanced_moe(input_dim=256, output_dim=10, num_experts=8)
    x_sample_1, x_sample_2, x_sample_3 = x[:3]
    y_label_1, y_label_2, y_label_3 = 3, 7, 1
    examples = [(x_sample_1, y_label_1), (x_sample_2, y_label_2), (x_sample_3, y_label_3)]
    adapt_info = model.few_shot_adapt(examples)
    assert adapt_info["num_examples"] == 3
    new_task_data = x[:3] + 0.01 * torch.randn(3, 256)
    output, info = model(new_task_data)
    assert info["total_memories_retrieved"] >= 3
    assert model.get_memory_statistics()["episodic_count"] == 3


def test_manual_memory_management_and_statistics(x):
    model = create_memory_enhanced_moe(input_dim=256, output_dim=10, num_experts=8)
    model(x, use_memory=True, store_experience=True)
    model.store_experience(input_data=x, metadata={"task": "vision", "label": 5}, importance=0.9, target_expert=0)
    model.consolidate_memory()
    model.prune_memory()

    stats = model.get_memory_statistics()
    lines = [f"Total memories: {stats['total_memories']}", f"Episodic: {stats['episodic_count']}", f"Semantic: {stats['semantic_count']}",
             f"Short-term: {stats['short_term_count']}", f"Long-term: {stats['long_term_count']}"]
    for expert_id, expert_stats in stats["per_expert"].items():
        lines.append(f"Expert {expert_id}: {expert_stats['total']} memories")
        lines.append(f"  Specialization: {expert_stats['specialization']}")
    assert stats["episodic_count"] == 16 and stats["per_expert"][0]["episodic"] == 16
    assert stats["total_memories"] == sum(stats[f"{t}_count"] for t in ("short_term", "long_term", "episodic", "semantic"))
    assert len(lines) == 5 + 2 * 8

    usage = model.gate.get_usage_statistics()
    for expert_id, count in usage["expert_counts"].items():
        pct = (count / usage["total_forwards"]) * 100
        assert 0 <= pct <= 100
    assert sum(usage["expert_counts"].values()) == usage["total_forwards"] == 16


def test_expert_specialization(x):
    model = create_memory_enhanced_moe(
        input_dim=256,
        output_dim=10,
        num_experts=4,
        expert_specializations=[
            ExpertSpecialization.VISION,
            ExpertSpecialization.LANGUAGE,
            ExpertSpecialization.REASONING,
            ExpertSpecialization.MULTIMODAL,
        ],
    )
    output_vision, _ = model(x[:8])
    output_text, _ = model(x[8:])
    assert output_vision.shape == output_text.shape == (8, 10)
    model.store_experience(input_data=x[0], metadata={"task": "reasoning", "label": 2})
    assert model.get_memory_statistics()["per_expert"][2]["episodic"] == 1


def test_configuration_examples():
    config = MemoryConfig(
        short_term_capacity=100,
        long_term_capacity=10000,
        episodic_capacity=5000,
        semantic_capacity=5000,
        top_k_retrieve=5,
        similarity_threshold=0.7,
        consolidation_interval=1000,
        consolidation_threshold=0.8,
        enable_pruning=True,
        prune_interval=5000,
        min_importance=0.1,
    )
    model = create_memory_enhanced_moe(input_dim=256, output_dim=10, num_experts=8, memory_config=config)
    assert model.experts[0].memory.config.long_term_capacity == 10000
    model = create_memory_enhanced_moe(input_dim=256, output_dim=10, num_experts=16, hidden_dim=1024)
    assert model.num_experts == 16
    for tweak in ({"similarity_threshold": 0.5}, {"top_k_retrieve": 10}, {"long_term_capacity": 50000}, {"top_k_retrieve": 3},
                  {"enable_pruning": True, "prune_interval": 5000, "min_importance": 0.2}):
        MemoryConfig(**tweak)


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
def test_faiss_for_large_memories(x):
    config = MemoryConfig(use_faiss=True, long_term_capacity=1000000)
    model = create_memory_enhanced_moe(input_dim=256, output_dim=10, num_experts=2, memory_config=config)
    model(x, use_memory=True, store_experience=True)
    assert model(x)[1]["total_memories_retrieved"] >= 16
    assert model.experts[0].memory.tiers["long_term"].index.backend == "faiss"


def test_continual_learning_loop_and_few_shot_tips():
    torch.manual_seed(0)
    model = create_memory_enhanced_moe(input_dim=32, output_dim=4, num_experts=4, hidden_dim=64)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    task1_data = [(torch.randn(8, 32), torch.randint(0, 4, (8,))) for _ in range(3)]
    task2_data = [(torch.randn(8, 32) + 2, torch.randint(0, 4, (8,))) for _ in range(3)]
    for data in (task1_data, task2_data):
        for epoch in range(2):
            for x, y in data:
                optimizer.zero_grad()
                output, _ = model(x, use_memory=True, store_experience=True)
                loss = criterion(output, y)
                loss.backward()
                optimizer.step()
    assert model.get_memory_statistics()["total_memories"] > 0
    for x, y in task1_data[:1]:  # the performance tip: few-shot examples with high importance
        model.store_experience(input_data=x, metadata={"target": y[0], "task": "new_task"}, importance=0.95)
    model.eval()
    predictions = model(task1_data[0][0])
    assert predictions[0].shape == (8, 4)
