"""The Memory-Enhanced MoE seed's API, on memrec's layer (:mod:`memrec.memory.moe_layer`).

``from memrec.memory_moe import create_memory_enhanced_moe, MemoryConfig, ExpertSpecialization``
runs the seed's examples as written. ``MemoryConfig`` here is the expert-memory config
(:class:`memrec.memory.expert_memory.ExpertMemoryConfig`), not UR4Rec's per-user
``memrec.memory.user_memory.MemoryConfig``. The same layer is the feed-forward block of the
``memory-moe`` recommender (:mod:`memrec.models.memory_moe`).

Example:
    >>> import torch
    >>> model = create_memory_enhanced_moe(input_dim=16, output_dim=4, num_experts=2, hidden_dim=32)
    >>> output, info = model(torch.randn(3, 16), use_memory=True, store_experience=True)
    >>> output.shape, model.get_memory_statistics()["total_memories"]
    (torch.Size([3, 4]), 3)
"""
from __future__ import annotations

from memrec.memory.expert_memory import ExpertMemoryConfig as MemoryConfig
from memrec.memory.expert_memory import MemoryInputError
from memrec.memory.moe_layer import ExpertSpecialization, GatingNetwork, MemoryContext, MemoryEnhancedMoE

__all__ = ["create_memory_enhanced_moe", "MemoryConfig", "ExpertSpecialization", "MemoryEnhancedMoE", "GatingNetwork",
           "MemoryContext", "MemoryInputError"]


def create_memory_enhanced_moe(input_dim: int = 256, output_dim: int = 10, num_experts: int = 8, hidden_dim: int = 512,
                               expert_specializations: list | None = None, memory_config: MemoryConfig | None = None,
                               top_k: int = 2, dropout: float = 0.0) -> MemoryEnhancedMoE:
    """A :class:`MemoryEnhancedMoE` with the seed's defaults: input 256 and output 10 (its quick start),
    8 experts, hidden 512, top-2 routing. The seed writes ``create_memory_enhanced_moe(..., memory_config=config)``:
    an ``...`` input_dim stands for these defaults.

    Example:
        >>> model = create_memory_enhanced_moe(..., memory_config=MemoryConfig(top_k_retrieve=3))
        >>> model.input_dim, model.output_dim, model.num_experts
        (256, 10, 8)
    """
    if input_dim is Ellipsis:
        input_dim = 256
    return MemoryEnhancedMoE(input_dim, output_dim, num_experts, hidden_dim, expert_specializations, memory_config, top_k, dropout)
