"""Every code example of ../shared/seeds/memory_enhanced_moe.md, each its own test, run as written.

Only the import line changes (``from training.memory_enhanced_moe import ...`` ->
``from memrec.memory_moe import ...``). The seed leaves its data to the reader (``x``, ``task1_data``,
``pretrain``, ...); each test defines those names, small and synthetic, before the seed's code, which
sits between ``--- the seed's code ---`` and ``--- end ---``. Examples after "Quick Start" continue from
its ``model`` and ``x``, so :func:`quick_start` runs it first. The bash blocks (pip install, demos)
are not memrec code and are not run here.
"""
import pytest
import torch

from memrec.memory.index import faiss_available
from memrec.memory_moe import ExpertSpecialization, MemoryConfig, create_memory_enhanced_moe

INPUT_DIM, OUTPUT_DIM = 256, 10  # the seed's quick start


def batches(n: int, shift: float = 0.0, rows: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n (inputs, class labels) batches: what the seed's task data, domain data and examples hold."""
    return [(torch.randn(rows, INPUT_DIM) + shift, torch.randint(0, OUTPUT_DIM, (rows,))) for _ in range(n)]


def quick_start():
    """Example "Quick Start (30 seconds)", verbatim but for the import line; ``x`` is a batch of 16 inputs."""
    torch.manual_seed(0)
    x = torch.randn(16, INPUT_DIM)
    # --- the seed's code ---
    from memrec.memory_moe import create_memory_enhanced_moe

    # Create model with memory
    model = create_memory_enhanced_moe(
        input_dim=256,
        output_dim=10,
        num_experts=8
    )

    # Forward pass (automatic memory storage & retrieval)
    output, info = model(x, use_memory=True, store_experience=True)

    print(f"Retrieved {info['total_memories_retrieved']} memories")
    # --- end ---
    return model, x, output, info


def test_quick_start():
    model, x, output, info = quick_start()
    assert output.shape == (16, 10) and info["total_memories_retrieved"] == 0  # nothing stored before this call
    assert model.get_memory_statistics()["total_memories"] == 16


def test_1_basic_forward_pass():
    model, x, _, _ = quick_start()
    # --- the seed's code ---
    # Without memory (standard MoE)
    output, info = model(x, use_memory=False)

    # With memory retrieval only
    output, info = model(x, use_memory=True, store_experience=False)

    # With memory + storage (full memory-enhanced mode)
    output, info = model(x, use_memory=True, store_experience=True)
    # --- end ---
    assert output.shape == (16, 10) and info["total_memories_retrieved"] >= 16  # each input finds itself
    assert model.get_memory_statistics()["total_memories"] == 32


def test_2_few_shot_adaptation():
    model, x, _, _ = quick_start()
    (x_sample_1, y_label_1), (x_sample_2, y_label_2), (x_sample_3, y_label_3) = [(row, int(y)) for row, y in zip(*batches(1, rows=3)[0])]
    new_task_data = torch.stack([x_sample_1, x_sample_2, x_sample_3]) + 0.01 * torch.randn(3, INPUT_DIM)
    # --- the seed's code ---
    # Collect examples
    examples = [
        (x_sample_1, y_label_1),
        (x_sample_2, y_label_2),
        (x_sample_3, y_label_3)
    ]

    # Adapt instantly!
    adapt_info = model.few_shot_adapt(examples)

    # Now ready for new task
    output, _ = model(new_task_data)
    # --- end ---
    assert adapt_info["num_examples"] == 3 and output.shape == (3, 10)
    assert model.get_memory_statistics()["episodic_count"] == 3


def test_3_manual_memory_management():
    model, x, _, _ = quick_start()
    # --- the seed's code ---
    # Store specific experience
    model.store_experience(
        input_data=x,
        metadata={'task': 'vision', 'label': 5},
        importance=0.9,  # High importance
        target_expert=0  # Optional: specific expert
    )

    # Consolidate short-term → long-term
    model.consolidate_memory()

    # Prune low-importance memories
    model.prune_memory()
    # --- end ---
    stats = model.get_memory_statistics()
    assert stats["per_expert"][0]["episodic"] == 16 and stats["consolidations"] == stats["prunings"] == 1


def test_4_expert_specialization():
    torch.manual_seed(0)
    vision_data, text_data = torch.randn(8, INPUT_DIM), torch.randn(8, INPUT_DIM)
    # --- the seed's code ---
    from memrec.memory_moe import ExpertSpecialization

    # Create with specializations
    model = create_memory_enhanced_moe(
        input_dim=256,
        output_dim=10,
        num_experts=4,
        expert_specializations=[
            ExpertSpecialization.VISION,
            ExpertSpecialization.LANGUAGE,
            ExpertSpecialization.REASONING,
            ExpertSpecialization.MULTIMODAL
        ]
    )

    # Gating network auto-routes to appropriate expert
    output_vision, _ = model(vision_data)    # → Vision expert
    output_text, _ = model(text_data)        # → Language expert
    # --- end ---
    assert output_vision.shape == output_text.shape == (8, 10)
    assert [s["specialization"] for s in model.get_memory_statistics()["per_expert"].values()] == ["vision", "language", "reasoning", "multimodal"]


def test_memory_settings():
    # --- the seed's code ---
    from memrec.memory_moe import MemoryConfig

    config = MemoryConfig(
        # Capacity
        short_term_capacity=100,      # Recent memories
        long_term_capacity=10000,     # Consolidated memories
        episodic_capacity=5000,       # Specific experiences
        semantic_capacity=5000,       # General knowledge

        # Retrieval
        top_k_retrieve=5,             # How many to retrieve
        similarity_threshold=0.7,     # Minimum similarity

        # Consolidation (short → long)
        consolidation_interval=1000,  # Every N forwards
        consolidation_threshold=0.8,  # Importance cutoff

        # Pruning
        enable_pruning=True,
        prune_interval=5000,          # Every N forwards
        min_importance=0.1            # Keep above this
    )

    model = create_memory_enhanced_moe(..., memory_config=config)
    # --- end ---
    assert (model.input_dim, model.output_dim, model.num_experts) == (256, 10, 8)  # `...`: the seed's other arguments
    assert model.experts[0].memory.config is config


def test_expert_settings():
    # --- the seed's code ---
    # More experts = more specialization
    model = create_memory_enhanced_moe(
        num_experts=16,  # vs. default 8
        hidden_dim=1024  # vs. default 512
    )

    # Custom expert capacities
    config = MemoryConfig(
        long_term_capacity=50000  # Large memory per expert
    )
    # --- end ---
    assert model.num_experts == 16 and model.experts[0].ffn[0].out_features == 1024
    output, _ = model(torch.randn(4, 256))
    assert output.shape == (4, 10) and config.long_term_capacity == 50000


def test_memory_statistics():
    model, x, _, _ = quick_start()
    # --- the seed's code ---
    # Get memory stats
    stats = model.get_memory_statistics()

    print(f"Total memories: {stats['total_memories']}")
    print(f"Episodic: {stats['episodic_count']}")
    print(f"Semantic: {stats['semantic_count']}")
    print(f"Short-term: {stats['short_term_count']}")
    print(f"Long-term: {stats['long_term_count']}")

    # Per-expert breakdown
    for expert_id, expert_stats in stats['per_expert'].items():
        print(f"Expert {expert_id}: {expert_stats['total']} memories")
        print(f"  Specialization: {expert_stats['specialization']}")
    # --- end ---
    assert stats["total_memories"] == stats["short_term_count"] == sum(s["total"] for s in stats["per_expert"].values()) == 16


def test_expert_usage_tracking():
    model, x, _, _ = quick_start()
    # --- the seed's code ---
    # See which experts are being used
    usage = model.gate.get_usage_statistics()

    print(f"Total forwards: {usage['total_forwards']}")
    for expert_id, count in usage['expert_counts'].items():
        pct = (count / usage['total_forwards']) * 100
        print(f"Expert {expert_id}: {count} times ({pct:.1f}%)")
    # --- end ---
    assert sum(usage["expert_counts"].values()) == usage["total_forwards"] == 16


def test_continual_learning():
    model, x, _, _ = quick_start()
    task1_data, task2_data = batches(2), batches(2, shift=2.0)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    # --- the seed's code ---
    # Task 1
    for epoch in range(10):
        for x, y in task1_data:
            output, _ = model(x, use_memory=True, store_experience=True)
            loss = criterion(output, y)
            loss.backward()
            optimizer.step()

    # Task 2 (still remembers Task 1!)
    for epoch in range(10):
        for x, y in task2_data:
            output, _ = model(x, use_memory=True, store_experience=True)
            # Retrieves Task 1 memories when relevant
            loss = criterion(output, y)
            loss.backward()
            optimizer.step()
    # --- end ---
    assert torch.isfinite(loss) and model.get_memory_statistics()["steps"] == 1 + 40


def test_multi_domain_learning():
    model, x, _, _ = quick_start()
    vision_data, language_data = batches(2), batches(2, shift=-2.0)
    # --- the seed's code ---
    # Vision task
    for x, y in vision_data:
        output, info = model(x, use_memory=True)
        # → Routes to vision expert + vision memories

    # Language task
    for x, y in language_data:
        output, info = model(x, use_memory=True)
        # → Routes to language expert + language memories

    # Each expert builds specialized memories!
    # --- end ---
    assert output.shape == (8, 10) and info["routing_weights"].shape == (8, 8)


def test_rapid_deployment_with_few_shot():
    model, x, _, _ = quick_start()
    general_data, customer_domain = batches(2), 1.5

    def pretrain(model, data):
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        for inputs, labels in data:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs, use_memory=True, store_experience=True)[0], labels).backward()
            optimizer.step()

    def collect_examples(domain, n):
        return [(row, int(label)) for row, label in zip(*batches(1, shift=domain, rows=n)[0])]

    customer_test_data = torch.randn(4, INPUT_DIM) + customer_domain
    # --- the seed's code ---
    # Pre-train on general tasks
    pretrain(model, general_data)

    # New customer deployment: just need 5 examples!
    customer_examples = collect_examples(customer_domain, n=5)
    model.few_shot_adapt(customer_examples)

    # Deploy immediately
    model.eval()
    predictions = model(customer_test_data)
    # --- end ---
    output, info = predictions
    assert output.shape == (4, 10) and model.get_memory_statistics()["episodic_count"] == 5


