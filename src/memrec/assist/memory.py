"""MR.Rec's hierarchical memory: local memory per user, global memory per scenario, one index.

Local memory of a user holds three kinds of chunks: ``record`` (one behaviour record: the item's
text, with rating and review where the data has them), ``pattern`` (one per category, written by the
reasoner from that category's records) and ``profile`` (the patterns integrated by the reasoner).
Global memory holds ``aspect`` chunks per scenario (category): decision aspects the reasoner
extracts from training requests, their true items and similar wrong items, merged and
deduplicated over batches. Long texts are cut into chunks of at most ``chunk_words`` words.

Every chunk is embedded once with the same sentence encoder as the catalogue; :meth:`MemoryIndex.retrieve`
is the memory-retrieval tool of the assistant (top-k local chunks of one user by cosine similarity,
through :func:`memrec.memory.index.exact_search`: a user holds tens of chunks, where exact search is cheapest).
An index is saved as plain files (``chunks.jsonl``, ``aspects.json``, ``histories.json``,
``vectors.pt``, ``meta.json``) and loaded back unchanged.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from memrec import progress
from memrec.assist.types import MemoryChunk, Query, Reasoner
from memrec.errors import DataFormatError, MemrecError, UnknownUserError
from memrec.memory.index import exact_search

FORMAT = 1
EMBED_BATCH = 512  # memory chunks embedded per encoder call (the progress bar counts them)


class MemoryUserError(UnknownUserError):
    """A user that the memory index holds no local memory for."""


@dataclass(frozen=True)
class Record:
    """One behaviour record of a user: an item with its text and category (rating, review if known).

    Example:
        >>> Record("i1", "Glass beaker 250 ml", "Lab", rating=5.0, review="sturdy").render()
        'Glass beaker 250 ml. Rated 5/5. Review: sturdy'
    """

    item: str
    text: str
    category: str
    rating: float | None = None
    review: str = ""

    def render(self) -> str:
        out = self.text.strip()
        if self.rating is not None:
            out += f". Rated {self.rating:g}/5"
        if self.review:
            out += f". Review: {self.review.strip()}"
        return out


@dataclass(frozen=True)
class MemoryConfig:
    """How memory is cut and built.

    Example:
        >>> MemoryConfig().chunk_words, MemoryConfig().naive_window
        (48, 10)
    """

    chunk_words: int = 48  # longest chunk, in words
    naive_window: int = 10  # records shown by the "naive" memory setting
    aspect_batch: int = 20  # training requests per extract_aspects call
    negatives: int = 3  # similar wrong items per training request
    max_aspects: int = 8  # aspects kept per scenario after merging


def chunk_text(text: str, max_words: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``max_words`` words (one piece if it is short).

    Example:
        >>> chunk_text("a b c d e", 2)
        ['a b', 'c d', 'e']
    """
    words = text.split()
    if len(words) <= max_words:
        return [" ".join(words)]
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]


