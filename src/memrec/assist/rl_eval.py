"""Held-out checks of the GRPO policy: how often its answers are well-formed and cite memory, and what they retrieve.

The paper reports that RL raised the format-valid rate from 68% to 100% and the memory-call rate from 15% to
100%. :func:`heldout_rates` measures both on prompts the policy never trained on, for any
:class:`~memrec.assist.types.TextGenerator` (the model before and after training):

- ``format_valid``: share of answers that the strict parser accepts as written (no repair);
- ``memory_call``: share of answers that are well-formed and cite at least one offered memory;
- ``R@10`` / ``R@100`` / ``N@100``: the target's rank over the whole catalogue (history masked, pessimistic
  ties) for the profile the assistant would use: the answer's profile, or the request when it is malformed.
"""
from __future__ import annotations

from memrec.assist.grpo import RLExample, format_credit
from memrec.assist.metrics import recall_at
from memrec.assist.types import prefill_of
from memrec.train.evaluate import user_ndcg


def heldout_rates(generator, examples: list[RLExample], catalog, max_new_tokens: int = 40, temperature: float = 0.0,
                  seed: int | None = 0) -> dict:
    """Format-valid rate, memory-call rate and recall of ``generator``'s answers to ``examples`` (see the module notes).

    Example:
        >>> import torch
        >>> from memrec.assist.catalog import ItemCatalog
        >>> catalog = ItemCatalog(["b", "g"], ["beaker", "gloves"], lambda ts: torch.tensor([[1.0, 0.0] if "beaker" in t else [0.0, 1.0] for t in ts]))
        >>> class Fixed:
        ...     name = "fixed"
        ...     def generate(self, conversations, max_new_tokens=40, temperature=0.0, seed=None):
        ...         return ['{"useful_memory_ids": [1], "ideal_item_profile": "a beaker"}', '{"useful_memory_ids": [1]}']
        >>> ex = [RLExample([{"role": "user", "content": "?"}], "b", ["1"], [], "gloves"), RLExample([{"role": "user", "content": "?"}], "b", ["1"], [], "gloves")]
        >>> r = heldout_rates(Fixed(), ex, catalog)
        >>> r["format_valid"], r["memory_call"], r["R@10"]  # the malformed answer falls back to the request ("gloves")
        (0.5, 0.5, 1.0)
    """
    conversations = [e.messages for e in examples]
    kwargs = {"seed": seed} if temperature > 0 and seed is not None else {}
    texts = generator.generate(conversations, max_new_tokens=max_new_tokens, temperature=temperature, **kwargs)
    return {"prompts": len(examples), "max_new_tokens": max_new_tokens, "temperature": temperature, **score_answers(examples, texts, catalog)}


def score_answers(examples: list[RLExample], texts: list[str], catalog) -> dict:
    """The rates and recall of :func:`heldout_rates` for answers already written (``texts``, one per example),
    read with the current strict parser: stored answers can be scored again when the parser changes."""
    answers = []
    for e, text in zip(examples, texts):
        prefill = prefill_of(e.messages)
        text = text if text.startswith(prefill) else prefill + text
        _, memory, parsed = format_credit(text, e.memory_ids, partial_credit=False)
        answers.append((text, parsed, memory))
    profiles = [parsed.ideal_item_profile if parsed else e.request for e, (_, parsed, _) in zip(examples, answers)]
    ranks = catalog.ranks(profiles, [e.target for e in examples], exclude=[list(e.exclude) for e in examples])
    n = max(len(examples), 1)
    return {
        "format_valid": sum(1 for _, p, _ in answers if p) / n,
        "memory_call": sum(1 for _, p, m in answers if p and m > 0) / n,
        "R@10": recall_at(ranks, 10), "R@100": recall_at(ranks, 100), "N@100": float(user_ndcg(ranks.numpy(), 100).mean()),
        "answers": [t for t, _, _ in answers],
    }
