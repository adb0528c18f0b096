"""The shared vocabulary of the MR.Rec assistant: queries, memory chunks, answers, and the two
interfaces every back-end implements.

A :class:`Reasoner` does the five language tasks of MR.Rec (summarise a category's behaviour
records into a preference pattern, integrate patterns into a profile, extract decision aspects for a
scenario, pick the aspects a request needs, and write the ideal item profile). The deterministic
reasoner does them without an LLM; the LLM reasoner does them with prompts through a
:class:`TextGenerator` (a local Hugging Face model or an OpenAI-compatible server).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

ChunkKind = Literal["record", "pattern", "profile", "aspect"]


@dataclass(frozen=True)
class MemoryChunk:
    """One retrievable piece of memory.

    Local memory (per user): ``record`` (one behaviour record: an item's text, rating, review),
    ``pattern`` (a category's preference pattern), ``profile`` (the integrated user profile).
    Global memory (per scenario / category): ``aspect`` (a decision aspect), ``user`` is "".

    Example:
        >>> MemoryChunk("u1/pattern/Lab", "u1", "pattern", "Lab", "prefers glass beakers").kind
        'pattern'
    """

    id: str  # unique within a memory index, e.g. "u1/record/3"
    user: str  # "" for global memory
    kind: ChunkKind
    category: str
    text: str


@dataclass(frozen=True)
class Query:
    """A natural-language request by a user, with the item that answers it (for evaluation).

    ``history`` holds the user's earlier item ids in time order (never the target or anything
    after it); ``synthetic`` marks requests written by memrec from item attributes, which every
    report labels as such.
    """

    qid: str
    user: str
    text: str
    category: str
    target: str  # item id
    history: tuple[str, ...] = ()
    synthetic: bool = False


@dataclass
class ProfileAnswer:
    """What the reasoner outputs at query time: ``{"ideal_item_profile": str, "useful_memory_ids": [...]}``.

    ``well_formed`` is False when an LLM's text could not be parsed strictly; the assistant then
    falls back to the request itself as the profile and counts the failure. ``repaired`` is True when
    the text was a *truncated* well-formed answer (cut off by the token limit, or the object left open)
    that became well-formed once closed (see :func:`memrec.assist.llm_reasoner.repair_ideal_profile`);
    such an answer is used (``well_formed`` True) but counted apart from the strictly well-formed ones.
    """

    ideal_item_profile: str
    useful_memory_ids: list[str] = field(default_factory=list)
    raw: str = ""
    well_formed: bool = True
    repaired: bool = False


class Reasoner(Protocol):
    """The five language tasks of MR.Rec; one implementation per back-end."""

    name: str

    def summarize_patterns(self, category: str, records: list[str]) -> str:
        """A category's behaviour records (item texts, ratings, reviews) -> one preference pattern."""
        ...

    def integrate_profile(self, patterns: dict[str, str]) -> str:
        """Per-category patterns -> one cross-category user profile."""
        ...

    def extract_aspects(self, category: str, queries: list[str], positives: list[str], negatives: list[str]) -> list[str]:
        """A scenario's requests, their true items and similar wrong items -> decision aspects."""
        ...

    def select_aspects(self, request: str, aspects: list[str]) -> list[str]:
        """The aspects (a subset of ``aspects``) that matter for ``request``."""
        ...

    def ideal_item_profile(self, request: str, aspects: list[str], memories: list[MemoryChunk]) -> ProfileAnswer:
        """The request, chosen aspects and retrieved memories -> the ideal item profile."""
        ...


class TextGenerator(Protocol):
    """A chat LLM: a batch of conversations -> one completion each.

    ``messages`` follow the OpenAI chat format: ``[{"role": "system"|"user"|"assistant", "content": str}, ...]``.

    **Prefill.** A conversation may end with an ``assistant`` message: the start of the answer (e.g.
    ``{"ideal_item_profile": "``). The generator then continues that message instead of opening a new
    turn, and returns the *whole* assistant text, prefill + continuation (:func:`prefill_of`,
    :func:`join_prefill`), so that a parser always sees a complete answer.
    """

    name: str

    def generate(self, conversations: list[list[dict[str, str]]], max_new_tokens: int = 256, temperature: float = 0.0) -> list[str]:
        ...


def prefill_of(messages: list[dict[str, str]]) -> str:
    """The prefill of a conversation: the content of a final ``assistant`` message, else ``""``.

    Example:
        >>> prefill_of([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": '{"a": "'}])
        '{"a": "'
        >>> prefill_of([{"role": "user", "content": "Hi"}])
        ''
    """
    return messages[-1]["content"] if messages and messages[-1].get("role") == "assistant" else ""


def join_prefill(prefill: str, text: str) -> str:
    """The whole assistant text from a prefill and what a back-end returned: ``text`` as is when it already
    starts with the prefill (a back-end that returns the whole message, or a server that ignored the prefill
    and wrote a full answer itself), else ``prefill + text`` (a back-end that returned only the continuation).

    Example:
        >>> join_prefill('{"p": "', 'glass", "n": 1}'), join_prefill('{"p": "', '{"p": "glass"}')
        ('{"p": "glass", "n": 1}', '{"p": "glass"}')
    """
    if not prefill or text.lstrip().startswith(prefill):
        return text
    return prefill + text
