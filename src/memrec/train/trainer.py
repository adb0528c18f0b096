"""The trainer every model shares: all positions at once, early stopping on validation NDCG@10."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from memrec import progress
from memrec.config import RunConfig
from memrec.data.batching import TrainBatches, training_windows
from memrec.data.split import Split
from memrec.models import SequentialRecommender
from memrec.train.distributed import Group
from memrec.train.losses import item_counts, make_objective

SELECT_METRIC = "ndcg@10"


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    train_seconds: float
    valid: dict[str, float] | None = None


@dataclass
class TrainResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    stopped_because: str = ""

    @property
    def train_seconds_per_epoch(self) -> float:
        return float(np.mean([r.train_seconds for r in self.history])) if self.history else 0.0


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Fits a model on ``split.train`` and keeps the weights with the best validation NDCG@10.

    Example:
        >>> from memrec.data import SequenceDataset, split_dataset
        >>> from memrec.models import build_model
        >>> ds = SequenceDataset.from_sequences({f"u{i}": ["a", "b", "c", "d", "e"] for i in range(4)})
        >>> cfg = RunConfig.from_dict({"train": {"epochs": 2}, "data": {"max_len": 4}})
        >>> result = Trainer(build_model("sasrec", ds.num_items, 4), split_dataset(ds), cfg).fit(log=lambda line: None)
        >>> len(result.history)
        2
    """

    def __init__(self, model: SequentialRecommender, split: Split, config: RunConfig, writer=None, progress: bool | None = None,
                 group: Group | None = None):
        self.model = model
        self.group = group or Group()  # the ranks of a torchrun run (memrec.train.distributed); one process by default
        self.split = split
        self.config = config
        self.writer = writer  # a TensorBoard SummaryWriter, or None
        self.progress = progress
        t = config.train
        self.objective = make_objective(t.loss, t.num_negatives, t.sampler, t.logq, item_counts(split.train, model.num_items))
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.step = self.group.wrap(model)  # (batch, objective, writes) -> loss; through DDP when distributed
        self.batches = TrainBatches(training_windows(split.train, config.data.max_len, t.train_windows), t.batch_size,
                                    last_only=t.train_windows == "prefixes")

    def train_epoch(self, epoch: int) -> float:
        t = self.config.train
        self.model.train()
        torch.manual_seed(t.seed * 100_003 + epoch + self.group.rank)
        losses = []
        with progress.bar(-(-len(self.batches) // self.group.world), f"epoch {epoch}", "batch", self.progress) as bar:
            for batch in self.group.epoch_batches(self.batches, t.seed * 100_003 + epoch):
                writes = []
                loss = self.step(batch, self.objective, writes)
                self.group.check_writes(self.model, writes)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}; lower train.lr or set train.grad_clip")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if t.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
                self.optimizer.step()
                self.model.write_memory(writes)  # the explicit memory step: what the batch asked to remember
                losses.append(loss.item())
                bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
                bar.update()
        return self.group.mean(losses)

    def validate(self) -> dict[str, float]:
        t = self.config.train
        with progress.switched(self.progress):
            return self.group.evaluate(self.model, self.split.valid, self.config.data.max_len, t.eval_batch_size, t.metric_ks)

    def fit(self, log=print, on_validation=None) -> TrainResult:
        """Train until early stopping; ``on_validation(epoch, validation NDCG@10)`` hears every validation
        (``memrec tune`` prunes through it: an exception it raises ends training)."""
        t = self.config.train
        result = TrainResult()
        best_state, best_score, since_best = None, -1.0, 0
        started = time.perf_counter()
        for epoch in range(1, t.epochs + 1):
            tic = time.perf_counter()
            try:
                loss = self.train_epoch(epoch)
            except KeyboardInterrupt:  # Ctrl-C (SIGINT): keep the best weights so far and go on to the test
                if self.group.world > 1:
                    raise  # ranks stop at different steps: their collectives would no longer match
                result.stopped_because = f"interrupted during epoch {epoch}"
                break
            record = EpochRecord(epoch, loss, time.perf_counter() - tic)
            result.history.append(record)
            if epoch % t.eval_every == 0 or epoch == t.epochs:
                record.valid = self.validate()
                score = record.valid[SELECT_METRIC]
                if score > best_score:
                    best_score, since_best = score, 0
                    best_state = copy.deepcopy(self.model.state_dict())
                    result.best_epoch, result.best_valid = epoch, record.valid
                else:
                    since_best += t.eval_every
                log(f"epoch {epoch:4d}  loss {loss:.4f}  {record.train_seconds:.2f}s  valid ndcg@10 {score:.4f}  hit@10 {record.valid['hit@10']:.4f}"
                    + ("  *" if since_best == 0 else ""))
                if on_validation is not None:
                    on_validation(epoch, score)
            self._log_tensorboard(record)
            if since_best >= t.patience:
                result.stopped_because = f"no better validation {SELECT_METRIC} for {t.patience} epochs"
                break
            if t.max_minutes is not None and self.group.agree(time.perf_counter() - started > 60 * t.max_minutes):
                result.stopped_because = f"time limit of {t.max_minutes} minutes"
                break
        else:
            result.stopped_because = f"reached {t.epochs} epochs"
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return result

    def _log_tensorboard(self, record: EpochRecord) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar("train/loss", record.loss, record.epoch)
        self.writer.add_scalar("train/seconds", record.train_seconds, record.epoch)
        for key, value in (record.valid or {}).items():
            self.writer.add_scalar(f"valid/{key}", value, record.epoch)
