"""MR.Rec's five language tasks done by an LLM through versioned prompt files, parsed strictly.

Each task has one prompt file in ``memrec/assist/prompts/`` (``patterns``, ``profile``, ``aspects``,
``select_aspects``, ``ideal_profile``). A file starts with ``version: TASK/N`` and has a ``### system``
and a ``### user`` section; ``$name`` placeholders are filled with :class:`string.Template` (write
``$$`` for a dollar sign). Changing a prompt means raising its version: answers and results name it.

A file may end with an ``### assistant`` section after its last ``### user`` section: the **prefill**,
the start of the answer that the model continues (``ideal_profile/3`` prefills ``{"ideal_item_profile": "``,
so that even SmolLM2-135M only has to finish the JSON object). Every back-end returns prefill +
continuation (see :class:`~memrec.assist.types.TextGenerator`), so the parser sees the whole answer.

Parsing is strict and never raises on bad LLM text. The ideal-profile answer must contain a JSON object
(the first ``{...}`` that decodes) with a non-empty string ``ideal_item_profile`` and a list
``useful_memory_ids`` of ids that were offered in the prompt. Anything else is *malformed*: the answer
falls back to the request itself as the profile (``well_formed=False``) and the failure is counted in
``reasoner.malformed[task]`` (with the reason in ``reasoner.reasons``); ``reasoner.calls[task]`` counts
every LLM call, so ``calls[t] - malformed[t]`` answers were used as written. List answers (aspects) are
read as a JSON list or one item per line, deduplicated.

**Repair** (``LLMReasoner(repair=True)``, the default). An ideal-profile answer that contains no complete
JSON object but is the *beginning* of a well-formed answer (the string or the object was cut off by
``max_new_tokens``, or the model closed the string and stopped) is closed by
:func:`repair_ideal_profile`: the open string, id list and object are closed, a trailing partial id or
key is dropped, and ``"useful_memory_ids": []`` is added when the list was never reached. The result
must pass the strict parser (cited ids must still have been offered). Such an answer is used and
counted in ``reasoner.repaired[task]``, never in ``malformed``; a complete object with a wrong field,
prose without the object, or an answer that does not start like the answer format stays malformed.
So ``calls - malformed - repaired`` answers were well-formed as written.
"""
from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from memrec.assist.types import MemoryChunk, ProfileAnswer, TextGenerator
from memrec.errors import MemrecError

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
TASKS = ("patterns", "profile", "aspects", "select_aspects", "ideal_profile")


class PromptError(MemrecError, ValueError):
    """A prompt file is missing, malformed, or rendered without a value it needs."""


class MalformedAnswerError(MemrecError, ValueError):
    """An LLM answer does not have the required format (raised by the parsers, caught by the reasoner)."""


# ----------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Prompt:
    """One task's prompt: versioned chat-message templates (a system message, then user turns and
    optional example assistant turns, ending with the user turn to answer, optionally followed by the
    assistant prefill: the start of the answer, which the model continues).

    Example:
        >>> p = Prompt("echo", "echo/1", (("system", "Be brief."), ("user", "Say $word.")))
        >>> p.render(word="hi")
        [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Say hi.'}]
    """

    task: str
    version: str
    messages: tuple[tuple[str, str], ...]

    def render(self, **values: str) -> list[dict[str, str]]:
        """The chat messages with every ``$name`` filled; a missing value is a :class:`PromptError`."""
        try:
            return [{"role": role, "content": string.Template(text).substitute(values)} for role, text in self.messages]
        except (KeyError, ValueError) as e:
            raise PromptError(f"prompt {self.version}: no value for placeholder {e} (given: {sorted(values)})") from None

    @property
    def prefill(self) -> str:
        """The start of the answer the model continues (a final assistant section), or ``""``.

        Example:
            >>> Prompt("t", "t/1", (("system", "S"), ("user", "U"), ("assistant", '{"a": "'))).prefill
            '{"a": "'
        """
        return self.messages[-1][1] if self.messages[-1][0] == "assistant" else ""


