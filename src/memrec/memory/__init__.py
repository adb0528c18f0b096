"""Memory mechanisms shared by the memory models: a vector index and episodic banks."""
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

__all__ = [
    "EpisodicConfig", "EpisodicMemory", "adaptive_k", "diversity", "quality",
    "FaissIndex", "FaissMissingError", "TorchIndex", "VectorIndex", "VectorIndexError",
    "exact_search", "load_index", "make_index", "select_topk",
]
