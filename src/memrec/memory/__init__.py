"""Memory mechanisms shared by the memory models: per-user memory vectors, one transition memory, a vector index."""
from memrec.memory.adaptive_k import adaptive_k, diversity
from memrec.memory.index import (
    FaissIndex,
    FaissMissingError,
    TorchIndex,
    VectorIndex,
    VectorIndexError,
    exact_search,
    load_index,
    make_index,
    select_topk,
)
from memrec.memory.transitions import QualityConfig, TransitionConfig, TransitionMemory, quality, visible
from memrec.memory.user_memory import MemoryCell, MemoryConfig, MemoryVersionError, UpdateTrigger, UserMemory

__all__ = [
    "MemoryCell", "MemoryConfig", "MemoryVersionError", "UpdateTrigger", "UserMemory",
    "QualityConfig", "TransitionConfig", "TransitionMemory", "quality", "visible", "adaptive_k", "diversity",
    "FaissIndex", "FaissMissingError", "TorchIndex", "VectorIndex", "VectorIndexError",
    "exact_search", "load_index", "make_index", "select_topk",
]
