"""Full-ranking evaluation over the whole catalogue.

Each example's target is ranked against every item, except padding and the items of the user's
full history (masked; a target that repeats a history item is therefore a miss). Ties count against
the model: the rank is the number of other items scoring *at least* as high as the target, so a
model that gives every item the same score gets zero on every metric. A NaN or infinite score is an
error. Metrics for one target: HR@K = Recall@K = [rank < K], NDCG@K = 1/log2(rank + 2),
MRR@K = 1/(rank + 1), each 0 when rank >= K; rank is 0-based.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from memrec import progress
from memrec.data.batching import EvalBatch, eval_batches
from memrec.data.split import EvalSet
from memrec.errors import MemrecError


class NonFiniteScoreError(MemrecError, ValueError):
    """A model produced NaN or infinite scores; they are never counted as hits."""


def check_finite(scores: torch.Tensor, batch: EvalBatch) -> None:
    """Raise :class:`NonFiniteScoreError` naming the rows of ``scores`` (B, N + 1) with NaN or infinity."""
    finite = torch.isfinite(scores[:, 1:])
    if not finite.all():
        rows = (~finite.all(dim=1)).nonzero().flatten()
        users = batch.users[rows[:5]].tolist()
        raise NonFiniteScoreError(f"the model produced NaN or infinite scores for {len(rows)} of {len(scores)} users (user indices {users}...)")


def rank_targets(scores: torch.Tensor, batch: EvalBatch) -> torch.Tensor:
    """0-based pessimistic rank of each target among unmasked items: (B, N + 1) scores -> (B,).

    Example:
        >>> from memrec.data.batching import make_eval_batch
        >>> b = make_eval_batch(np.array([0]), [np.array([1])], np.array([2]), max_len=5)
        >>> rank_targets(torch.tensor([[0.0, 9.0, 1.0, 1.0, 0.5]]), b).tolist()  # item 3 ties item 2
        [1]
    """
    if not torch.isfinite(scores[:, 1:].sum(dim=1)).all():  # a NaN or infinity makes its row's sum one
        check_finite(scores, batch)
    scores = scores.clone()
    scores[:, 0] = float("-inf")
    scores[batch.seen_rows, batch.seen_items] = float("-inf")
    target = scores.gather(1, batch.targets[:, None])  # (B, 1)
    return (scores >= target).sum(dim=1) - 1  # every other item at least as high ranks above


def user_ndcg(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k of each 0-based rank (0 from rank k on), for per-user comparisons.

    Example:
        >>> user_ndcg(np.array([0, 1, 10])).round(4).tolist()
        [1.0, 0.6309, 0.0]
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def ndcg_at(ranks, k: int) -> float:
    """Mean NDCG@k of 0-based ranks (a sequence, array or tensor; 0.0 for none): the mean of :func:`user_ndcg`.

    Example:
        >>> round(ndcg_at([0, 1, 10], 10), 4)  # (1 + 1/log2(3) + 0) / 3
        0.5436
    """
    return float(user_ndcg(ranks, k).mean()) if len(ranks) else 0.0


def metrics_from_ranks(ranks: np.ndarray, ks=(5, 10, 20)) -> dict[str, float]:
    """HR, Recall, NDCG and MRR at each K from 0-based ranks.

    Example:
        >>> metrics_from_ranks(np.array([0, 3]), ks=(1,))["ndcg@1"]
        0.5
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {}
    for k in ks:
        hit = ranks < k
        out[f"hit@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        out[f"recall@{k}"] = out[f"hit@{k}"]
        out[f"ndcg@{k}"] = ndcg_at(ranks, k)
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / (ranks + 1), 0.0).mean()) if len(ranks) else 0.0
    return out


MIN_ROWS = 8  # BLAS picks other kernels (other rounding) below this many rows
ITEM_CHUNK = 1 << 16  # catalogues larger than this are ranked this many items at a time (256 rows: 64 MiB of scores)


def padded_scores(model, batch: EvalBatch) -> torch.Tensor:
    """``model.score_all(batch)``, with batches under ``MIN_ROWS`` rows padded by empty histories.

    A row's width depends on its own history only (:func:`~memrec.data.batching.history_width`) and
    batches have at least ``MIN_ROWS`` rows, so every score is computed by the same kernels whatever
    the batch size, and results are bitwise identical for any size.
    """
    n = len(batch.targets)
    if n >= MIN_ROWS:
        return model.score_all(batch)
    extra = MIN_ROWS - n
    padded = replace(
        batch,
        users=torch.cat([batch.users, batch.users[:1].expand(extra)]),
        history=torch.cat([batch.history, batch.history.new_zeros(extra, batch.history.size(1))]),
        lengths=torch.cat([batch.lengths, batch.lengths.new_zeros(extra)]),
    )
    return model.score_all(padded)[:n]


