"""The assistant: request -> aspects -> memory retrieval -> ideal item profile -> items.

Four memory settings decide what the reasoner sees when it writes the ideal item profile:

- ``none``: the request only;
- ``naive``: the chunks of the user's last 10 behaviour records;
- ``static``: the user's whole integrated profile;
- ``hierarchical`` (MR.Rec): the reasoner picks decision aspects from the scenario's global memory,
  then the memory-retrieval tool returns the top-k local chunks for the request and those aspects.

The profile is embedded and matched against the catalogue (items of the user's history excluded).
``Answer.timings`` splits the wall time into memory retrieval, reasoner (LLM) calls and item
retrieval; ``Answer.memory_tokens`` counts the tokens of the memory text shown to the reasoner
(chunks, plus the selected aspects in the hierarchical setting).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from memrec import progress
from memrec.assist.catalog import Hit, ItemCatalog
from memrec.assist.memory import MemoryIndex
from memrec.assist.types import MemoryChunk, ProfileAnswer, Query, Reasoner
from memrec.errors import ConfigError

SETTINGS = ("none", "naive", "static", "hierarchical")
# The hierarchical setting reads the summary levels of the user's memory (per-category patterns and
# the integrated profile), the request and its aspects choosing which; the README's assistant table
# measures it against the raw records (naive) and against retrieving records too.
SUMMARY_KINDS = ("pattern", "profile")
DEFAULT_K_MEMORY = 2


def whitespace_tokens(text: str) -> int:
    """Tokens as whitespace-separated words (the default counter; evaluation uses MiniLM's tokenizer).

    Example:
        >>> whitespace_tokens("prefers  glass beakers")
        3
    """
    return len(text.split())


@dataclass
class Answer:
    """Ranked items with the memories and aspects that produced them."""

    items: list[Hit]
    profile: ProfileAnswer
    memories: list[MemoryChunk]  # the memory chunks shown to the reasoner
    aspects: list[str] = field(default_factory=list)  # decision aspects chosen (hierarchical only)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: memory, llm, items
    memory_tokens: int = 0

    @property
    def used_memories(self) -> list[MemoryChunk]:
        """The shown chunks the reasoner declared useful (``useful_memory_ids``)."""
        wanted = set(self.profile.useful_memory_ids)
        return [m for m in self.memories if m.id in wanted]


class Assistant:
    """MR.Rec's inference pipeline over a reasoner, a memory index and an item catalogue.

    Example:
        >>> import torch
        >>> from memrec.assist.deterministic import DeterministicReasoner
        >>> from memrec.assist.memory import Record, build_memory
        >>> vocab = {"glass beaker": [1.0, 0.0, 0.0], "steel ruler": [0.0, 1.0, 0.0], "glass flask": [0.9, 0.0, 0.3]}
        >>> encode = lambda texts: torch.tensor([vocab.get(t, [0.5, 0.5, 0.5]) for t in texts])
        >>> catalog = ItemCatalog(["b", "r", "f"], list(vocab), encode)
        >>> memory = build_memory({"u": [Record("b", "glass beaker", "Lab")]}, DeterministicReasoner(), encode)
        >>> answer = Assistant(DeterministicReasoner(), memory, catalog, "naive").ask(Query("q", "u", "glass", "Lab", "f", ("b",)), k=2)
        >>> [h.item for h in answer.items], answer.profile.useful_memory_ids, sorted(answer.timings)
        (['f', 'r'], ['u/record/0'], ['items', 'llm', 'memory'])
    """

    def __init__(self, reasoner: Reasoner, memory: MemoryIndex, catalog: ItemCatalog, setting: str = "hierarchical",
                 k_memory: int = DEFAULT_K_MEMORY, naive_window: int = 10, count_tokens=whitespace_tokens, exclude_history: bool = True):
        if setting not in SETTINGS:
            raise ConfigError(f"unknown memory setting {setting!r}: expected one of {SETTINGS}")
        self.reasoner, self.memory, self.catalog = reasoner, memory, catalog
        self.setting, self.k_memory, self.naive_window = setting, k_memory, naive_window
        self.count_tokens = count_tokens
        self.exclude_history = exclude_history
        self.malformed = 0  # profiles the reasoner could not write in the strict format
        self.repaired = 0  # cut-off profiles closed by the LLM reasoner's repair (used; not malformed)

    def context(self, query: Query) -> tuple[list[str], list[MemoryChunk]]:
        """The aspects selected and the memory chunks shown for this request under this setting."""
        return self._context(query, {"memory": 0.0, "llm": 0.0})

    def _context(self, query: Query, timings: dict[str, float]) -> tuple[list[str], list[MemoryChunk]]:
        start = time.perf_counter()
        if self.setting == "none":
            aspects, chunks = [], []
        elif self.setting == "naive":
            aspects, chunks = [], self.memory.records(query.user, last=self.naive_window)
        elif self.setting == "static":
            aspects, chunks = [], self.memory.profile(query.user)
        else:
            available = self.memory.aspects(query.category)
            timings["memory"] += time.perf_counter() - start
            start = time.perf_counter()
            aspects = list(self.reasoner.select_aspects(query.text, available)) if available else []
            timings["llm"] += time.perf_counter() - start
            start = time.perf_counter()
            chunks = self.memory.retrieve(query.user, [query.text, *aspects], k=self.k_memory, kinds=SUMMARY_KINDS)
        timings["memory"] += time.perf_counter() - start
        return aspects, chunks

    def ask(self, query: Query, k: int = 10) -> Answer:
        """The ``k`` best items for the request, with the profile, memories and timings behind them."""
        timings = {"memory": 0.0, "llm": 0.0, "items": 0.0}
        aspects, chunks = self._context(query, timings)
        start = time.perf_counter()
        profile = self.reasoner.ideal_item_profile(query.text, aspects, chunks)
        timings["llm"] += time.perf_counter() - start
        return self._finish(query, aspects, chunks, profile, timings, k)

    def ask_many(self, queries: list[Query], k: int = 10, batch_size: int = 16) -> list[Answer]:
        """:meth:`ask` for many requests. A reasoner with ``ideal_item_profiles`` (batched LLM generation)
        writes ``batch_size`` profiles per call; each request is charged an equal share of its batch's time."""
        batched = getattr(self.reasoner, "ideal_item_profiles", None)
        if batched is None:
            return [self.ask(q, k) for q in progress.track(queries, len(queries), f"{self.setting} memory", "request")]
        answers = []
        starts = range(0, len(queries), batch_size)
        for begin in progress.track(starts, len(queries), f"{self.setting} memory", "request", size=lambda b: len(queries[b:b + batch_size])):
            group = queries[begin:begin + batch_size]
            timings = [{"memory": 0.0, "llm": 0.0, "items": 0.0} for _ in group]
            contexts = [self._context(q, t) for q, t in zip(group, timings)]
            start = time.perf_counter()
            profiles = batched([q.text for q in group], [a for a, _ in contexts], [c for _, c in contexts])
            share = (time.perf_counter() - start) / len(group)
            for q, (aspects, chunks), profile, t in zip(group, contexts, profiles, timings):
                t["llm"] += share
                answers.append(self._finish(q, aspects, chunks, profile, t, k))
        return answers

    def _finish(self, query: Query, aspects: list[str], chunks: list[MemoryChunk], profile: ProfileAnswer,
                timings: dict[str, float], k: int) -> Answer:
        if not profile.well_formed or not profile.ideal_item_profile.strip():
            self.malformed += 1
            profile = ProfileAnswer(query.text, [], raw=profile.raw, well_formed=False)
        elif profile.repaired:
            self.repaired += 1
        start = time.perf_counter()
        exclude = [list(query.history)] if self.exclude_history else None
        items = self.catalog.search([profile.ideal_item_profile], k=k, exclude=exclude)[0]
        timings["items"] = time.perf_counter() - start
        tokens = sum(self.count_tokens(c.text) for c in chunks) + sum(self.count_tokens(a) for a in aspects)
        return Answer(items, profile, chunks, aspects, timings, tokens)
