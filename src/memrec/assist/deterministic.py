"""The deterministic reasoner: MR.Rec's five language tasks without an LLM.

Everything is term statistics over lower-cased word tokens, so the output is the same on every run
and costs microseconds:

- a category's **preference pattern** is extractive: its most frequent informative terms (weighted
  by inverse document frequency over the catalogue) and its most representative record;
- the **profile** joins the patterns, largest category first, and names the terms shared across
  categories;
- **decision aspects** of a scenario are the terms that separate the true items of its requests from
  similar wrong items (log-odds ratio with an informative Dirichlet prior, Monroe et al. 2008);
- **aspect selection** keeps the aspects that share a term with the request, else the strongest ones;
- the **ideal item profile** is the request plus the salient terms of the memories that share
  informative terms with the request or the chosen aspects, or that are about the category the
  request names when it names nothing more (a memory is read clause by clause, so only the asked-about part of an integrated
  profile counts; the reasoner's own template words such as "records" or "typical" are never added);
  ``useful_memory_ids`` are the memories those terms came from. The aspects steer memory retrieval and this filter; they are not written into
  the profile by default (on the synthetic Scientific requests that lowered R@10 by 7 points).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from memrec.assist.types import MemoryChunk, ProfileAnswer

_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being below between both
    but by can could did do does doing down during each etc few for from further had has have having he her here
    hers him his how i if in into is it its itself just me more most my no nor not now of off on once only or other
    our ours out over own per same she should so some such than that the their theirs them then there these they
    this those through to too under until up very was we were what when where which while who whom why will with
    would you your yours x pack pcs pc piece pieces set inch inches mm cm ft oz lb lbs g kg ml l
    i'm i'd i've looking need want recommend something anything item items category can please find""".split()
)


# Words of the patterns and profiles this reasoner writes ("Lab (2 records): ..., Typical: ..." with typical_words,
# "Buys mostly ...; Across categories: ..."): they say nothing about an item.
TEMPLATE_WORDS = frozenset("records record typical buys mostly across categories purchases yet".split())
_CODE = re.compile(r"[0-9]")


def terms(text: str) -> list[str]:
    """Lower-cased content words of ``text``, in order: no stop words, no bare numbers.

    Example:
        >>> terms("The 3M Scotch Tape, 2-Pack, for 12 boxes")
        ['3m', 'scotch', 'tape', '2-pack', 'boxes']
    """
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS and not t.isdigit() and len(t) > 1]


@dataclass(frozen=True)
class DeterministicConfig:
    """How many terms each task keeps.

    Example:
        >>> DeterministicConfig().profile_terms
        3
    """

    pattern_terms: int = 8  # terms per category pattern
    typical_words: int = 0  # words of the most typical record quoted in a pattern (the records are a level below)
    profile_categories: int = 4  # categories named in the profile
    max_aspects: int = 8  # aspects per extraction call
    min_z: float = 1.0  # aspect: log-odds z-score above this
    select_aspects: int = 3  # aspects chosen per request at most
    profile_terms: int = 3  # memory terms added to the ideal item profile
    generic_df: float = 0.1  # terms in more than this share of documents do not count as overlap
    fallback_memories: int = 0  # when no memory overlaps the request, use this many of them anyway
    aspects_in_profile: bool = False  # also write the chosen aspects into the profile (they then steer item retrieval too)
    # A memory (clause) about the category the request names counts as relevant without a shared
    # informative term: "vague" only when the request names nothing informative beyond that category,
    # "always", or "never".
    category_match: str = "vague"
    skip_codes: bool = False  # terms with a digit (model numbers, sizes: "dw4524", "0-150") are never added from memory
    max_code_length: int = 3  # patterns and aspects never use a term with a digit longer than this ("3m", "3d" stay; "22awg", "541-786-21" go)
    min_aspect_lift: float = 2.0  # a request with informative words keeps the aspects this much more frequent among the items sharing its words