class MemoryIndex:
    """Local and global memory chunks with their embeddings, searchable per user.

    ``encode`` maps a list of texts to an (N, D) tensor; chunk vectors are L2-normalised here.

    Example:
        >>> import torch
        >>> vocab = {"glass beaker": [1.0, 0.0], "steel ruler": [0.0, 1.0], "beaker": [0.9, 0.1]}
        >>> encode = lambda texts: torch.tensor([vocab[t] for t in texts])
        >>> chunks = [MemoryChunk("u/record/0", "u", "record", "Lab", "glass beaker"),
        ...           MemoryChunk("u/record/1", "u", "record", "Tools", "steel ruler")]
        >>> memory = MemoryIndex(chunks, encode, aspects={"Lab": ["volume"]})
        >>> [c.id for c in memory.retrieve("u", ["beaker"], k=1)], memory.aspects("Lab")
        (['u/record/0'], ['volume'])
    """

    def __init__(self, chunks: Sequence[MemoryChunk], encode, aspects: Mapping[str, Sequence[str]] | None = None,
                 histories: Mapping[str, Sequence[str]] | None = None, vectors: torch.Tensor | None = None, meta: dict | None = None,
                 normalized: bool = False):
        self.local = [c for c in chunks if c.user]
        ids = [c.id for c in self.local]
        if len(set(ids)) != len(ids):
            dup = [i for i, n in Counter(ids).items() if n > 1]
            raise MemrecError(f"memory chunk ids must be unique, got duplicates {dup[:3]}")
        self.encode = encode
        self.global_ = {c: list(a) for c, a in (aspects or {}).items()}
        self.histories = {u: list(h) for u, h in (histories or {}).items()}
        self.meta = dict(meta or {})
        if vectors is None:
            vectors = encode([c.text for c in self.local]) if self.local else torch.zeros(0, 1)
        if vectors.shape[0] != len(self.local):
            raise MemrecError(f"expected one vector per local chunk ({len(self.local)}), got shape {tuple(vectors.shape)}")
        self.vectors = vectors.float() if normalized else F.normalize(vectors.float(), dim=-1)  # (C, D), unit rows
        rows = defaultdict(list)
        for row, c in enumerate(self.local):
            rows[c.user].append(row)
        self.rows = {u: torch.tensor(r, dtype=torch.long) for u, r in rows.items()}

    # ------------------------------------------------------------------ reading
    @property
    def users(self) -> list[str]:
        return list(self.rows)

    @property
    def categories(self) -> list[str]:
        return list(self.global_)

    def chunks(self, user: str) -> list[MemoryChunk]:
        """Every local chunk of ``user``: records in time order, then patterns, then the profile."""
        return [self.local[r] for r in self._rows(user).tolist()]

    def records(self, user: str, last: int | None = None) -> list[MemoryChunk]:
        """The chunks of the user's last ``last`` behaviour records (all when None), in time order."""
        records = [c for c in self.chunks(user) if c.kind == "record"]
        if last is None:
            return records
        keep = set(list(dict.fromkeys(_record_number(c.id) for c in records))[-last:]) if last > 0 else set()
        return [c for c in records if _record_number(c.id) in keep]

    def profile(self, user: str) -> list[MemoryChunk]:
        """The chunks of the user's integrated profile (the "static" memory)."""
        return [c for c in self.chunks(user) if c.kind == "profile"]

    def history(self, user: str) -> list[str]:
        """The item ids the user's records came from, in time order."""
        return list(self.histories.get(user, []))

    def aspects(self, category: str) -> list[str]:
        """The decision aspects of a scenario (global memory); [] for an unknown scenario."""
        return list(self.global_.get(category, []))

    def aspect_chunks(self, category: str) -> list[MemoryChunk]:
        return [MemoryChunk(f"global/{category}/{i}", "", "aspect", category, a) for i, a in enumerate(self.aspects(category))]

    def retrieve(self, user: str, texts: list[str], k: int = 3, kinds: Sequence[str] | None = None) -> list[MemoryChunk]:
        """The ``k`` local chunks of ``user`` closest to the texts (mean of their unit vectors), best first,
        among the chunks of the given ``kinds`` ("record", "pattern", "profile"; None: all).

        Ties keep the earlier chunk; fewer than ``k`` chunks are returned when the user has fewer.
        """
        rows = self._rows(user)
        if kinds is not None:
            rows = rows[[self.local[int(r)].kind in kinds for r in rows]]
        texts = [t for t in texts if t and t.strip()]
        if not texts or k < 1:
            return []
        query = F.normalize(F.normalize(self.encode(list(texts)).float(), dim=-1).sum(0), dim=0)  # (D,)
        best = exact_search(query.unsqueeze(0), self.vectors[rows], k, stable=True)[1][0]  # memrec's exact search; ties: earlier chunk
        return [self.local[int(rows[i])] for i in best.tolist()]

    def _rows(self, user: str) -> torch.Tensor:
        try:
            return self.rows[str(user)]
        except KeyError:
            example = ", ".join(list(self.rows)[:3])
            raise MemoryUserError(f"no local memory for user {user!r} ({len(self.rows)} users in this index, e.g. {example})") from None

    def __eq__(self, other) -> bool:
        return (isinstance(other, MemoryIndex) and self.local == other.local and self.global_ == other.global_
                and self.histories == other.histories and torch.equal(self.vectors, other.vectors))

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "chunks.jsonl", "w") as f:
            for c in self.local:
                f.write(json.dumps(asdict(c)) + "\n")
        (folder / "aspects.json").write_text(json.dumps(self.global_, indent=1))
        (folder / "histories.json").write_text(json.dumps(self.histories))
        (folder / "meta.json").write_text(json.dumps({"format": FORMAT, **self.meta}, indent=1))
        torch.save(self.vectors, folder / "vectors.pt")
        return folder

    @classmethod
    def load(cls, folder: str | Path, encode) -> "MemoryIndex":
        folder = Path(folder)
        missing = [n for n in ("chunks.jsonl", "aspects.json", "histories.json", "vectors.pt", "meta.json") if not (folder / n).exists()]
        if missing:
            raise MemrecError(f"{folder} is not a memory index written by MemoryIndex.save: missing {missing}")
        chunks = []
        with open(folder / "chunks.jsonl") as f:
            for number, line in enumerate(f, start=1):
                try:
                    chunks.append(MemoryChunk(**json.loads(line)))
                except (json.JSONDecodeError, TypeError) as exc:
                    raise DataFormatError(folder / "chunks.jsonl", f"expected a memory chunk object ({exc})", line=number) from None
        meta = json.loads((folder / "meta.json").read_text())
        if meta.pop("format", None) != FORMAT:
            raise MemrecError(f"{folder}: memory index format {meta.get('format')!r}, expected {FORMAT}; build it again")
        vectors = torch.load(folder / "vectors.pt", map_location="cpu", weights_only=True)
        return cls(chunks, encode, json.loads((folder / "aspects.json").read_text()), json.loads((folder / "histories.json").read_text()), vectors, meta,
                   normalized=True)


