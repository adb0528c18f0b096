"""Hierarchical memory: build, save / load, retrieval tool, global aspects."""
from __future__ import annotations

import torch
import torch.nn.functional as F
import pytest

from memrec.assist.memory import MemoryIndex, MemoryUserError, Record, _aspect_key, _drop_contained, build_local_memory
from memrec.errors import MemrecError


def test_round_trip_is_equal(small_memory, small_setup, tmp_path):
    encode = small_setup[4]
    small_memory.save(tmp_path / "mem")
    loaded = MemoryIndex.load(tmp_path / "mem", encode)
    assert loaded == small_memory
    assert loaded.meta == small_memory.meta
    user = small_memory.users[0]
    assert [c.id for c in loaded.retrieve(user, ["glue for wood"], k=3)] == [c.id for c in small_memory.retrieve(user, ["glue for wood"], k=3)]
    assert loaded.aspects(small_memory.categories[0]) == small_memory.aspects(small_memory.categories[0])


def test_load_names_what_is_missing(tmp_path, small_setup):
    (tmp_path / "chunks.jsonl").write_text("")
    with pytest.raises(MemrecError, match="vectors.pt"):
        MemoryIndex.load(tmp_path, small_setup[4])


def test_every_user_has_records_patterns_and_profile(small_memory, small_setup):
    queries = small_setup[2]
    assert sorted(small_memory.users) == sorted(q.user for q in queries.queries)
    for q in queries.queries:
        kinds = {c.kind for c in small_memory.chunks(q.user)}
        assert kinds == {"record", "pattern", "profile"}
        assert small_memory.history(q.user) == list(q.history)
        assert len(small_memory.records(q.user)) >= len(q.history)


def test_retrieve_returns_only_that_users_chunks_top_k_by_similarity(small_memory, small_setup):
    encode = small_setup[4]
    for q in small_setup[2].queries[:10]:
        texts = [q.text, "strong adhesive"]
        got = small_memory.retrieve(q.user, texts, k=3)
        mine = small_memory.chunks(q.user)
        assert len(got) == min(3, len(mine))
        assert all(c.user == q.user for c in got)
        query = F.normalize(F.normalize(encode(texts), dim=-1).sum(0), dim=0)
        scores = F.normalize(encode([c.text for c in mine]), dim=-1) @ query
        best = sorted(range(len(mine)), key=lambda i: (-float(scores[i]), i))[:3]
        assert [c.id for c in got] == [mine[i].id for i in best]


def test_unknown_user_is_a_clear_error(small_memory):
    with pytest.raises(MemoryUserError, match="no local memory for user 'nobody'"):
        small_memory.retrieve("nobody", ["x"])


def test_aspects_are_deduplicated(small_memory):
    assert small_memory.categories
    for category in small_memory.categories:
        aspects = small_memory.aspects(category)
        keys = [set(_aspect_key(a)) for a in aspects]
        for i, k in enumerate(keys):
            assert not any(k <= earlier for earlier in keys[:i]), (category, aspects)
    assert _drop_contained(["grit", "Grit", "sanding grit", "grit sanding", "roll"]) == ["grit", "sanding grit", "roll"]


def test_long_records_are_chunked_and_counted_as_one_record(reasoner):
    review = " ".join(f"word{i}" for i in range(100))
    records = [Record("a", "glass beaker", "Lab", rating=4.0, review=review), Record("b", "steel ruler", "Tools")]
    chunks = build_local_memory("u", records, reasoner)
    ids = [c.id for c in chunks if c.kind == "record"]
    assert ids == ["u/record/0.0", "u/record/0.1", "u/record/0.2", "u/record/1"]
    memory = MemoryIndex(chunks, lambda texts: torch.randn(len(texts), 4, generator=torch.Generator().manual_seed(0)))
    assert [c.id for c in memory.records("u", last=1)] == ["u/record/1"]
    assert len(memory.records("u", last=2)) == 4
    assert "Rated 4/5" in chunks[0].text