class DeterministicReasoner:
    """A :class:`memrec.assist.types.Reasoner` made of term statistics (no LLM, no randomness).

    ``documents`` (e.g. every catalogue text) give the inverse document frequencies that weight terms;
    without them every term weighs the same and none counts as generic. ``scenarios`` (the scenario names,
    e.g. the top-level categories): a request whose informative words all name a scenario is vague.

    Example:
        >>> r = DeterministicReasoner(documents=["red glass beaker", "blue glass flask", "steel ruler"])
        >>> r.summarize_patterns("Lab", ["red glass beaker", "blue glass flask"])
        'Lab (2 records): glass, beaker, blue, flask, red.'
        >>> ans = r.ideal_item_profile("a beaker for the lab", [], [MemoryChunk("u/record/0", "u", "record", "Lab", "red glass beaker")])
        >>> ans.ideal_item_profile, ans.useful_memory_ids  # "glass" is in 2 of 3 documents: too generic to add
        ('a beaker for the lab. From memory: red', ['u/record/0'])
    """

    name = "deterministic"

    def __init__(self, config: DeterministicConfig = DeterministicConfig(), documents: list[str] | None = None, scenarios=()):
        self.config = config
        self.scenario_words = {w for s in scenarios for w in terms(s)}  # a request naming only a scenario is vague
        self.df: Counter = Counter()
        self.num_documents = 0
        self.postings: dict[str, set[int]] = {}  # term -> the documents holding it (aspect selection by co-occurrence)
        for i, text in enumerate(documents or []):
            words = set(terms(text))
            self.df.update(words)
            for w in words:
                self.postings.setdefault(w, set()).add(i)
            self.num_documents += 1

    def readable(self, term: str) -> bool:
        """Whether a term can name a preference or an aspect: not a model number or size code ("22awg",
        "541-786-21"), not a two-letter fragment.

        Example:
            >>> r = DeterministicReasoner()
            >>> [t for t in ["3m", "22awg", "541-786-21", "nitrile", "3d"] if r.readable(t)]
            ['3m', 'nitrile', '3d']
        """
        return len(term) > 1 and not (_CODE.search(term) and len(term) > self.config.max_code_length)

    # ------------------------------------------------------------------ weights
    def idf(self, term: str) -> float:
        if not self.num_documents:
            return 1.0
        return math.log((self.num_documents + 1) / (self.df.get(term, 0) + 1)) + 1.0

    def informative(self, words) -> set[str]:
        """The words that are not generic (in at most ``generic_df`` of the documents)."""
        if not self.num_documents:
            return set(words)
        limit = max(self.config.generic_df * self.num_documents, 1)
        return {w for w in words if self.df.get(w, 0) <= limit}

    # ------------------------------------------------------------------ local memory
    def summarize_patterns(self, category: str, records: list[str]) -> str:
        if not records:
            return f"{category} (0 records)"
        docs = [[t for t in terms(r) if self.readable(t)] for r in records]
        counts = Counter(t for d in docs for t in set(d))
        weight = {t: c * self.idf(t) for t, c in counts.items()}
        top = sorted(weight, key=lambda t: (-weight[t], t))[: self.config.pattern_terms]
        chosen = set(top)
        best = max(range(len(docs)), key=lambda i: (sum(weight[t] for t in set(docs[i]) & chosen), -i))
        head = f"{category} ({len(records)} records): {', '.join(top)}."
        if not self.config.typical_words:
            return head
        return f"{head} Typical: {' '.join(records[best].split()[: self.config.typical_words])}"

    def integrate_profile(self, patterns: dict[str, str]) -> str:
        if not patterns:
            return "No purchases yet."
        size = {c: _record_count(p) for c, p in patterns.items()}
        order = sorted(patterns, key=lambda c: (-size[c], c))
        heads = {c: _pattern_terms(patterns[c]) for c in order}
        parts = [f"{c}: {', '.join(heads[c][:5])}" for c in order[: self.config.profile_categories]]
        shared = Counter(t for c in order for t in set(heads[c]))
        across = sorted((t for t, n in shared.items() if n > 1), key=lambda t: (-shared[t], t))[:5]
        text = f"Buys mostly {'; '.join(parts)}."
        return text + (f" Across categories: {', '.join(across)}." if across else "")

    # ------------------------------------------------------------------ global memory
    def extract_aspects(self, category: str, queries: list[str], positives: list[str], negatives: list[str]) -> list[str]:
        pos = Counter(t for text in positives for t in set(terms(text)))
        neg = Counter(t for text in negatives for t in set(terms(text)))
        n_pos, n_neg = max(len(positives), 1), max(len(negatives), 1)
        scored = []
        for t, y_p in pos.items():
            if y_p < 2 or not self.readable(t) or len(t) < 3:
                continue
            y_n = neg.get(t, 0)
            a = 0.5 + 0.5 * (y_p + y_n) / (n_pos + n_neg)  # informative prior, at least 0.5 per class
            delta = math.log((y_p + a) / (n_pos - y_p + a)) - math.log((y_n + a) / (n_neg - y_n + a))
            z = delta / math.sqrt(1 / (y_p + a) + 1 / (y_n + a))
            if z > self.config.min_z:
                scored.append((-z, t))
        return [t for _, t in sorted(scored)[: self.config.max_aspects]]

    def select_aspects(self, request: str, aspects: list[str]) -> list[str]:
        """The aspects that share a word with the request; else, when the request has informative words, the
        aspects that co-occur with them in the catalogue (at least ``min_aspect_lift`` times their base rate:
        "caliper" keeps "digital", not "infrared"), possibly none; a request with no informative word (a
        category alone) gets the scenario's strongest aspects."""
        wanted = set(terms(request))
        hits = [a for a in aspects if wanted & set(terms(a))]
        if hits:
            return hits[: self.config.select_aspects]
        key = self.informative(wanted) - self.scenario_words
        docs = set().union(*(self.postings.get(w, set()) for w in key)) if key and self.postings else set()
        if not docs:  # a vague request, or no catalogue to judge by: the scenario's strongest aspects
            return aspects[: self.config.select_aspects] if not key or not self.postings else []
        lifts = []
        for rank, a in enumerate(aspects):
            holding = set().union(*(self.postings.get(w, set()) for w in terms(a)))
            together = len(docs & holding)
            if together >= 2 and holding:
                lift = (together / len(docs)) / (len(holding) / self.num_documents)
                if lift >= self.config.min_aspect_lift:
                    lifts.append((-lift, rank, a))
        return [a for _, _, a in sorted(lifts)[: self.config.select_aspects]]

    # ------------------------------------------------------------------ query time
    def ideal_item_profile(self, request: str, aspects: list[str], memories: list[MemoryChunk]) -> ProfileAnswer:
        requested = set(terms(request))
        asked = requested | {t for a in aspects for t in terms(a)}
        key = self.informative(asked)
        # A memory is read clause by clause (a profile joins its categories with "; "), so that only
        # the clauses about what is asked give terms: a clause is relevant when it shares an
        # informative term with the request or aspects, or is about the category the request names.
        weight: Counter = Counter()
        relevant: dict[str, set[str]] = {}  # memory id -> terms of its relevant clauses
        mode = self.config.category_match
        if mode not in ("vague", "always", "never"):
            raise ValueError(f"category_match must be 'vague', 'always' or 'never', got {mode!r}")
        for m in memories:
            for clause, category in _clauses(m):
                words = set(terms(clause))
                overlap = len(key & words)
                by_category = mode != "never" and _names_category(requested, category) and (
                    mode == "always" or not self.informative(requested - set(terms(category))))
                if overlap or by_category:
                    relevant.setdefault(m.id, set()).update(words)
                    for t in self._addable(words - asked):
                        weight[t] += max(overlap, 1) * self.idf(t)
        if not relevant:
            for m in memories[: self.config.fallback_memories]:
                words = set(terms(m.text))
                relevant[m.id] = words
                for t in self._addable(words - asked):
                    weight[t] += self.idf(t)
        salient = sorted(weight, key=lambda t: (-weight[t], t))[: self.config.profile_terms]
        used = [m.id for m in memories if set(salient) & relevant.get(m.id, set())]
        text = request.strip().rstrip(".")
        if aspects and self.config.aspects_in_profile:
            text += ". Important: " + ", ".join(aspects)
        if salient:
            text += ". From memory: " + ", ".join(salient)
        return ProfileAnswer(text, used, raw=text, well_formed=True)

    def _addable(self, words: set[str]) -> set[str]:
        """The memory words that may go into a profile: informative, not this reasoner's own template
        words ("records", "typical", ...) and, with ``skip_codes``, no model numbers or sizes."""
        words = {w for w in words if w not in TEMPLATE_WORDS and not (self.config.skip_codes and _CODE.search(w))}
        return self.informative(words)