def parse_prompt(text: str, task: str, where: str = "<text>") -> Prompt:
    """A prompt file's text -> :class:`Prompt`: ``version: TASK/N``, then ``### system``, ``### user`` and
    ``### assistant`` sections (one system section first; the last section a user turn, or an assistant
    section right after the last user turn: the prefill, stripped of surrounding blank lines like every
    section).

    Example:
        >>> parse_prompt("version: t/2\\n### system\\nS\\n### user\\nU $x\\n", "t").version
        't/2'
        >>> parse_prompt('version: t/3\\n### system\\nS\\n### user\\nU\\n### assistant\\n{"a": "\\n', "t").prefill
        '{"a": "'
    """
    lines = text.splitlines()
    if not lines or not re.fullmatch(rf"version: {re.escape(task)}/\d+", lines[0].strip()):
        raise PromptError(f"{where}: expected the first line 'version: {task}/N', got {lines[0] if lines else ''!r}")
    sections: list[tuple[str, list[str]]] = []
    for line in lines[1:]:
        header = re.fullmatch(r"### (system|user|assistant)\s*", line)
        if header:
            sections.append((header.group(1), []))
        elif sections:
            sections[-1][1].append(line)
    roles = [role for role, _ in sections]
    turns = roles[:-1] if len(roles) > 2 and roles[-1] == "assistant" else roles  # a final assistant section: the prefill
    if len(turns) < 2 or turns[0] != "system" or "system" in turns[1:] or turns[-1] != "user":
        raise PromptError(f"{where}: expected a '### system' section, then '### user' (and '### assistant' example) "
                          f"sections ending with a user turn (optionally followed by one '### assistant' prefill), got {roles}")
    messages = tuple((role, "\n".join(body).strip()) for role, body in sections)
    if len(turns) < len(roles) and not messages[-1][1]:
        raise PromptError(f"{where}: the final '### assistant' section (the prefill) is empty")
    return Prompt(task, lines[0].split(":", 1)[1].strip(), messages)


@lru_cache(maxsize=None)
def load_prompt(task: str, folder: str | None = None) -> Prompt:
    """The prompt of ``task`` from ``folder`` (default: the packaged prompts).

    Example:
        >>> load_prompt("ideal_profile").version
        'ideal_profile/3'
    """
    path = Path(folder or PROMPTS_DIR) / f"{task}.txt"
    if not path.exists():
        raise PromptError(f"no prompt file for task {task!r} at {path} (tasks: {', '.join(TASKS)})")
    return parse_prompt(path.read_text(encoding="utf-8"), task, str(path))


def prompt_versions(folder: str | None = None) -> dict[str, str]:
    """Task -> prompt version, for run records.

    Example:
        >>> prompt_versions()["select_aspects"]
        'select_aspects/1'
    """
    return {task: load_prompt(task, folder).version for task in TASKS}


def bullets(items, limit: int = 20, width: int = 400) -> str:
    """Items as ``- item`` lines, at most ``limit`` of them, each cut to ``width`` characters."""
    items = list(items)[:limit]
    return "\n".join(f"- {str(i)[:width]}" for i in items) if items else "- (none)"


