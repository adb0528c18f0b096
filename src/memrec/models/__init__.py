"""Models behind one interface (:class:`SequentialRecommender`), found by name."""
from __future__ import annotations

from memrec.errors import ConfigError
from memrec.models.base import SequentialRecommender, masked_topk
from memrec.models.bsarec import BSARec, BSARecConfig
from memrec.models.gru4rec import GRU4Rec, GRU4RecConfig
from memrec.models.memory_moe import MemoryMoEConfig, MemoryMoERec
from memrec.models.ramrec import RAMRec, RAMRecConfig
from memrec.models.sasrec import SASRec, SASRecConfig
from memrec.models.ur4rec_moe import UR4RecConfig, UR4RecMoE

MODELS: dict[str, type[SequentialRecommender]] = {m.name: m for m in (SASRec, GRU4Rec, RAMRec, UR4RecMoE, MemoryMoERec, BSARec)}


def model_class(name: str) -> type[SequentialRecommender]:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}: expected one of {sorted(MODELS)}") from None


def model_config_class(name: str) -> type:
    return model_class(name).config_class


def build_model(name: str, num_items: int, max_len: int, config=None) -> SequentialRecommender:
    """Example:
    >>> build_model("gru4rec", num_items=10, max_len=5).name
    'gru4rec'
    """
    cls = model_class(name)
    return cls(num_items, max_len, config if config is not None else cls.config_class())


__all__ = ["MODELS", "SequentialRecommender", "masked_topk", "SASRec", "SASRecConfig", "GRU4Rec", "GRU4RecConfig", "RAMRec", "RAMRecConfig", "UR4RecMoE", "UR4RecConfig", "MemoryMoERec", "MemoryMoEConfig", "BSARec", "BSARecConfig", "build_model", "model_class"]