def _record_number(chunk_id: str) -> str:
    return chunk_id.split("/record/")[-1].split(".")[0]


# ---------------------------------------------------------------------------- building
def build_local_memory(user: str, records: Sequence[Record], reasoner: Reasoner, config: MemoryConfig = MemoryConfig()) -> list[MemoryChunk]:
    """Record, pattern and profile chunks of one user.

    Example:
        >>> from memrec.assist.deterministic import DeterministicReasoner
        >>> chunks = build_local_memory("u", [Record("i1", "glass beaker", "Lab")], DeterministicReasoner())
        >>> [c.kind for c in chunks]
        ['record', 'pattern', 'profile']
    """
    out = []
    by_category: dict[str, list[str]] = defaultdict(list)
    for i, r in enumerate(records):
        text = r.render()
        pieces = chunk_text(text, config.chunk_words)
        for j, piece in enumerate(pieces):
            out.append(MemoryChunk(f"{user}/record/{i}" + (f".{j}" if len(pieces) > 1 else ""), user, "record", r.category, piece))
        by_category[r.category].append(text)
    patterns = {c: reasoner.summarize_patterns(c, texts) for c, texts in by_category.items()}
    for c, pattern in patterns.items():
        for j, piece in enumerate(chunk_text(pattern, config.chunk_words)):
            out.append(MemoryChunk(f"{user}/pattern/{c}/{j}", user, "pattern", c, piece))
    if patterns:
        profile = reasoner.integrate_profile(patterns)
        for j, piece in enumerate(chunk_text(profile, config.chunk_words)):
            out.append(MemoryChunk(f"{user}/profile/{j}", user, "profile", "", piece))
    return out