def ideal_profile_messages(request: str, aspects: list[str], memories: list[MemoryChunk], folder: str | None = None,
                           task: str = "ideal_profile") -> list[dict[str, str]]:
    """The chat messages that ask for the ideal item profile (the prompt GRPO trains on), ending with the
    assistant prefill (``{"ideal_item_profile": "`` and the profile's first words) that the model continues.
    ``task="ideal_profile_compact"``: the compact format (memories numbered 1..k and cited by number, the id
    list first, a sentence of at most 12 words; prefill ``{"useful_memory_ids": [``), which a well-formed answer
    fits in within 32 new tokens.

    Example:
        >>> m = ideal_profile_messages("a glass beaker", ["material"], [MemoryChunk("u1/record/0", "u1", "record", "Lab", "Pyrex beaker")])
        >>> "- u1/record/0: Pyrex beaker" in m[-2]["content"], '"u1/record/0"' in m[-2]["content"]
        (True, True)
        >>> m[-1]
        {'role': 'assistant', 'content': '{"ideal_item_profile": "The ideal item is'}
    """
    memory_lines = "\n".join(f"- {m.id}: {m.text[:400]}" for m in memories) or "- (none)"
    ids = ", ".join(json.dumps(m.id) for m in memories) or "(none: cite [])"
    numbered = "\n".join(f"{n}: {m.text[:120]}" for n, m in memory_numbers(memories).items()) or "(none)"
    return load_prompt(task, folder).render(request=request, aspects=", ".join(aspects) or "(none)", memories=memory_lines, memory_ids=ids,
                                            numbered_memories=numbered, memory_numbers=", ".join(memory_numbers(memories)) or "(none: cite [])")


def memory_numbers(memories: list[MemoryChunk]) -> dict[str, MemoryChunk]:
    """The memories numbered from 1 as a compact prompt shows them (``1: text``) and an answer may cite them.

    Example:
        >>> list(memory_numbers([MemoryChunk("u1/record/0", "u1", "record", "Lab", "Pyrex beaker")]).items())[0][0]
        '1'
    """
    return {str(n): m for n, m in enumerate(memories, start=1)}


# ----------------------------------------------------------------------------- parsing
def first_json(text: str, kind: type = dict):
    """The first JSON value of type ``kind`` (dict or list) embedded in ``text``; None if there is none.

    Example:
        >>> first_json('Sure! {"a": [1, "}"]} and {"b": 2}')
        {'a': [1, '}']}
        >>> first_json("no json here") is None
        True
    """
    opener = "{" if kind is dict else "["
    decoder = json.JSONDecoder()
    start = text.find(opener)
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
            if isinstance(value, kind):
                return value
        except json.JSONDecodeError:
            pass
        start = text.find(opener, start + 1)
    return None


def parse_ideal_profile(text: str, known_ids, aliases: dict[str, str] | None = None) -> ProfileAnswer:
    """A strict reading of an ideal-profile answer; :class:`MalformedAnswerError` says what is wrong.
    ``aliases`` (a compact prompt's memory numbers -> ids) lets the answer cite a memory by its number.

    Example:
        >>> parse_ideal_profile('{"ideal_item_profile": "Pyrex beaker", "useful_memory_ids": ["m1"]}', {"m1"}).useful_memory_ids
        ['m1']
        >>> parse_ideal_profile('{"useful_memory_ids": [2], "ideal_item_profile": "a beaker"}', set(), {"1": "u/a", "2": "u/b"}).useful_memory_ids
        ['u/b']
        >>> try:
        ...     parse_ideal_profile('{"ideal_item_profile": "x", "useful_memory_ids": ["m9"]}', {"m1"})
        ... except MalformedAnswerError as e:
        ...     print(e)
        useful_memory_ids cites ids that were not offered: ['m9']
    """
    obj = first_json(text, dict)
    if obj is None:
        raise MalformedAnswerError("no JSON object in the answer")
    profile, ids = obj.get("ideal_item_profile"), obj.get("useful_memory_ids")
    if not isinstance(profile, str) or not profile.strip():
        raise MalformedAnswerError("ideal_item_profile is missing or not a non-empty string")
    if profile.strip().strip(".").lower() in EXAMPLE_PROFILES:
        raise MalformedAnswerError("ideal_item_profile copies the prompt's example instead of describing an item")
    numbered = aliases is not None
    if not isinstance(ids, list) or not all(isinstance(i, str) or (numbered and type(i) is int) for i in ids):
        raise MalformedAnswerError("useful_memory_ids is missing or not a list of string ids")
    if numbered:  # a compact answer cites memories by number: 2 or "2" -> the id of the second memory shown
        ids = [aliases.get(str(i), str(i)) for i in ids]
        known_ids = set(known_ids) | set(aliases.values())
    unknown = [i for i in ids if i not in known_ids]
    if unknown:
        raise MalformedAnswerError(f"useful_memory_ids cites ids that were not offered: {unknown[:5]}")
    return ProfileAnswer(profile.strip(), list(dict.fromkeys(ids)), text, True)


