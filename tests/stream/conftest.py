"""Toys of the stream tests: a small stream with returning users, newcomers and an unknown item, and
tiny real checkpoints (GRU4Rec, UR4Rec-MoE with its per-user memory), with or without a neighbour memory."""
from __future__ import annotations

import types

import numpy as np
import torch

from memrec.config import RunConfig
from memrec.models import build_model
from memrec.serve.testing import TINY
from memrec.store.events import Event
from memrec.stream.protocol import StreamEvent
from memrec.train.checkpoint import save_checkpoint

ITEMS = [f"i{n}" for n in range(1, 13)]
USERS = [f"u{k}" for k in range(6)]


def toy_stream(seed: int = 0, n: int = 60, unknown: bool = True):
    """Six users with pasts, two newcomers, a stream with repeats of users and (``unknown``) one unknown item."""
    rng = np.random.default_rng(seed)
    before = {u: [Event(str(it), float(t)) for t, it in enumerate(rng.choice(ITEMS, 4, replace=False))] for u in USERS}
    stream = [StreamEvent(str(rng.choice(USERS + ["new1", "new2"])), str(rng.choice(ITEMS)), 10.0 + t) for t in range(n)]
    if unknown:
        stream[7] = StreamEvent(stream[7].user, "unseen-item", stream[7].timestamp)
    return before, stream


def toy_checkpoint(tmp_path, neighbours: bool, model: str = "gru4rec"):
    """An untrained ``model`` over ITEMS (max_len 5) whose training users are USERS (UR4Rec-MoE's memory
    read 30 times louder); with ``neighbours``
    a neighbour memory of 12 entries in use (its keys the model's states of random histories)."""
    torch.manual_seed(0)
    config = RunConfig.from_dict({"model": model, "data": {"max_len": 5}, "model_config": TINY[model]})
    net = build_model(model, len(ITEMS), 5, config.model_config).eval()
    if hasattr(net, "memory_out"):  # untrained, the memory's share of the user vector is too small to move a rank
        with torch.no_grad():
            net.memory_out.weight.mul_(30.0)
    if neighbours:
        from memrec.data.batching import make_eval_batch

        histories = [np.random.default_rng(n).integers(1, len(ITEMS) + 1, 3) for n in range(12)]
        with torch.no_grad():
            keys = net.scores_and_states(make_eval_batch(np.arange(12) % 6, histories, np.zeros(12, dtype=np.int64), 5))[1]
        net.neighbours.build(keys, torch.randint(1, len(ITEMS) + 1, (12, 2)), torch.arange(12) % 6)
        net.neighbours.set(k=4, temperature=0.3, weight=0.5)
    ds = types.SimpleNamespace(item_ids=["[PAD]"] + ITEMS, user_ids=USERS, fingerprint=lambda: "toy")
    path = tmp_path / f"{model}{'-nb' if neighbours else ''}.pt"
    save_checkpoint(path, net, config, ds)
    return path
