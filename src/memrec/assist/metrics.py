"""Metrics of the assistant: ranking (Recall, NDCG), memory contribution (MPC, MRC), efficiency, AUC.

- ``recall_at(ranks, k)`` / ``ndcg_at(ranks, k)``: one target per request, 0-based pessimistic ranks
  (``ndcg_at`` is :func:`memrec.train.evaluate.ndcg_at`, the evaluator's NDCG).
- MPC (memory -> profile contribution) and MRC (memory -> recommendation contribution) are the
  paper's *heuristic* keyword-overlap scores: the share of the memories the reasoner declared useful
  that share at least one content word with the generated profile (MPC) or with the target item's
  text (MRC), averaged over requests that used any memory.
- efficiency = R@100 per 100 memory tokens.
- AUC: the Mann-Whitney statistic, ties counted one half.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from memrec.assist.deterministic import terms
from memrec.train.evaluate import ndcg_at  # noqa: F401  (the one NDCG of memrec; the assistant's evaluation imports it from here)


def recall_at(ranks: Sequence[int] | torch.Tensor, k: int) -> float:
    """Share of requests whose target ranks in the top ``k``.

    Example:
        >>> recall_at([0, 5, 20], 10)
        0.6666666666666666
    """
    ranks = torch.as_tensor(ranks)
    return float((ranks < k).double().mean()) if len(ranks) else 0.0


def overlap_share(memories: Sequence[str], text: str) -> float | None:
    """Share of memory texts with at least one content word in ``text``; None without memories.

    Example:
        >>> overlap_share(["red glass beaker", "steel ruler"], "a glass flask")
        0.5
    """
    if not memories:
        return None
    words = set(terms(text))
    return sum(1 for m in memories if set(terms(m)) & words) / len(memories)


def answer_contribution(answer, item_texts: Sequence[str]) -> dict:
    """Heuristic MPC and MRC of one answer (an :class:`~memrec.assist.pipeline.Answer`): the share of the memories
    it declared useful that share a content word with its profile (MPC) and with ``item_texts`` (the target's
    text in evaluation, the listed items' texts when asking); None without used memories.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> a = NS(used_memories=[NS(text="red glass beaker"), NS(text="steel ruler")], profile=NS(ideal_item_profile="a glass flask"))
        >>> answer_contribution(a, ["steel ruler, 30 cm"])
        {'MPC': 0.5, 'MRC': 0.5}
    """
    used = [m.text for m in answer.used_memories]
    return {"MPC": overlap_share(used, answer.profile.ideal_item_profile), "MRC": overlap_share(used, " ".join(item_texts))}


def mean_defined(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not None (None if there are none).

    Example:
        >>> mean_defined([1.0, None, 0.0]), mean_defined([None])
        (0.5, None)
    """
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def efficiency(recall_100: float, memory_tokens: float) -> float | None:
    """R@100 per 100 memory tokens (None when no memory is shown).

    Example:
        >>> round(efficiency(0.285, 95.43), 3)  # the paper's MR.Rec row
        0.299
    """
    return recall_100 / (memory_tokens / 100) if memory_tokens > 0 else None


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2.

    Example:
        >>> auc([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0])
        0.875
        >>> auc([1.0, 1.0], [1, 0])
        0.5
    """
    pairs = sorted(zip(scores, labels))
    n_pos = sum(1 for _, y in pairs if y)
    n_neg = len(pairs) - n_pos
    if not n_pos or not n_neg:
        raise ValueError(f"AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    rank_sum, i = 0.0, 0
    while i < len(pairs):  # average ranks over ties
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mean_rank = (i + 1 + j) / 2
        rank_sum += mean_rank * sum(1 for _, y in pairs[i:j] if y)
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def minilm_token_counter():
    """A function text -> number of MiniLM word-piece tokens (no special tokens), from the packaged tokenizer."""
    from transformers import AutoTokenizer

    from memrec.encoders.text import resolve_text_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_text_model("minilm"), local_files_only=True)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    return count
