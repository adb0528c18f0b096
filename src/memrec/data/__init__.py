"""Data layer: readers, filtering, splits and batches."""
from memrec.data.dataset import PAD, ItemInfo, SequenceDataset
from memrec.data.registry import REGISTRY, load_dataset
from memrec.data.split import EvalSet, Split, split_dataset

__all__ = ["PAD", "ItemInfo", "SequenceDataset", "REGISTRY", "load_dataset", "EvalSet", "Split", "split_dataset"]