# The placeholder profiles of the prompts' format examples: an answer that copies one describes no item (a policy
# trained on the format reward alone learns to copy it: see docs/assistant.md, GRPO).
EXAMPLE_PROFILES = frozenset({"a short sentence"})
_ANSWER_START = re.compile(r'\s*\{\s*"(?:ideal_item_profile"\s*:\s*"|useful_memory_ids"\s*:\s*\[)')
# what closes a cut-off answer, by where it was cut: after the id list, inside it, after the colon, after the
# key, after the comma, after the profile string, inside it (shortest first: the least added wins)
_CLOSERS = ("}", '"}', "]}", " []}", ": []}", ' "useful_memory_ids": []}', ', "useful_memory_ids": []}', '", "useful_memory_ids": []}')


def repair_ideal_profile(text: str, known_ids, aliases: dict[str, str] | None = None) -> ProfileAnswer | None:
    """A *truncated* ideal-profile answer closed into a well-formed one, or None when it cannot honestly be.

    Only an answer that starts like the answer format (``{"ideal_item_profile": "``, or the compact
    ``{"useful_memory_ids": [``, whose cut-off profile string is closed with ``"}``) is repaired, and only
    in two cases. (1) It holds no complete JSON object: the open string / id list / object is closed (a
    trailing comma, a dangling backslash, or a trailing partial id or key without spaces is dropped first),
    and ``"useful_memory_ids": []`` is added when the list was never reached. (2) Its first object has the
    profile as its only key (the model closed the object before the list): the list is added empty. The
    result must pass :func:`parse_ideal_profile` (so a cited id must have been offered and the profile must
    not be empty). The answer keeps the raw text and has ``repaired=True``.

    Example:
        >>> repair_ideal_profile('{"ideal_item_profile": "A Pyrex beaker, 600 mL', {"m1"}).ideal_item_profile
        'A Pyrex beaker, 600 mL'
        >>> repair_ideal_profile('{"ideal_item_profile": "A beaker", "useful_memory_ids": ["m1", "m', {"m1"}).useful_memory_ids
        ['m1']
        >>> repair_ideal_profile('{"ideal_item_profile": "A beaker"} and more text', {"m1"}).useful_memory_ids
        []
        >>> repair_ideal_profile('{"ideal_item_profile": "A beaker", "ids": ["m1"]}', {"m1"}) is None  # a wrong key
        True
    """
    if not _ANSWER_START.match(text):
        return None
    obj = first_json(text, dict)
    if obj is not None:
        profile = obj.get("ideal_item_profile")
        if set(obj) != {"ideal_item_profile"} or not isinstance(profile, str) or not profile.strip():
            return None
        return ProfileAnswer(profile.strip(), [], text, True, repaired=True)
    base = text.rstrip()
    variants = [base, base.rstrip(",").rstrip()]
    if base.endswith("\\"):
        variants.append(base[:-1])
    quote = base.rfind('"')
    tail = base[quote + 1:]
    if quote >= _ANSWER_START.match(text).end() and tail and not re.search(r"\s", tail):
        variants.append(base[:quote].rstrip().rstrip(",").rstrip())  # drop a partial id or key
    for variant in dict.fromkeys(variants):
        for closer in _CLOSERS:
            if (variant + closer).count('"useful_memory_ids"') > 1:  # a duplicate key would hide the cited ids
                continue
            try:
                answer = parse_ideal_profile(variant + closer, known_ids, aliases)
            except MalformedAnswerError:
                continue
            return ProfileAnswer(answer.ideal_item_profile, answer.useful_memory_ids, text, True, repaired=True)
    return None