def test_troubleshooting_memory_not_growing():
    model, x, _, _ = quick_start()
    # --- the seed's code ---
    # Make sure store_experience=True
    output, _ = model(x, use_memory=True, store_experience=True)  # ✅

    # Check statistics
    stats = model.get_memory_statistics()
    print(stats['total_memories'])  # Should be > 0
    # --- end ---
    assert stats["total_memories"] == 32


def test_troubleshooting_low_retrieval_hits():
    # --- the seed's code ---
    # Lower similarity threshold
    config = MemoryConfig(similarity_threshold=0.5)  # was 0.7

    # Retrieve more memories
    config = MemoryConfig(top_k_retrieve=10)  # was 5
    # --- end ---
    assert config.top_k_retrieve == 10 and MemoryConfig(similarity_threshold=0.5).similarity_threshold == 0.5


def test_troubleshooting_memory_capacity_reached():
    # --- the seed's code ---
    # Increase capacity
    config = MemoryConfig(
        long_term_capacity=50000  # was 10000
    )

    # Or enable pruning
    config = MemoryConfig(
        enable_pruning=True,
        prune_interval=5000,
        min_importance=0.2  # More aggressive pruning
    )
    # --- end ---
    model = create_memory_enhanced_moe(input_dim=256, output_dim=10, num_experts=2, memory_config=config)
    assert model.experts[0].memory.config.min_importance == 0.2


