"""The deterministic reasoner: same output every run, contrastive aspects, memory filtering."""
from __future__ import annotations

from memrec.assist.deterministic import DeterministicConfig, DeterministicReasoner, terms
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


def test_profile_reads_an_integrated_profile_clause_by_clause(reasoner):
    """Only the clause about the asked category gives terms, not the other categories of the profile."""
    profile = MemoryChunk("u/profile/0", "u", "profile", "", "Buys mostly Lab & Scientific Products: pipette, borosilicate, "
                          "erlenmeyer; Fasteners: hillman, locknuts, stainless.")
    answer = reasoner.ideal_item_profile("I need something from lab & scientific products.", [], [profile])
    added = set(terms(answer.ideal_item_profile.split("From memory:")[1]))
    assert added and added <= {"pipette", "borosilicate", "erlenmeyer"}, answer.ideal_item_profile
    assert answer.useful_memory_ids == ["u/profile/0"]
    answer = reasoner.ideal_item_profile("I need something from fasteners.", [], [profile])
    assert set(terms(answer.ideal_item_profile.split("From memory:")[1])) <= {"hillman", "locknuts", "stainless"}


def test_memory_of_the_named_category_counts_without_an_informative_shared_word():
    """Category words that are in many item texts are generic, yet a request naming the category wants its memories."""
    documents = [f"item {i}. tapes adhesives sealants" for i in range(20)] + ["gorilla glue bottle", "steel ruler"]
    glue = MemoryChunk("u/record/0", "u", "record", "Tapes, Adhesives & Sealants", "Gorilla glue bottle. Tapes, Adhesives & Sealants")
    ruler = MemoryChunk("u/record/1", "u", "record", "Cutting Tools", "Steel ruler. Cutting Tools")
    request = "I'm looking for something in tapes, adhesives & sealants."
    on = DeterministicReasoner(documents=documents).ideal_item_profile(request, [], [glue, ruler])
    assert on.useful_memory_ids == ["u/record/0"] and "gorilla" in on.ideal_item_profile and "ruler" not in on.ideal_item_profile
    off = DeterministicReasoner(DeterministicConfig(category_match="never"), documents=documents).ideal_item_profile(request, [], [glue, ruler])
    assert off.useful_memory_ids == [] and "From memory" not in off.ideal_item_profile
    # a request that says more than the category ("duct tape") is matched on its words only, unless "always"
    specific = "I'm looking for duct tape in tapes, adhesives & sealants."
    assert DeterministicReasoner(documents=documents).ideal_item_profile(specific, [], [glue, ruler]).useful_memory_ids == []
    always = DeterministicReasoner(DeterministicConfig(category_match="always"), documents=documents)
    assert always.ideal_item_profile(specific, [], [glue, ruler]).useful_memory_ids == ["u/record/0"]


def test_own_template_words_are_never_added_to_the_profile():
    quoting = DeterministicReasoner(DeterministicConfig(typical_words=16))  # patterns quote their most typical record
    pattern = quoting.summarize_patterns("Lab & Scientific Products", ["Pyrex glass beaker 250 ml", "Kimax glass beaker 600 ml"])
    profile = quoting.integrate_profile({"Lab & Scientific Products": pattern})
    assert "records" in pattern and "Typical" in pattern and "Buys mostly" in profile
    chunks = [MemoryChunk("u/pattern/0", "u", "pattern", "Lab & Scientific Products", pattern),
              MemoryChunk("u/profile/0", "u", "profile", "", profile)]
    wide = DeterministicReasoner(DeterministicConfig(profile_terms=50))  # no documents: every word is informative
    answer = wide.ideal_item_profile("Can you recommend an item from lab & scientific products?", [], chunks)
    added = set(terms(answer.ideal_item_profile.split("From memory:")[1]))
    assert "beaker" in added or "pyrex" in added
    assert not added & {"records", "typical", "buys", "mostly"}, added


def test_aspects_are_chosen_for_the_request_by_co_occurrence_in_the_catalogue():
    catalogue = ["digital caliper stainless 6 inch", "digital caliper lcd", "digital thermometer", "infrared thermometer gun non-contact",
                 "infrared gun", "steel ruler", "glass beaker", "nitrile gloves", "latex gloves", "tape measure"]
    catalogue += [f"spare part number {n}" for n in range(20)]  # so that "caliper" is not generic
    r = DeterministicReasoner(documents=catalogue, scenarios=["Test, Measure & Inspect"])
    aspects = ["infrared", "gun", "digital", "stainless"]
    assert r.select_aspects("a caliper for my workshop", aspects) == ["digital"]  # not the thermometer gun's
    assert r.select_aspects("a beaker", aspects) == []  # nothing in the scenario fits: none rather than the strongest
    assert r.select_aspects("Can you recommend an item from test, measure & inspect?", aspects) == ["infrared", "gun", "digital"]


def test_patterns_and_aspects_leave_out_model_numbers_and_size_codes():
    r = DeterministicReasoner()
    pattern = r.summarize_patterns("Electrical", ["22AWG 10-HS22K6-25 crimp terminals kit", "3M crimp terminals 1400pcs"])
    assert "crimp" in pattern and "3m" in pattern and not any(code in pattern for code in ("22awg", "10-hs22k6-25", "1400pcs"))
    aspects = r.extract_aspects("Electrical", ["wire"] * 3, ["22awg copper wire", "22awg copper wire", "copper wire"], ["steel wire", "iron rod"])
    assert "copper" in aspects and "22awg" not in aspects