_BULLET = re.compile(r"^\s*(?:[-*•]+|\d+[.)]|\(\d+\))\s*")


def parse_list(text: str) -> list[str]:
    """A list answer: the first JSON list of strings, else one item per line; cleaned and deduplicated.

    Example:
        >>> parse_list('Here: ["Material", "size", "material"]')
        ['Material', 'size']
        >>> parse_list("Aspects:\\n1. grit size\\n- backing\\n\\n* Grit size")
        ['grit size', 'backing']
        >>> parse_list('{\\n "items": [\\n "name": "roll"')
        []
    """
    value = first_json(text, list)
    if value is not None and value and all(isinstance(v, str) for v in value):
        items = value
    elif value is not None and not value:
        items = []
    else:  # one per line; lines with JSON punctuation or ending in ':' are fragments or headers, not items
        items = [_BULLET.sub("", line) for line in text.splitlines()
                 if not re.search(r'[{}\[\]"]', line) and not line.rstrip().endswith(":")]
    seen, out = set(), []
    for item in items:
        item = item.strip().strip("\"'`,.;").strip()
        key = item.lower()
        if item and len(item) <= 80 and key not in seen:
            seen.add(key)
            out.append(item)
    return out


def clean_text(text: str) -> str:
    """A free-text answer without surrounding whitespace or quotes."""
    return text.strip().strip("\"'`").strip()


