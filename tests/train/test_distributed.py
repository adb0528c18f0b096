"""Distributed training: 2 gloo processes under torchrun on ML-100K, and the sharding pieces alone."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from memrec.api import load
from memrec.data.batching import TrainBatches, training_windows
from memrec.models import build_model
from memrec.train.distributed import DistributedError, Group, torchrun_command
from memrec.train.evaluate import evaluate, rank_evalset


def ml100k_slice(shared_data, path, users=400):
    """The interactions of ML-100K's first ``users`` users (in file order), as a CSV: real data, quick runs."""
    lines = (shared_data / "ml-100k" / "ml-100k.inter").read_text().splitlines()[1:]
    kept = list(dict.fromkeys(line.split("\t")[0] for line in lines))[:users]
    rows = [line.replace("\t", ",") for line in lines if line.split("\t")[0] in set(kept)]
    path.write_text("user_id,item_id,rating,timestamp\n" + "\n".join(rows) + "\n")
    return path


def test_two_gloo_processes_evaluate_exactly_as_one(shared_data, tmp_path):
    """`memrec train --nproc 2` (torchrun, DDP, gloo, with the neighbour memory): rank 0 writes one run,
    and its metrics, from evaluation sharded over the two ranks and gathered, equal one process's
    evaluation of the checkpoint bit for bit."""
    out = tmp_path / "run"
    data = ml100k_slice(shared_data, tmp_path / "ml-100k-400.csv")
    cmd = [sys.executable, "-m", "memrec", "train", "--nproc", "2", "--model", "sasrec", "--dataset", str(data),
           "--output", str(out), "--no-frozen", "--data.max_len=20", "--train.epochs=2",
           "--train.batch_size=128", "--model_config.hidden_size=16", "--model_config.num_layers=1",
           "--memory", "neighbours", "--memory.neighbours.ks=[128]", "--memory.neighbours.temperatures=[0.3]",
           "--memory.neighbours.weights=[0.1]", "--memory.neighbours.decays=[0.0]", "--memory.neighbours.confidence=0.0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("results in") == 1  # rank 0 alone speaks
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["epochs"] == 2

    rec = load(out)  # one process, the same checkpoint
    assert rec.model.neighbours.active  # every rank built the same neighbour memory, read by the sharded evaluation
    t = rec.config.train
    assert evaluate(rec.model, rec.split.valid, rec.config.data.max_len, t.eval_batch_size, t.metric_ks) == metrics["valid"]
    ranks = rank_evalset(rec.model, rec.split.test, rec.config.data.max_len, t.eval_batch_size)
    assert np.array_equal(np.load(out / "test_ranks.npz")["ranks"], ranks)
    assert evaluate(rec.model, rec.split.test, rec.config.data.max_len, t.eval_batch_size, t.metric_ks) == metrics["test"]
    assert metrics["curve"][1]["loss"] < metrics["curve"][0]["loss"]  # the ranks' averaged gradients made progress


def test_ranks_share_every_window_in_equal_steps(ml100k_split):
    """The sampler deals every training window to some rank, in equal numbers of steps of half the batch."""
    batches = TrainBatches(training_windows(ml100k_split.train, 50), 64)
    shares = [list(Group(rank, 2).epoch_batches(batches, seed=5)) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1])  # unequal steps would leave one rank waiting in a reduction
    assert max(len(b.users) for share in shares for b in share) == 32
    dealt = {(int(u), int(s)) for share in shares for b in share for u, s in zip(b.users, b.starts)}
    assert dealt == {(u, s) for u, s, _ in batches.windows}
    again = list(Group(0, 2).epoch_batches(batches, seed=5))
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(shares[0], again))  # an epoch's seed fixes its shares
    assert [b.users.tolist() for b in Group(0, 1).epoch_batches(batches, seed=5)] == [b.users.tolist() for b in batches.epoch(5)]


def test_a_model_writing_memory_while_training_is_refused():
    model = build_model("gru4rec", 10, 5)
    Group(0, 2).check_writes(model, [])  # no writes: fine
    Group(0, 1).check_writes(model, [lambda: None])  # one process: fine
    with pytest.raises(DistributedError, match="one process"):
        Group(0, 2).check_writes(model, [lambda: None])


def test_torchrun_command_and_a_bad_nproc():
    assert torchrun_command(3, ["train", "--nproc=3", "--output", "x"])[3:] == ["--standalone", "--nproc_per_node=3", "-m", "memrec", "train", "--output", "x"]
    with pytest.raises(DistributedError, match="positive"):
        torchrun_command(0, ["train"])