def test_troubleshooting_expert_imbalance():
    model, x, _, _ = quick_start()
    # --- the seed's code ---
    # Check expert usage
    usage = model.gate.get_usage_statistics()
    print(usage['expert_counts'])

    # If imbalanced, may need:
    # - More diverse training data
    # - Different expert specializations
    # - Adjusted gating network learning rate
    # --- end ---
    assert sum(usage["expert_counts"].values()) == 16


def test_maximize_few_shot_performance():
    model, x, _, _ = quick_start()
    few_shot_examples = [(row, int(label)) for row, label in zip(*batches(1, rows=3)[0])]
    # --- the seed's code ---
    # Store examples with high importance
    for x, y in few_shot_examples:
        model.store_experience(
            input_data=x,
            metadata={'target': y, 'task': 'new_task'},
            importance=0.95  # Very high
        )
    # --- end ---
    assert model.get_memory_statistics()["episodic_count"] == 3


def test_optimize_retrieval_speed():
    # --- the seed's code ---
    # Use FAISS for large memories (>100K)
    config = MemoryConfig(
        use_faiss=True,
        long_term_capacity=1000000  # Million-scale
    )

    # Reduce top_k for faster retrieval
    config = MemoryConfig(top_k_retrieve=3)  # was 5
    # --- end ---
    assert config.top_k_retrieve == 3


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
def test_optimize_retrieval_speed_builds_a_faiss_model():
    config = MemoryConfig(use_faiss=True, long_term_capacity=1000000)  # the example's first config, in a model
    model = create_memory_enhanced_moe(input_dim=256, output_dim=10, num_experts=2, memory_config=config)
    x = torch.randn(8, 256)
    model(x, use_memory=True, store_experience=True)
    assert model(x)[1]["total_memories_retrieved"] >= 8


def test_balance_memory_vs_accuracy():
    # --- the seed's code ---
    # More memory = better accuracy but slower
    config = MemoryConfig(
        long_term_capacity=50000,  # High capacity
        top_k_retrieve=10          # More retrieval
    )

    # Less memory = faster but less accurate
    config = MemoryConfig(
        long_term_capacity=5000,   # Lower capacity
        top_k_retrieve=3           # Fewer retrieval
    )
    # --- end ---
    assert (config.long_term_capacity, config.top_k_retrieve) == (5000, 3)
