"""Held-out rates of a policy: format-valid, memory call, and the recall of the profile the assistant would use."""
from __future__ import annotations

import pytest
import torch

from memrec.assist.catalog import ItemCatalog
from memrec.assist.grpo import RLExample
from memrec.assist.rl_eval import heldout_rates

PREFILL = '{"useful_memory_ids": ['


class Continuing:
    """Returns the prefill + a scripted continuation, as every generator does."""

    name = "continuing"

    def __init__(self, continuations):
        self.continuations = continuations

    def generate(self, conversations, max_new_tokens=40, temperature=0.0, seed=None):
        return [c[-1]["content"] + self.continuations[i] for i, c in enumerate(conversations)]


def test_rates_count_strictly_well_formed_answers_and_fall_back_to_the_request():
    vocab = {"beaker": [1.0, 0.0, 0.0], "gloves": [0.0, 1.0, 0.0], "caliper": [0.0, 0.0, 1.0]}
    catalog = ItemCatalog(list("bgc"), list(vocab), lambda ts: torch.tensor([next((v for k, v in vocab.items() if k in t), [0.3] * 3) for t in ts]))
    prompt = [{"role": "user", "content": "?"}, {"role": "assistant", "content": PREFILL}]
    examples = [RLExample(prompt, "b", ["1", "2"], [], "gloves") for _ in range(4)]
    answers = ['1], "ideal_item_profile": "a beaker"}',  # well-formed, cites memory 1, finds the target
               '], "ideal_item_profile": "a beaker"}',  # well-formed, no memory
               '3], "ideal_item_profile": "a beaker"}',  # cites a memory never offered: malformed
               '1, 2]}']  # no profile: malformed, the request ("gloves") is used
    rates = heldout_rates(Continuing(answers), examples, catalog)
    assert (rates["format_valid"], rates["memory_call"]) == (0.5, 0.25)
    # "a beaker" ranks the target first; the request "gloves" ranks it 3rd (tied with "c", pessimistic): 1 / log2(4)
    assert rates["R@10"] == 1.0 and rates["N@100"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)
    assert rates["answers"][0] == PREFILL + answers[0] and rates["prompts"] == 4
