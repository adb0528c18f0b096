"""Memory mechanisms shared by the memory models: per-user memory vectors, episodic banks, a vector index."""
from memrec.memory.episodic import EpisodicConfig, EpisodicMemory, adaptive_k, diversity, quality
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
from memrec.memory.user_memory import MemoryCell, MemoryConfig, MemoryVersionError, UpdateTrigger, UserMemory

__all__ = [
    "MemoryCell", "MemoryConfig", "MemoryVersionError", "UpdateTrigger", "UserMemory",
    "EpisodicConfig", "EpisodicMemory", "adaptive_k", "diversity", "quality",
    "FaissIndex", "FaissMissingError", "TorchIndex", "VectorIndex", "VectorIndexError",
    "exact_search", "load_index", "make_index", "select_topk",
]
