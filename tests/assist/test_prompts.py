"""Prompt files and the strict parsing of LLM answers: every malformed answer is handled and counted."""
from __future__ import annotations

import json

import pytest

from memrec.assist.llm_reasoner import (
    PROMPTS_DIR, TASKS, LLMReasoner, MalformedAnswerError, PromptError, ideal_profile_messages, load_prompt, parse_ideal_profile,
    parse_list, parse_prompt,
)
from memrec.assist.types import MemoryChunk, ProfileAnswer

MEMORIES = [MemoryChunk("u7/record/0", "u7", "record", "Lab", "Pyrex 1000 mL glass beaker, low form"),
            MemoryChunk("u7/pattern/Lab", "u7", "pattern", "Lab", "prefers borosilicate glassware from Pyrex")]
IDS = {m.id for m in MEMORIES}
GOOD = json.dumps({"ideal_item_profile": "A 600 mL Pyrex borosilicate beaker", "useful_memory_ids": ["u7/record/0"]})


class Scripted:
    """A text generator that answers with fixed texts in turn: real parsing, hand-written LLM answers."""

    name = "scripted"

    def __init__(self, answers: list[str]):
        self.answers = list(answers)
        self.seen: list[list[dict[str, str]]] = []

    def generate(self, conversations, max_new_tokens=256, temperature=0.0):
        self.seen.extend(conversations)
        return [self.answers.pop(0) for _ in conversations]


VERSIONS = {"patterns": 1, "profile": 1, "aspects": 1, "select_aspects": 1, "ideal_profile": 3}  # 2: the answer prefill; 3: no worked example


@pytest.mark.parametrize("task", TASKS)
def test_every_prompt_file_is_versioned_and_renders(task):
    text = (PROMPTS_DIR / f"{task}.txt").read_text()
    assert text.splitlines()[0] == f"version: {task}/{VERSIONS[task]}"
    prompt = load_prompt(task)
    names = {"category", "records", "patterns", "queries", "positives", "negatives", "request", "aspects", "memories", "memory_ids"}
    messages = prompt.render(**{n: f"<{n}>" for n in names})
    asked = messages[-2] if prompt.prefill else messages[-1]  # the user turn to answer, before any prefill
    assert messages[0]["role"] == "system" and asked["role"] == "user" and messages[0]["content"]
    assert all("$" not in m["content"] for m in messages)
    assert bool(prompt.prefill) == (task == "ideal_profile")


def test_ideal_profile_prompt_asks_for_the_json_and_names_the_citable_ids():
    messages = ideal_profile_messages("a beaker for boiling water", ["material", "capacity"], MEMORIES)
    assert messages[0]["role"] == "system" and messages[-2]["role"] == "user"
    assert messages[-1]["role"] == "assistant" and messages[-1]["content"].startswith('{"ideal_item_profile": "')  # the prefill
    assert '"ideal_item_profile"' in messages[0]["content"] and '"useful_memory_ids"' in messages[0]["content"]
    # no worked example: SmolLM2-135M copied the example's profile and memory id (prompt version 2)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    user = messages[-2]["content"]
    assert "Request: a beaker for boiling water" in user and '"u7/record/0", "u7/pattern/Lab"' in user
    assert "- u7/pattern/Lab: prefers borosilicate glassware" in user and "material, capacity" in user
    assert "(none: cite [])" in ideal_profile_messages("a beaker", [], [])[-2]["content"]


def test_bad_prompt_files_and_missing_values_are_clear_errors(tmp_path):
    with pytest.raises(PromptError, match="first line 'version: t/N'"):
        parse_prompt("### system\nS\n### user\nU", "t")
    with pytest.raises(PromptError, match="expected a '### system' section, then '### user'"):
        parse_prompt("version: t/1\n### user\nU", "t")
    with pytest.raises(PromptError, match="no value for placeholder 'request'"):
        load_prompt("select_aspects").render(aspects="- size")
    with pytest.raises(PromptError, match="no prompt file for task 'ideal_profile'"):
        load_prompt("ideal_profile", str(tmp_path))