def rank_in_chunks(users: torch.Tensor, items: torch.Tensor, batch: EvalBatch, chunk: int) -> torch.Tensor:
    """:func:`rank_targets` of the scores ``users @ items.T`` without the (B, N + 1) scores in memory:
    ``chunk`` items at a time, each row counting the unmasked items that score at least its target.
    users (B, d), items (N + 1, d) -> (B,). Each target's score is read from its own chunk's product,
    computed for at least ``MIN_ROWS`` rows, so every score is the one the whole product would give.

    Example:
        >>> from memrec.data.batching import make_eval_batch
        >>> b = make_eval_batch(np.array([0]), [np.array([1])], np.array([2]), max_len=5)
        >>> items = torch.tensor([[0.0], [9.0], [1.0], [1.0], [0.5]])
        >>> rank_in_chunks(torch.ones(1, 1), items, b, chunk=2).tolist()  # item 3 ties item 2
        [1]
    """
    n = items.size(0)
    target_scores = torch.empty(len(users))  # (B,)
    target_chunks = batch.targets // chunk
    for c in target_chunks.unique().tolist():
        rows = (target_chunks == c).nonzero().flatten()
        queries = users[rows.repeat(-(-MIN_ROWS // len(rows)))] if len(rows) < MIN_ROWS else users[rows]  # (>= MIN_ROWS, d)
        scores = (queries @ items[c * chunk : (c + 1) * chunk].T)[: len(rows)]  # (R, C)
        target_scores[rows] = scores.gather(1, (batch.targets[rows] - c * chunk)[:, None]).squeeze(1)
    masked = batch.seen_rows[batch.seen_items == batch.targets[batch.seen_rows]]  # rows whose target is in their history
    target_scores[masked] = float("-inf")  # as rank_targets: below every unmasked item
    at_least = torch.zeros(len(users), dtype=torch.long)  # (B,)
    for lo in range(0, n, chunk):
        scores = users @ items[lo : lo + chunk].T  # (B, C)
        if lo == 0:
            scores[:, 0] = 0.0  # padding, masked below
        if not torch.isfinite(scores.sum(dim=1)).all():  # check_finite skips its column 0
            check_finite(torch.cat([scores.new_zeros(len(users), 1), scores], dim=1), batch)
        if lo == 0:
            scores[:, 0] = float("-inf")
        inside = (batch.seen_items >= lo) & (batch.seen_items < lo + chunk)
        scores[batch.seen_rows[inside], batch.seen_items[inside] - lo] = float("-inf")
        at_least += (scores >= target_scores[:, None]).sum(dim=1)
    return at_least - 1  # the target counts itself


@torch.inference_mode()
def rank_evalset(model, evalset: EvalSet, max_len: int, batch_size: int = 512, item_chunk: int = ITEM_CHUNK) -> np.ndarray:
    """Ranks of every example of ``evalset`` (in its order) under ``model``; a catalogue of more than
    ``item_chunk`` items is ranked in chunks of that many (:func:`rank_in_chunks`) where the model's
    scores are dot products (:meth:`~memrec.models.SequentialRecommender.user_vectors`): the same ranks."""
    was_training = model.training
    model.eval()
    ranks = np.zeros(len(evalset), dtype=np.int64)
    try:
        batches = progress.track(eval_batches(evalset, max_len, batch_size), len(evalset), "evaluating", "user", size=lambda b: len(b[0]))
        for rows, batch in batches:
            users = model.user_vectors(batch) if model.num_items + 1 > item_chunk else None  # (B, d) or None
            if users is not None:
                ranks[rows] = rank_in_chunks(users, model.item_embeddings(), batch, item_chunk).numpy()
            else:
                ranks[rows] = rank_targets(padded_scores(model, batch), batch).numpy()
    finally:
        model.train(was_training)
    return ranks


def evaluate(model, evalset: EvalSet, max_len: int, batch_size: int = 512, ks=(5, 10, 20)) -> dict[str, float]:
    """Full-ranking metrics of ``model`` on ``evalset``."""
    return metrics_from_ranks(rank_evalset(model, evalset, max_len, batch_size), ks)