def build_global_memory(queries: Sequence[Query], reasoner: Reasoner, catalog=None, config: MemoryConfig = MemoryConfig()) -> dict[str, list[str]]:
    """Decision aspects per scenario from training requests, their true items and similar wrong items.

    The wrong items of a request are the catalogue's best matches for its text that are not its
    target (hard negatives). Aspects from several batches are merged: deduplicated by their words,
    ranked by how many batches produced them, then by first appearance.
    """
    if queries and catalog is None:
        raise MemrecError("building global memory needs the item catalogue (for the true and the similar wrong items)")
    by_category: dict[str, list[Query]] = defaultdict(list)
    for q in queries:
        by_category[q.category].append(q)
    aspects = {}
    for category, group in progress.track(by_category.items(), len(queries), "global memory", "request", size=lambda c: len(c[1])):
        hits = catalog.search([q.text for q in group], k=config.negatives + 1)
        votes: Counter = Counter()
        first: dict[tuple, str] = {}
        for start in range(0, len(group), config.aspect_batch):
            batch = range(start, min(start + config.aspect_batch, len(group)))
            negatives = [catalog.text_of(h.item) for i in batch for h in hits[i] if h.item != group[i].target][: config.negatives * len(batch)]
            found = reasoner.extract_aspects(category, [group[i].text for i in batch], [catalog.text_of(group[i].target) for i in batch], negatives)
            for a in dict.fromkeys(a.strip() for a in found if a and a.strip()):
                key = _aspect_key(a)
                first.setdefault(key, a)
                votes[key] += 1
        order = sorted(first, key=lambda key: -votes[key])  # stable: ties keep first appearance
        aspects[category] = _drop_contained([first[key] for key in order])[: config.max_aspects]
    return aspects


def _aspect_key(aspect: str) -> tuple:
    return tuple(sorted(set(aspect.lower().replace(",", " ").split())))


def _drop_contained(aspects: list[str]) -> list[str]:
    """Drop an aspect whose words are all in an aspect kept before it."""
    kept: list[str] = []
    for a in aspects:
        words = set(_aspect_key(a))
        if not any(words <= set(_aspect_key(b)) for b in kept):
            kept.append(a)
    return kept


def build_memory(histories: Mapping[str, Sequence[Record]], reasoner: Reasoner, encode, train_queries: Sequence[Query] = (),
                 catalog=None, config: MemoryConfig = MemoryConfig(), meta: dict | None = None) -> MemoryIndex:
    """The hierarchical memory of every user in ``histories`` plus the global memory of the scenarios.

    ``histories`` maps a user to their behaviour records in time order (never the item a request of
    theirs is evaluated on); ``train_queries`` (requests with their true item, from other users or
    earlier targets) and ``catalog`` (an :class:`memrec.assist.catalog.ItemCatalog`) give the global
    memory; ``encode`` embeds the chunks (the catalogue's encoder).

    Example:
        >>> import torch
        >>> from memrec.assist.deterministic import DeterministicReasoner
        >>> encode = lambda texts: torch.ones(len(texts), 2)
        >>> memory = build_memory({"u": [Record("i1", "glass beaker", "Lab")]}, DeterministicReasoner(), encode)
        >>> [c.kind for c in memory.chunks("u")], memory.history("u")
        (['record', 'pattern', 'profile'], ['i1'])
    """
    users = progress.track(histories.items(), len(histories), "local memory", "user")
    chunks = [c for user, records in users for c in build_local_memory(str(user), records, reasoner, config)]
    aspects = build_global_memory(list(train_queries), reasoner, catalog, config)
    meta = {"reasoner": getattr(reasoner, "name", type(reasoner).__name__), "config": asdict(config), **(meta or {})}
    history_ids = {str(u): [r.item for r in records] for u, records in histories.items()}
    local = [c for c in chunks if c.user]
    batches = range(0, len(local), EMBED_BATCH)
    parts = [encode([c.text for c in local[b:b + EMBED_BATCH]]).float()
             for b in progress.track(batches, len(local), "embedding memory", "chunk", size=lambda b: len(local[b:b + EMBED_BATCH]))]
    vectors = torch.cat(parts) if parts else None  # (C, D)
    return MemoryIndex(chunks, encode, aspects, history_ids, vectors=vectors, meta=meta)