def test_a_well_formed_answer_is_accepted_even_inside_prose():
    answer = parse_ideal_profile(f"Sure! Here it is:\n```json\n{GOOD}\n```\nHope this helps.", IDS)
    assert answer == ProfileAnswer("A 600 mL Pyrex borosilicate beaker", ["u7/record/0"], answer.raw, True)
    assert parse_ideal_profile('{"ideal_item_profile": "x", "useful_memory_ids": []}', set()).useful_memory_ids == []


@pytest.mark.parametrize("text, reason", [
    ("A 600 mL beaker would be ideal.", "no JSON object"),
    ('{"ideal_item_profile": "x", "useful_memory_ids": ["u7/record/9"]}', "not offered"),
    ('{"ideal_item_profile": "x"}', "useful_memory_ids is missing"),
    ('{"useful_memory_ids": []}', "ideal_item_profile is missing"),
    ('{"ideal_item_profile": "  ", "useful_memory_ids": []}', "ideal_item_profile is missing"),
    ('{"ideal_item_profile": {"type": "beaker"}, "useful_memory_ids": []}', "ideal_item_profile is missing"),
    ('{"ideal_item_profile": "x", "useful_memory_ids": [3]}', "not a list of string ids"),
    ('{"ideal_item_profile": "x", "useful_memory_ids": ["u7/record/0"', "no JSON object"),
    ("", "no JSON object"),
])
def test_malformed_answers_are_rejected_with_the_reason(text, reason):
    with pytest.raises(MalformedAnswerError, match=reason):
        parse_ideal_profile(text, IDS)


def test_the_reasoner_never_raises_and_counts_every_malformed_answer():
    answers = [GOOD, "no json at all", '{"ideal_item_profile": "x", "useful_memory_ids": ["zz"]}', '{"ideal_item_profile": 5}',
               f"Prose first. {GOOD} and prose after."]
    reasoner = LLMReasoner(Scripted(answers))
    out = [reasoner.ideal_item_profile("a beaker for boiling water", ["material"], MEMORIES) for _ in answers]
    assert [a.well_formed for a in out] == [True, False, False, False, True]
    for bad, raw in zip(out[1:4], answers[1:4]):
        assert bad == ProfileAnswer("a beaker for boiling water", [], raw, well_formed=False)
    assert reasoner.calls["ideal_profile"] == 5 and reasoner.malformed["ideal_profile"] == 3
    assert reasoner.malformed_rate("ideal_profile") == pytest.approx(0.6)
    assert sum(n for (task, _), n in reasoner.reasons.items() if task == "ideal_profile") == 3


def test_list_answers_are_parsed_deduplicated_and_checked():
    assert parse_list('["Material", "capacity", "material", ""]') == ["Material", "capacity"]
    assert parse_list("The aspects are:\n1. Grit size\n2) backing\n- grit size\n* brand.") == ["Grit size", "backing", "brand"]
    assert parse_list('{"aspects": [') == []
    reasoner = LLMReasoner(Scripted(['["capacity", "colour"]', "I cannot tell.", "[]", "- material\n- Capacity"]))
    aspects = ["material", "capacity", "brand"]
    assert reasoner.select_aspects("a 1 L beaker", aspects) == ["capacity"]  # unknown 'colour' dropped
    assert reasoner.select_aspects("a 1 L beaker", aspects) == aspects  # nothing usable: every aspect, counted
    assert reasoner.select_aspects("a 1 L beaker", aspects) == []  # an explicit empty choice is an answer
    assert reasoner.select_aspects("a 1 L beaker", aspects) == ["material", "capacity"]
    assert reasoner.select_aspects("anything", []) == []  # no LLM call without candidates
    assert reasoner.calls["select_aspects"] == 4 and reasoner.malformed["select_aspects"] == 1


