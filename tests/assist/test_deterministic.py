"""The deterministic reasoner: same output every run, contrastive aspects, memory filtering."""
from __future__ import annotations

from memrec.assist.deterministic import DeterministicReasoner, terms
from memrec.assist.evaluate import scientific_memory
from memrec.assist.types import MemoryChunk


def test_same_memory_and_profiles_on_every_run(small_setup, small_memory):
    _, _, queries, catalog, encode = small_setup
    again = scientific_memory(queries, DeterministicReasoner(documents=catalog.texts), catalog, encode)
    assert again == small_memory
    one, two = DeterministicReasoner(documents=catalog.texts), DeterministicReasoner(documents=catalog.texts)
    for q in queries.queries[:10]:
        memories = small_memory.chunks(q.user)
        aspects = one.select_aspects(q.text, small_memory.aspects(q.category))
        assert aspects == two.select_aspects(q.text, small_memory.aspects(q.category))
        assert one.ideal_item_profile(q.text, aspects, memories) == two.ideal_item_profile(q.text, aspects, memories)


def test_aspects_are_terms_of_true_items_not_of_similar_wrong_ones():
    r = DeterministicReasoner()
    positives = ["cordless drill brushless motor", "brushless impact driver", "brushless drill kit", "drill bits set"]
    negatives = ["corded drill", "drill press", "corded hammer drill", "drill stand"]
    aspects = r.extract_aspects("Tools", ["a drill"] * 4, positives, negatives)
    assert aspects[0] == "brushless"
    assert "drill" not in aspects and "corded" not in aspects


def test_select_aspects_prefers_those_sharing_words_with_the_request():
    r = DeterministicReasoner()
    assert r.select_aspects("a brushless drill", ["battery", "brushless motor", "torque"]) == ["brushless motor"]
    assert r.select_aspects("a drill", ["battery", "torque", "weight", "case"]) == ["battery", "torque", "weight"]


def test_profile_uses_only_memories_that_share_informative_words(reasoner):
    memories = [MemoryChunk("u/record/0", "u", "record", "Lab", "Pyrex borosilicate glass beaker 250 ml"),
                MemoryChunk("u/record/1", "u", "record", "Tools", "Stanley steel tape measure")]
    answer = reasoner.ideal_item_profile("a beaker for my lab", [], memories)
    assert answer.useful_memory_ids == ["u/record/0"]
    assert answer.ideal_item_profile.startswith("a beaker for my lab. From memory: ")
    added = set(terms(answer.ideal_item_profile.split("From memory:")[1]))
    assert added and added <= set(terms(memories[0].text))
    assert reasoner.ideal_item_profile("a beaker", [], []).useful_memory_ids == []