# ----------------------------------------------------------------------------- the reasoner
class LLMReasoner:
    """The :class:`~memrec.assist.types.Reasoner` of an LLM: prompt files in, strictly parsed answers out.

    Example:
        >>> class Fixed:  # any TextGenerator; here one that always gives the same text
        ...     name = "fixed"
        ...     def generate(self, conversations, max_new_tokens=256, temperature=0.0):
        ...         return ['Sure: {"ideal_item_profile": "a Pyrex beaker", "useful_memory_ids": ["m1", "m7"]}']
        >>> r = LLMReasoner(Fixed())
        >>> m1 = MemoryChunk("m1", "u1", "record", "Lab", "glassware")
        >>> r.ideal_item_profile("a beaker", [], [m1]).well_formed, r.malformed["ideal_profile"]
        (False, 1)
    """

    def __init__(self, generator: TextGenerator, max_new_tokens: int = 256, temperature: float = 0.0,
                 prompts_dir: str | None = None, max_items: int = 20, repair: bool = True, profile_prompt: str = "ideal_profile"):
        self.generator = generator
        self.name = f"llm:{generator.name}"
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.prompts_dir = prompts_dir
        self.max_items = max_items  # records / requests / items shown in one prompt
        self.calls: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter()
        self.repaired: Counter[str] = Counter()  # cut-off answers closed by repair_ideal_profile (used, not malformed)
        self.repair = repair
        self.reasons: Counter[tuple[str, str]] = Counter()
        self.profile_prompt = profile_prompt  # "ideal_profile" or "ideal_profile_compact" (numbered memories, id list first)
        self.versions = prompt_versions(prompts_dir) | {"ideal_profile": load_prompt(profile_prompt, prompts_dir).version}

    # -- plumbing
    def _ask(self, task: str, conversations: list[list[dict[str, str]]]) -> list[str]:
        self.calls[task] += len(conversations)
        return self.generator.generate(conversations, max_new_tokens=self.max_new_tokens, temperature=self.temperature)

    def _render(self, task: str, **values: str) -> list[dict[str, str]]:
        return load_prompt(task, self.prompts_dir).render(**values)

    def _bad(self, task: str, reason: str) -> None:
        self.malformed[task] += 1
        self.reasons[(task, reason)] += 1

    def malformed_rate(self, task: str) -> float:
        """Malformed answers / LLM calls for ``task`` (0.0 before any call)."""
        return self.malformed[task] / self.calls[task] if self.calls[task] else 0.0

    # -- the five tasks
    def summarize_patterns(self, category: str, records: list[str]) -> str:
        text = clean_text(self._ask("patterns", [self._render("patterns", category=category, records=bullets(records, self.max_items))])[0])
        if not text:
            self._bad("patterns", "empty answer")
            return f"{category}: " + "; ".join(r[:80] for r in records[:5])
        return text

    def integrate_profile(self, patterns: dict[str, str]) -> str:
        lines = bullets((f"{c}: {p}" for c, p in patterns.items()), self.max_items)
        text = clean_text(self._ask("profile", [self._render("profile", patterns=lines)])[0])
        if not text:
            self._bad("profile", "empty answer")
            return " ".join(patterns.values())
        return text

    def extract_aspects(self, category: str, queries: list[str], positives: list[str], negatives: list[str]) -> list[str]:
        conversation = self._render("aspects", category=category, queries=bullets(queries, self.max_items),
                                    positives=bullets(positives, self.max_items), negatives=bullets(negatives, self.max_items))
        aspects = parse_list(self._ask("aspects", [conversation])[0])
        if not aspects:
            self._bad("aspects", "no aspects in the answer")
        return aspects

    def select_aspects(self, request: str, aspects: list[str]) -> list[str]:
        if not aspects:
            return []
        text = self._ask("select_aspects", [self._render("select_aspects", request=request, aspects=bullets(aspects, len(aspects)))])[0]
        chosen = {a.lower() for a in parse_list(text)}
        selected = [a for a in aspects if a.lower() in chosen]
        if not selected and first_json(text, list) != []:
            self._bad("select_aspects", "no offered aspect in the answer")
            return list(aspects)  # fall back to every aspect of the scenario
        return selected

    def ideal_item_profile(self, request: str, aspects: list[str], memories: list[MemoryChunk]) -> ProfileAnswer:
        return self.ideal_item_profiles([request], [aspects], [memories])[0]

    def ideal_item_profiles(self, requests: list[str], aspects: list[list[str]], memories: list[list[MemoryChunk]]) -> list[ProfileAnswer]:
        """:meth:`ideal_item_profile` for many requests in one batched generation.

        The prompt ends with the assistant prefill; by the :class:`~memrec.assist.types.TextGenerator` contract
        the generator returns the whole answer, prefill + continuation (a text that does not start with the
        prefill is parsed as it is, never completed with it). A strictly malformed answer is repaired when it
        was only cut off (``self.repair``)."""
        conversations = [ideal_profile_messages(r, a, m, self.prompts_dir, self.profile_prompt) for r, a, m in zip(requests, aspects, memories)]
        prefill = load_prompt(self.profile_prompt, self.prompts_dir).prefill
        answers = []
        for request, mems, text in zip(requests, memories, self._ask("ideal_profile", conversations)):
            known = {m.id for m in mems}
            aliases = {n: m.id for n, m in memory_numbers(mems).items()} if self.profile_prompt != "ideal_profile" else None
            if prefill and text.strip() == prefill.strip():  # the prefill's lead alone is not a profile
                self._bad("ideal_profile", "nothing written after the prefill")
                answers.append(ProfileAnswer(request, [], text, well_formed=False))
                continue
            try:
                answers.append(parse_ideal_profile(text, known, aliases))
            except MalformedAnswerError as e:
                repaired = repair_ideal_profile(text, known, aliases) if self.repair else None
                if repaired is not None:
                    self.repaired["ideal_profile"] += 1
                    answers.append(repaired)
                    continue
                self._bad("ideal_profile", str(e).split(":")[0])
                answers.append(ProfileAnswer(request, [], text, well_formed=False))
        return answers

    def __repr__(self) -> str:
        return f"LLMReasoner({self.generator!r})"