def _clauses(memory: MemoryChunk) -> list[tuple[str, str]]:
    """(clause, category) pieces of a memory chunk: the clauses of a text joined with "; " (an integrated
    profile: "Buys mostly Lab: glass, beaker; Tools: ruler.") with the category named before their colon;
    any other text is one piece with the chunk's category."""
    pieces = [p for p in memory.text.split(";") if p.strip()]
    if len(pieces) < 2:
        return [(memory.text, memory.category)]
    out = []
    for piece in pieces:
        head, colon, _ = piece.partition(":")
        named = " ".join(w for w in head.split() if w.lower() not in TEMPLATE_WORDS) if colon else ""
        out.append((piece, named or memory.category))
    return out


def _names_category(requested: set[str], category: str) -> bool:
    """Whether every content word of ``category`` is among the request's words (the request names it)."""
    words = set(terms(category))
    return bool(words) and words <= requested


def _record_count(pattern: str) -> int:
    found = re.search(r"\((\d+) records?\)", pattern)
    return int(found.group(1)) if found else 1


def _pattern_terms(pattern: str) -> list[str]:
    """The term list of a pattern written by :meth:`DeterministicReasoner.summarize_patterns`, else its words."""
    found = re.search(r"records?\):\s*([^.]*)\.", pattern)
    if found:
        return [t.strip() for t in found.group(1).split(",") if t.strip()]
    return terms(pattern)
