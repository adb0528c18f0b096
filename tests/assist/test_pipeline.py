"""The assistant: what each memory setting shows, ranked items, used memories, timings, evaluation."""
from __future__ import annotations

import pytest

from memrec.assist.evaluate import evaluate_setting
from memrec.assist.pipeline import DEFAULT_K_MEMORY, SETTINGS, SUMMARY_KINDS, Assistant
from memrec.errors import ConfigError


@pytest.fixture(scope="module")
def assistants(reasoner, small_memory, small_setup):
    return {s: Assistant(reasoner, small_memory, small_setup[3], s) for s in SETTINGS}


def test_context_of_each_setting(assistants, small_memory, small_setup):
    q = next(q for q in small_setup[2].queries if len(q.history) >= 2)
    assert assistants["none"].context(q) == ([], [])
    assert assistants["naive"].context(q) == ([], small_memory.records(q.user, last=10))
    assert assistants["static"].context(q) == ([], small_memory.profile(q.user))
    aspects, chunks = assistants["hierarchical"].context(q)
    assert set(aspects) <= set(small_memory.aspects(q.category)) and len(aspects) <= 3
    assert 1 <= len(chunks) <= DEFAULT_K_MEMORY and all(c.user == q.user for c in chunks)
    assert {c.kind for c in chunks} <= {"pattern", "profile"}  # the summary levels, never raw records
    assert chunks == small_memory.retrieve(q.user, [q.text, *aspects], k=DEFAULT_K_MEMORY, kinds=SUMMARY_KINDS)
    records = small_memory.retrieve(q.user, [q.text], k=50, kinds=["record"])
    assert records and {c.kind for c in records} == {"record"}


def test_ask_returns_ranked_items_used_memories_and_timings(assistants, small_setup):
    catalog = small_setup[3]
    for setting, assistant in assistants.items():
        for q in small_setup[2].queries[:8]:
            answer = assistant.ask(q, k=10)
            assert len(answer.items) == 10
            scores = [h.score for h in answer.items]
            assert scores == sorted(scores, reverse=True)
            assert not {h.item for h in answer.items} & set(q.history)
            assert set(answer.profile.useful_memory_ids) <= {m.id for m in answer.memories}
            assert set(answer.timings) == {"memory", "llm", "items"} and min(answer.timings.values()) >= 0
            assert (answer.memory_tokens == 0) == (not answer.memories and not answer.aspects)
            assert [h.item for h in answer.items] == [h.item for h in catalog.search([answer.profile.ideal_item_profile], 10, [list(q.history)])[0]]
    used = [assistants["naive"].ask(q).used_memories for q in small_setup[2].queries]
    assert any(used), "the deterministic reasoner used no memory for any request"


def test_unknown_setting_is_refused(reasoner, small_memory, small_setup):
    with pytest.raises(ConfigError, match="unknown memory setting 'full'"):
        Assistant(reasoner, small_memory, small_setup[3], "full")


def test_evaluate_setting_agrees_with_the_answers(assistants, small_setup):
    queries = small_setup[2].queries
    result = evaluate_setting(assistants["hierarchical"], queries)
    assert result["queries"] == len(queries)
    assert 0 <= result["R@10"] <= result["R@100"] <= result["R@1000"] <= 1
    assert 0 <= result["N@10"] <= result["N@100"] <= result["N@1000"] <= 1
    in_top10 = sum(q.target in {h.item for h in assistants["hierarchical"].ask(q, k=10).items} for q in queries)
    assert result["R@10"] == pytest.approx(in_top10 / len(queries))
    assert result["memory_tokens"] > 0 and result["efficiency"] == pytest.approx(result["R@100"] / (result["memory_tokens"] / 100))
    assert result["MPC"] is None or 0 <= result["MPC"] <= 1
    none = evaluate_setting(assistants["none"], queries)
    assert none["memory_tokens"] == 0 and none["efficiency"] is None and none["MPC"] is None


def test_repaired_and_malformed_profiles_are_counted_apart(small_memory, small_setup):
    from memrec.assist.llm_reasoner import LLMReasoner
    from memrec.assist.types import prefill_of

    class Scripted:  # keeps the generator contract: prefill + a scripted continuation, in turn
        name = "scripted"

        def __init__(self, continuations):
            self.continuations = list(continuations)

        def generate(self, conversations, max_new_tokens=256, temperature=0.0):
            return [prefill_of(c) + self.continuations.pop(0) for c in conversations]

    queries = small_setup[2].queries[:4]
    continuations = ['a glass beaker", "useful_memory_ids": []}', "a glass beaker, 600 mL, borosil", "I cannot", 'x", "ids": []} and prose']
    assistant = Assistant(LLMReasoner(Scripted(continuations)), small_memory, small_setup[3], "none")
    result = evaluate_setting(assistant, queries)
    # 1 strict, 1 cut off and repaired (used), 1 repaired as a cut-off string too ("I cannot" is a profile), 1 malformed (a wrong key)
    assert (result["repaired"], result["malformed"]) == (2, 1)
    assert assistant.reasoner.repaired["ideal_profile"] == 2 and assistant.reasoner.malformed["ideal_profile"] == 1
