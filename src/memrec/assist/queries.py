"""Requests to evaluate the assistant on, and the item side information they need.

- :func:`scientific_queries`: a **synthetic** request set built from Amazon Scientific (memrec's
  registry data set ``amazon-scientific``, already split leave-one-out). For each sampled user the
  history is the training items (no validation or test item), the target is the test item, and the
  request is written from the target's category path (and its brand, only when no brand word is in
  the title) with no word of the title that is not also a category word. Global-memory training
  requests come from the validation items of *other* users and never have an evaluated target.
- :func:`load_c4`: the Amazon-C4 files (``test.csv`` and ``sampled_item_metadata_1M.jsonl``) for
  users who have them.
- :func:`load_tallrec`: the TALLRec movie files (liked / disliked titles, target, Yes / No).
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memrec.assist.deterministic import terms
from memrec.assist.memory import Record
from memrec.assist.types import Query
from memrec.errors import ConfigError, DataFormatError

ROOT = "Industrial & Scientific"
# Amazon's top-level categories under Industrial & Scientific: the category path in Scientific.text
# joins its levels with spaces, so the top level is matched against these names (else the shortest
# path seen in the data that starts the item's path).
SCIENTIFIC_TOP = (
    "Abrasive & Finishing Products", "Additive Manufacturing Products", "Commercial Door Products", "Cutting Tools",
    "Fasteners", "Filtration", "Food Service Equipment & Supplies", "Hydraulics, Pneumatics & Plumbing",
    "Industrial Electrical", "Industrial Hardware", "Industrial Power & Hand Tools", "Janitorial & Sanitation Supplies",
    "Lab & Scientific Products", "Material Handling Products", "Occupational Health & Safety Products",
    "Packaging & Shipping Supplies", "Power Transmission Products", "Professional Dental Supplies",
    "Professional Medical Supplies", "Raw Materials", "Retail Store Fixtures & Equipment", "Robotics",
    "Science Education", "Tapes, Adhesives & Sealants", "Test, Measure & Inspect",
)
TEMPLATES = (
    "I'm looking for {what} in {top}.",
    "Can you recommend {what}? Category: {top}.",
    "I need something from {top}: {what}.",
)
TOP_TEMPLATES = (  # detail="top": the request names the top-level category only
    "I'm looking for something in {top}.",
    "Can you recommend an item from {top}?",
    "I need something from {top}.",
)
# How much of the target a synthetic request names:
# - "path": the category path below the top level and the top level, and the brand when no brand
#   word is in the title (the request alone usually finds the item);
# - "leaf": the last two words of the category path and the top level, no brand;
# - "top": the top-level category only (one of 25 scenarios), no brand.
DETAILS = ("path", "leaf", "top")


@dataclass(frozen=True)
class ItemDoc:
    """An item's text split into title, category path (below the root), top category and brand.

    Example:
        >>> d = parse_scientific_text("DEWALT DW4524 Grinding Wheel. Industrial & Scientific Abrasive & Finishing Products Abrasive Wheels & Discs. DEWALT. ")
        >>> d.title, d.top, d.rest, d.brand
        ('DEWALT DW4524 Grinding Wheel', 'Abrasive & Finishing Products', 'Abrasive Wheels & Discs', 'DEWALT')
    """

    title: str
    path: str  # category path below the root, levels joined by spaces; "" if none
    top: str  # top-level category; "" if none
    brand: str
    text: str

    @property
    def rest(self) -> str:
        return self.path[len(self.top):].strip()


_MARKUP = re.compile(r"<[^>]*>|/>|<|&(?:amp|quot|lt|gt|nbsp|#\d+);")


def readable_item(text: str) -> str:
    """An item's ``Scientific.text`` entry as a person reads it: the title without markup fragments (some titles
    are only ``Industrial & Scientific />``: then the last category words and the brand name the item), then
    the category path and the brand.

    Example:
        >>> readable_item(" Industrial & Scientific />. Industrial & Scientific Lab & Scientific Products Lab Chemicals. Dykem. ")
        'Lab Chemicals by Dykem (Lab & Scientific Products > Lab Chemicals)'
        >>> readable_item("3M Safety Cone, 1-Pack,3M,90128-00001 />. Industrial & Scientific Occupational Health & Safety Products Cones. 3M. ")
        '3M Safety Cone, 1-Pack,3M,90128-00001 (Occupational Health & Safety Products > Cones)'
    """
    doc = parse_scientific_text(_MARKUP.sub(" ", text))
    title = re.sub(r"\s+", " ", doc.title).strip(" .,;")
    if not title or title == ROOT:
        leaf = _last_words(doc.rest or doc.top, 3) or "item"
        title = f"{leaf} by {doc.brand}" if doc.brand else leaf
        return f"{title} ({doc.top} > {doc.rest})" if doc.rest else f"{title} ({doc.top})"
    where = " > ".join(p for p in (doc.top, doc.rest) if p)
    extra = "; ".join(p for p in (where, doc.brand if doc.brand and doc.brand.lower() not in title.lower() else "") if p)
    return f"{title} ({extra})" if extra else title


def parse_scientific_text(text: str, known_paths: set[str] | None = None) -> ItemDoc:
    """Split a ``Scientific.text`` entry ("title. categories. brand.")."""
    at = text.find(f". {ROOT}")
    if at < 0:  # no category path: "title. . brand."
        title, _, brand = text.strip().rstrip(".").partition(". . ")
        return ItemDoc(title.strip(), "", "", brand.strip(" ."), text.strip())
    title, rest = text[:at].strip(), text[at + 2 + len(ROOT):]
    path, _, brand = rest.partition(". ")
    path, brand = path.strip().rstrip("."), brand.strip().rstrip(".").strip()
    top = next((t for t in SCIENTIFIC_TOP if path == t or path.startswith(t + " ")), "")
    if not top and path:
        seen = [p for p in (known_paths or ()) if path == p or path.startswith(p + " ")]
        top = min(seen, key=len) if seen else path
    return ItemDoc(title, path, top, brand, text.strip())


def request_for(doc: ItemDoc, qid: str, detail: str = "path") -> str:
    """A request for an item written from its category path (no title words beyond category words).

    ``detail`` (one of :data:`DETAILS`) sets how much of the path it names. The template is chosen
    by a hash of ``qid``; with ``detail="path"`` the brand is named only when none of its words is in
    the title, the vaguer levels never name it.

    Example:
        >>> d = parse_scientific_text("Acme Funnel. Industrial & Scientific Lab & Scientific Products Lab Supplies Funnels. Zeta Labs. ")
        >>> request_for(d, "q1")
        "I'm looking for lab supplies funnels in lab & scientific products, preferably from Zeta Labs."
        >>> request_for(d, "q1", "leaf"), request_for(d, "q1", "top")
        ("I'm looking for supplies funnels in lab & scientific products.", "I'm looking for something in lab & scientific products.")
    """
    if detail not in DETAILS:
        raise ConfigError(f"unknown request detail {detail!r}: expected one of {DETAILS}")
    template = _stable_hash(qid)
    if detail == "top":
        return TOP_TEMPLATES[template % len(TOP_TEMPLATES)].format(top=doc.top.lower())
    what = (doc.rest or doc.top).lower() if detail == "path" else _last_words(doc.rest or doc.top, 2).lower()
    text = TEMPLATES[template % len(TEMPLATES)].format(what=what, top=doc.top.lower())
    title_words = set(terms(doc.title))
    if detail == "path" and doc.brand and not (set(terms(doc.brand)) & title_words):
        text = text[:-1] + f", preferably from {doc.brand}."
    return text


def _last_words(text: str, n: int) -> str:
    return " ".join(text.split()[-n:])


def _stable_hash(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


@dataclass
class QuerySet:
    """Evaluation requests, global-memory training requests, and the items they refer to."""

    queries: list[Query]  # evaluated: synthetic requests, target = test item
    train: list[Query]  # for global memory only: other users, targets never an evaluated target
    items: dict[str, ItemDoc]  # item id -> parsed text
    histories: dict[str, list[Record]]  # user -> behaviour records (training items only)
    description: str = ""
    stats: dict = field(default_factory=dict)


def scientific_queries(ds, split, num_queries: int = 1000, num_train: int = 2000, seed: int = 0, detail: str = "path") -> QuerySet:
    """The synthetic Scientific request set from a loaded ``amazon-scientific`` data set and its split.

    ``detail`` (see :data:`DETAILS`) sets how much of the target's category path each request names,
    for the evaluated and the global-memory training requests alike; the users, targets and
    histories do not depend on it.

    Users are sampled with ``seed`` among those whose test item has a category path and who have at
    least one training item. Example (on the real data): ``scientific_queries(load_dataset(...), split, 500)``.
    """
    if detail not in DETAILS:
        raise ConfigError(f"unknown request detail {detail!r}: expected one of {DETAILS}")
    ids = ds.item_ids
    raw = {ids[i]: ds.items.text[i] for i in range(1, len(ids))}
    known = set()
    for t in raw.values():
        d = parse_scientific_text(t)
        if d.path:
            known.add(d.path)
    docs = {item: parse_scientific_text(t, known) for item, t in raw.items()}
    test, valid = split.test, split.valid
    eligible = [row for row in range(len(test)) if docs[ids[test.targets[row]]].top and len(split.train[test.users[row]])]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(eligible), size=min(num_queries, len(eligible)), replace=False).tolist())
    rows = [eligible[i] for i in chosen]
    queries, histories = [], {}
    for row in rows:
        user = ds.user_ids[test.users[row]]
        target = ids[test.targets[row]]
        history = [ids[i] for i in split.train[test.users[row]]]
        qid = f"sci-{user}"
        queries.append(Query(qid, user, request_for(docs[target], qid, detail), docs[target].top, target, tuple(history), synthetic=True))
        histories[user] = [Record(i, docs[i].text.strip(), docs[i].top) for i in history]
    evaluated_users = {q.user for q in queries}
    evaluated_targets = {q.target for q in queries}
    pool = [r for r in range(len(valid)) if ds.user_ids[valid.users[r]] not in evaluated_users
            and docs[ids[valid.targets[r]]].top and ids[valid.targets[r]] not in evaluated_targets]
    picked = sorted(np.random.default_rng(seed + 1).choice(len(pool), size=min(num_train, len(pool)), replace=False).tolist())
    train = []
    for i in picked:
        r = pool[i]
        user, target = ds.user_ids[valid.users[r]], ids[valid.targets[r]]
        qid = f"sci-train-{user}"
        train.append(Query(qid, user, request_for(docs[target], qid, detail), docs[target].top, target, synthetic=True))
    named = {"path": "the category path", "leaf": "the last two category words and the top-level category (request detail 'leaf')",
             "top": "the top-level category only (request detail 'top')"}[detail]
    description = (f"synthetic requests written from {named} of the test item of {len(queries)} sampled users "
                   f"(seed {seed}) of {ds.name}; history = training items; global memory from {len(train)} validation "
                   f"items of other users")
    stats = {"eligible_users": len(eligible), "items_without_category": sum(1 for d in docs.values() if not d.top),
             "scenarios": len({q.category for q in queries}), "detail": detail}
    return QuerySet(queries, train, docs, histories, description, stats)


# ---------------------------------------------------------------------------- Amazon-C4
C4_COLUMNS = ("qid", "query", "item_id", "user_id", "ori_rating", "ori_review")


@dataclass(frozen=True)
class C4Row:
    """One Amazon-C4 request, with the rating and review it was written from (never memory: they describe the target)."""

    query: Query
    rating: float | None
    review: str


def load_c4(folder: str | Path) -> tuple[list[C4Row], dict[str, tuple[str, str]]]:
    """Read ``test.csv`` and ``sampled_item_metadata_1M.jsonl`` from ``folder``.

    Returns the requests and ``{item_id: (category, text)}``; a request's category is its target's.
    A malformed line raises :class:`memrec.errors.DataFormatError` naming the file and line.
    """
    folder = Path(folder)
    items = _read_c4_items(folder / "sampled_item_metadata_1M.jsonl")
    path = folder / "test.csv"
    if not path.exists():
        raise DataFormatError(path, "file not found: expected the Amazon-C4 test.csv")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        missing = [c for c in C4_COLUMNS if c not in (header or [])]
        if missing:
            raise DataFormatError(path, f"expected columns {list(C4_COLUMNS)}, missing {missing}", line=1)
        col = {c: header.index(c) for c in C4_COLUMNS}
        for row in reader:
            line = reader.line_num
            if len(row) != len(header):
                raise DataFormatError(path, f"expected {len(header)} fields, got {len(row)}", line=line)
            get = {c: row[i] for c, i in col.items()}
            try:
                rating = float(get["ori_rating"]) if get["ori_rating"].strip() else None
            except ValueError:
                raise DataFormatError(path, f"ori_rating must be a number, got {get['ori_rating']!r}", line=line) from None
            if not get["qid"].strip() or not get["item_id"].strip() or not get["query"].strip():
                raise DataFormatError(path, "qid, query and item_id must not be empty", line=line)
            category = items.get(get["item_id"], ("", ""))[0]
            query = Query(get["qid"], get["user_id"], get["query"], category, get["item_id"])
            rows.append(C4Row(query, rating, get["ori_review"]))
    return rows, items


def _read_c4_items(path: Path) -> dict[str, tuple[str, str]]:
    if not path.exists():
        raise DataFormatError(path, "file not found: expected the Amazon-C4 item metadata (one JSON object a line)")
    items = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(path, f"expected a JSON object ({exc.msg})", line=number) from None
            if not isinstance(obj, dict) or "item_id" not in obj or "metadata" not in obj:
                raise DataFormatError(path, "expected a JSON object with item_id, category and metadata", line=number)
            meta = obj["metadata"]
            text = meta if isinstance(meta, str) else " ".join(f"{k}: {v}" for k, v in meta.items()) if isinstance(meta, dict) else str(meta)
            items[str(obj["item_id"])] = (str(obj.get("category", "")), text)
    return items


# ---------------------------------------------------------------------------- TALLRec
@dataclass(frozen=True)
class LikeExample:
    """One TALLRec example: titles the user liked and disliked, a target title, and the answer."""

    liked: tuple[str, ...]
    disliked: tuple[str, ...]
    target: str
    label: int  # 1: "Yes." (will like), 0: "No."


_TITLES = re.compile(r'"([^"]*)"')


def load_tallrec(path: str | Path) -> list[LikeExample]:
    """Read a TALLRec movie file (``test.json`` / ``valid.json``).

    Example:
        >>> import json, tempfile, os
        >>> ex = {"instruction": "", "output": "Yes.", "input": 'User Preference: "A (1990)", "B (1991)"\\nUser Unpreference: "C (1992)"\\nWhether the user will like the target movie "D (1993)"?'}
        >>> path = os.path.join(tempfile.mkdtemp(), "t.json"); json.dump([ex], open(path, "w"))
        >>> load_tallrec(path)[0]
        LikeExample(liked=('A (1990)', 'B (1991)'), disliked=('C (1992)',), target='D (1993)', label=1)
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataFormatError(path, f"expected a JSON list of TALLRec examples ({exc})") from None
    out = []
    for number, ex in enumerate(data):
        lines = str(ex.get("input", "")).split("\n") if isinstance(ex, dict) else []
        if len(lines) != 3 or ex.get("output") not in ("Yes.", "No."):
            raise DataFormatError(path, f"example {number}: expected 3 input lines (preference, unpreference, target) and output Yes./No.")
        target = _TITLES.findall(lines[2])
        if len(target) != 1:
            raise DataFormatError(path, f"example {number}: expected one quoted target title, got {len(target)}")
        out.append(LikeExample(tuple(_TITLES.findall(lines[0])), tuple(_TITLES.findall(lines[1])), target[0], int(ex["output"] == "Yes.")))
    return out