def test_free_text_tasks_fall_back_and_count_empty_answers():
    reasoner = LLMReasoner(Scripted(['  "Prefers borosilicate glassware."  ', "", "", "grit size\nbacking", "  "]))
    assert reasoner.summarize_patterns("Lab", ["Pyrex beaker", "Kimax flask"]) == "Prefers borosilicate glassware."
    assert reasoner.summarize_patterns("Lab", ["Pyrex beaker", "Kimax flask"]) == "Lab: Pyrex beaker; Kimax flask"
    assert reasoner.integrate_profile({"Lab": "glass", "Tools": "steel"}) == "glass steel"
    assert reasoner.extract_aspects("Abrasives", ["fine sanding roll"], ["120 grit roll"], ["sponge"]) == ["grit size", "backing"]
    assert reasoner.extract_aspects("Abrasives", ["q"], ["p"], ["n"]) == []
    assert dict(reasoner.malformed) == {"patterns": 1, "profile": 1, "aspects": 1}
    assert sum(reasoner.calls.values()) == 5
    assert "- Kimax flask" in reasoner.generator.seen[0][1]["content"]


# ----------------------------------------------------------------------------- the compact answer format
def test_the_compact_prompt_numbers_the_memories_and_answers_cite_them_by_number():
    messages = ideal_profile_messages("a beaker for boiling water", ["material"], MEMORIES, task="ideal_profile_compact")
    assert "1: " + MEMORIES[0].text[:40] in messages[-2]["content"] and "Memory numbers you may cite: 1, 2" in messages[-2]["content"]
    assert MEMORIES[0].id not in messages[-2]["content"]  # long ids cost tokens; numbers do not
    assert messages[-1] == {"role": "assistant", "content": '{"useful_memory_ids": ['}
    aliases = {"1": MEMORIES[0].id, "2": MEMORIES[1].id}
    answer = parse_ideal_profile('{"useful_memory_ids": [2, "1"], "ideal_item_profile": "a Pyrex beaker"}', set(), aliases)
    assert answer.useful_memory_ids == [MEMORIES[1].id, MEMORIES[0].id]
    with pytest.raises(MalformedAnswerError, match="not offered"):
        parse_ideal_profile('{"useful_memory_ids": [3], "ideal_item_profile": "a beaker"}', set(), aliases)
    with pytest.raises(MalformedAnswerError, match="copies the prompt's example"):  # what a policy trained on format alone writes
        parse_ideal_profile('{"useful_memory_ids": [1], "ideal_item_profile": "a short sentence"}', set(), aliases)
    assert "a short sentence" in messages[0]["content"]  # the example the parser refuses to take as a profile


def test_the_reasoner_with_the_compact_prompt_maps_numbers_to_ids_and_repairs_a_cut_profile():
    class Scripted:
        name = "scripted"

        def __init__(self):
            self.texts = ['{"useful_memory_ids": [1], "ideal_item_profile": "a Pyrex beaker"}',
                          '{"useful_memory_ids": [2], "ideal_item_profile": "a borosilicate beak',  # cut by the token limit
                          '{"useful_memory_ids": [1, 2]}']  # stopped after the list: no profile, malformed

        def generate(self, conversations, max_new_tokens=256, temperature=0.0):
            return [self.texts.pop(0) for _ in conversations]

    reasoner = LLMReasoner(Scripted(), profile_prompt="ideal_profile_compact")
    answers = [reasoner.ideal_item_profile("a beaker", [], MEMORIES) for _ in range(3)]
    assert answers[0].useful_memory_ids == [MEMORIES[0].id] and not answers[0].repaired
    assert answers[1].repaired and answers[1].ideal_item_profile == "a borosilicate beak" and answers[1].useful_memory_ids == [MEMORIES[1].id]
    assert not answers[2].well_formed and reasoner.malformed["ideal_profile"] == 1
    assert reasoner.versions["ideal_profile"] == "ideal_profile_compact/1"
