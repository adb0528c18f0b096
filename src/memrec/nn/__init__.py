"""Building blocks shared by memrec models."""
from memrec.nn.dropout import Dropout
from memrec.nn.frequency import FrequencyFilter
from memrec.nn.transformer import CausalTransformer

__all__ = ["CausalTransformer", "Dropout", "FrequencyFilter"]
