"""Training in several processes with torch.distributed: DDP, users sharded, evaluation gathered.

``torchrun --nproc_per_node=N -m memrec train ...`` (or ``memrec train --nproc N``, which starts
torchrun) runs N copies of the same run. Each process (rank) reads the data and builds the same model
from the same seed; :class:`Group` then does what differs from one process:

- training: a :class:`~torch.utils.data.DistributedSampler` deals the users' training windows out
  anew each epoch in equal shares, each rank takes ``batch_size // N`` windows per step (the global
  batch stays ``batch_size``) and DDP averages the gradients; equal shares mean equal numbers of
  steps, so no rank is left waiting in a reduction (the hang of uneven shards);
- evaluation: each rank ranks every N-th user and the ranks are gathered in the evaluation set's
  order, so the metrics are computed from the very numbers one process computes (a row's scores do
  not depend on its batch: :func:`~memrec.train.evaluate.padded_scores`), bitwise equal for the same
  weights, and every rank takes the same early-stopping decision;
- rank 0 alone writes the run folder (checkpoint, metrics, plots, logs) and prints.

The neighbour memory after training is built by every rank from the same weights (the same work as
one process: not sharded, no speed-up for that step), so that the sharded final evaluation reads it.
Models that write a memory while training (RAMRec's bank, MemoryMoE's expert memory) are refused: the
ranks' memories would drift apart. The group uses gloo for CPU tensors (memrec trains on the CPU) and
NCCL for CUDA tensors when CUDA is present (backend ``cpu:gloo,cuda:nccl``).

Example:
    >>> group = Group.from_env({})  # not started by torchrun: one process, nothing distributed
    >>> group.world, group.is_main
    (1, True)
"""
from __future__ import annotations

import datetime
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from memrec.data.batching import TrainBatches
from memrec.data.split import EvalSet
from memrec.errors import MemrecError
from memrec.train.evaluate import metrics_from_ranks, rank_evalset

TIMEOUT = datetime.timedelta(minutes=30)  # a collective that waits this long fails instead of hanging


class DistributedError(MemrecError, RuntimeError):
    """A distributed run cannot go on as asked (a model that cannot be trained in several processes, a bad --nproc)."""


class _Loss(nn.Module):
    """The model's training loss as a ``forward``, so that DDP sees the step (its gradient hooks are
    armed by ``forward``) while the model keeps its own ``loss`` method."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch, objective, writes: list) -> torch.Tensor:
        return self.model.loss(batch, objective, writes)


@dataclass
class Group:
    """This process's place among the ranks of a run: ``rank`` of ``world`` (1: no distribution)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls, env=None) -> "Group":
        """The group torchrun describes in ``RANK`` and ``WORLD_SIZE`` (else one process)."""
        env = os.environ if env is None else env
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def start(self) -> None:
        """Join the process group (torchrun's rendezvous in the environment); nothing for one process."""
        if self.world > 1 and not dist.is_initialized():
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=TIMEOUT)

    def stop(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.barrier()  # nobody leaves while another rank may still need it
            dist.destroy_process_group()

    # -- training -----------------------------------------------------------------------------------
    def batch_size(self, batch_size: int) -> int:
        """Windows per step on this rank: the global ``batch_size`` split over the ranks."""
        return max(1, batch_size // self.world)

    def epoch_batches(self, batches: TrainBatches, seed: int):
        """This rank's batches of the epoch ``seed`` stands for. A
        :class:`~torch.utils.data.DistributedSampler` deals out the training windows (each user's
        sequence in pieces of ``max_len``), shuffled by ``seed``, in equal shares (it repeats a few
        windows when they do not divide evenly): every rank takes the same number of steps, so no
        rank waits for a gradient reduction that never comes. One process: ``batches.epoch(seed)``."""
        if self.world == 1:
            return batches.epoch(seed)
        from torch.utils.data import DistributedSampler

        share = DistributedSampler(range(len(batches.windows)), self.world, self.rank, shuffle=True, seed=seed)
        windows = [batches.windows[i] for i in share]
        return TrainBatches(windows, self.batch_size(batches.batch_size), getattr(batches, "last_only", False)).epoch(seed + self.rank)

    def wrap(self, model: nn.Module):
        """A step function ``(batch, objective, writes) -> loss``: the model's loss, through DDP when distributed."""
        step = _Loss(model)
        if self.world == 1:
            return step
        return nn.parallel.DistributedDataParallel(step)

    def check_writes(self, model, writes: list) -> None:
        if self.world > 1 and writes:
            raise DistributedError(f"{model.name} writes its memory while training (each rank would keep a different memory): "
                                   "train it in one process (no --nproc / torchrun)")

    def mean(self, values: list[float]) -> float:
        """The mean of ``values`` over every rank's values."""
        total = torch.tensor([float(np.sum(values)), float(len(values))], dtype=torch.float64)
        if self.world > 1:
            dist.all_reduce(total)
        return float(total[0] / max(total[1], 1.0))

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (e.g. a time limit, read on clocks that differ)."""
        if self.world == 1:
            return flag
        box = [flag]
        dist.broadcast_object_list(box, src=0)
        return bool(box[0])

    # -- evaluation ---------------------------------------------------------------------------------
    def rank_evalset(self, model, evalset: EvalSet, max_len: int, batch_size: int = 512) -> np.ndarray:
        """:func:`~memrec.train.evaluate.rank_evalset`, sharded: this rank ranks examples ``rank::world``,
        and every rank gets every example's rank, in ``evalset``'s order."""
        if self.world == 1:
            return rank_evalset(model, evalset, max_len, batch_size)
        rows = np.arange(self.rank, len(evalset), self.world)
        mine = torch.from_numpy(rank_evalset(model, evalset.subset(rows), max_len, batch_size))  # (ceil or floor of E / world,)
        width = -(-len(evalset) // self.world)
        padded = torch.full((width,), -1, dtype=torch.int64)
        padded[: len(mine)] = mine
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        ranks = np.empty(len(evalset), dtype=np.int64)
        for r, part in enumerate(parts):
            ranks[r :: self.world] = part[: len(range(r, len(evalset), self.world))].numpy()
        return ranks

    def evaluate(self, model, evalset: EvalSet, max_len: int, batch_size: int = 512, ks=(5, 10, 20)) -> dict[str, float]:
        """:func:`~memrec.train.evaluate.evaluate`, sharded the same way (equal to one process's)."""
        return metrics_from_ranks(self.rank_evalset(model, evalset, max_len, batch_size), ks)


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command that runs ``memrec`` with ``argv`` (``--nproc`` taken out) in ``nproc`` processes.

    Example:
        >>> torchrun_command(2, ["train", "--nproc", "2", "--output", "runs/x"])[-5:]
        ['-m', 'memrec', 'train', '--output', 'runs/x']
    """
    if nproc < 1:
        raise DistributedError(f"--nproc must be a positive integer, got {nproc}")
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "memrec", *rest]


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``memrec ARGV`` in ``nproc`` processes under torchrun; its exit status (0: every rank succeeded)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}  # torchrun would warn and set 1
    return subprocess.call(torchrun_command(nproc, argv), env=env)
