"""Training and evaluation shared by every model."""
from memrec.train.evaluate import evaluate, metrics_from_ranks, rank_evalset
from memrec.train.run import train_and_evaluate
from memrec.train.trainer import Trainer

__all__ = ["Trainer", "evaluate", "metrics_from_ranks", "rank_evalset", "train_and_evaluate"]
