"""Readers for the file formats memrec accepts; each returns an :class:`InteractionTable`.

- ``atomic``: RecBole atomic files, ``NAME.inter`` with a typed header (``user_id:token``...) and
  optional ``NAME.item`` (side information), ``NAME.text`` (item text), ``NAME.item2index`` /
  ``NAME.user2index`` (raw id maps).
- ``atomic-split``: RecBole sequence files already split leave-one-out,
  ``NAME.{train,valid,test}.inter`` with columns ``user_id, item_id_list, item_id``.
- ``s3rec``: one line per user, ``user item item ...`` in time order.
- ``json``: ``{"user": [item, ...]}``, one file or ``train/val/test_sequences.json``.
- ``grouplens``: the MovieLens-100K zip contents (``u.data``, ``u.item``, ``u.genre``).

Tables with named columns (CSV / TSV with a header, Parquet, MovieLens ``.dat``) are read by
:mod:`memrec.data.columns`.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from memrec.data.table import InteractionTable
from memrec.errors import DataFormatError, NotTextError

ATOMIC_TYPES = {"token", "token_seq", "float", "float_seq"}
SPLIT_PARTS = ("train", "valid", "test")
JSON_SPLIT_FILES = ("train_sequences.json", "val_sequences.json", "test_sequences.json")
CATEGORY_COLUMNS = ("class", "categories", "category", "genre", "genres")
TITLE_COLUMNS = ("title", "movie_title", "name", "product_title", "item_name")
IMAGE_COLUMNS = ("image", "image_path", "img", "image_url")


# ----------------------------------------------------------------------------- atomic files
def read_atomic_columns(path: Path, required: tuple[str, ...] = ()) -> dict[str, list]:
    """Read one RecBole atomic file into ``{column: values}``; floats parsed, sequences split."""
    lines = read_lines(path)
    header = lines[0].rstrip("\n").split("\t")
    columns: list[tuple[str, str]] = []
    for field in header:
        name, _, kind = field.partition(":")
        if kind not in ATOMIC_TYPES:
            raise DataFormatError(path, f"header field {field!r}: expected NAME:TYPE with TYPE one of {sorted(ATOMIC_TYPES)}", line=1)
        columns.append((name, kind))
    names = [n for n, _ in columns]
    missing = [c for c in required if c not in names]
    if missing:
        raise DataFormatError(path, f"missing column(s) {missing}: expected a header with {list(required)}, found {names}", line=1)
    values: dict[str, list] = {n: [] for n in names}
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise DataFormatError(path, f"expected {len(columns)} tab-separated fields ({', '.join(names)}), got {len(fields)}", line=number)
        for (name, kind), text in zip(columns, fields):
            values[name].append(_parse_atomic(text, kind, path, number, name))
    return values


def _parse_atomic(text: str, kind: str, path: Path, line: int, column: str):
    try:
        if kind == "token":
            return text
        if kind == "token_seq":
            return text.split()
        if kind == "float":
            return float(text) if text else float("nan")
        return [float(x) for x in text.split()]
    except ValueError:
        raise DataFormatError(path, f"column {column!r}: expected a number, got {text!r}", line=line) from None


def read_atomic(folder: Path, name: str) -> InteractionTable:
    """``NAME.inter`` (user_id, item_id, optional rating and timestamp) plus side files."""
    path = folder / f"{name}.inter"
    cols = read_atomic_columns(path, required=("user_id", "item_id"))
    ratings = np.asarray(cols["rating"], dtype=np.float64) if "rating" in cols else None
    stamps = np.asarray(cols["timestamp"], dtype=np.float64) if "timestamp" in cols else None
    if stamps is not None and np.isnan(stamps).any():
        bad = int(np.flatnonzero(np.isnan(stamps))[0]) + 2
        raise DataFormatError(path, "column 'timestamp': expected a number, got an empty field", line=bad)
    table = InteractionTable(cols["user_id"], cols["item_id"], str(path), ratings, stamps)
    _attach_item_side_info(table, folder, name)
    return table


def read_atomic_split(folder: Path, name: str) -> InteractionTable:
    """Rebuild full sequences from leave-one-out split files and check that they agree.

    Each row holds a (possibly truncated) history and the item that followed. A user's training rows
    come latest-first (as RecBole writes them), then one validation and one test row; chained in
    time order, each row's history must end the sequence built so far, and its target extends it.
    """
    rows: dict[str, list[tuple[list[str], str]]] = {}
    for part in SPLIT_PARTS:
        path = folder / f"{name}.{part}.inter"
        if part == "train" and not path.exists():
            continue
        part_rows = _split_rows(path)
        if part == "train":
            part_rows = part_rows[::-1]
        else:
            _require_one_row_per_user(part_rows, path)
        for user, history, target in part_rows:
            rows.setdefault(user, []).append((history, target))
    users, items = [], []
    for user, chain in rows.items():
        seq = list(chain[0][0])
        for history, target in chain:
            if history and seq[-len(history):] != history:
                raise DataFormatError(folder / f"{name}.*.inter", f"user {user!r}: expected each row's history to end the items before it (train rows latest first, then valid, then test)")
            seq.append(target)
        users.extend([user] * len(seq))
        items.extend(seq)
    table = InteractionTable(users, items, str(folder / f"{name}.test.inter"))
    _attach_item_side_info(table, folder, name)
    return table


def _split_rows(path: Path) -> list[tuple[str, list[str], str]]:
    cols = read_atomic_columns(path, required=("user_id", "item_id_list", "item_id"))
    return list(zip(cols["user_id"], cols["item_id_list"], cols["item_id"]))


def _require_one_row_per_user(rows, path: Path) -> None:
    seen = set()
    for number, (user, _, _) in enumerate(rows, start=2):
        if user in seen:
            raise DataFormatError(path, f"user {user!r} appears twice: expected one row per user", line=number)
        seen.add(user)


def _attach_item_side_info(table: InteractionTable, folder: Path, name: str) -> None:
    """Translate ids through ``item2index``/``user2index`` and read ``.item`` / ``.text`` files."""
    item_map = _read_index_map(folder / f"{name}.item2index")
    user_map = _read_index_map(folder / f"{name}.user2index")
    if item_map:
        table.items = [item_map.get(i, i) for i in table.items]
    if user_map:
        table.users = [user_map.get(u, u) for u in table.users]
    item_file = folder / f"{name}.item"
    if item_file.exists():
        cols = read_atomic_columns(item_file, required=("item_id",))
        others = [c for c in cols if c != "item_id"]
        for row, item in enumerate(cols["item_id"]):
            parts = [_as_text(cols[c][row]) for c in others if c not in IMAGE_COLUMNS]
            table.item_text[item] = ". ".join(p for p in parts if p)
            for c in others:
                if c in TITLE_COLUMNS:
                    table.item_title[item] = _as_text(cols[c][row])
                elif c in CATEGORY_COLUMNS:
                    table.item_category[item] = _as_text(cols[c][row])
                elif c in IMAGE_COLUMNS:
                    table.item_image[item] = _as_text(cols[c][row])
    text_file = folder / f"{name}.text"
    if text_file.exists():
        cols = read_atomic_columns(text_file, required=("item_id", "text"))
        for item, words in zip(cols["item_id"], cols["text"]):
            table.item_text[item] = _as_text(words)


def _read_index_map(path: Path) -> dict[str, str]:
    """``raw_id<TAB>index`` lines into ``{index: raw_id}``."""
    if not path.exists():
        return {}
    out = {}
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.rstrip("\n").split("\t")
        if len(fields) != 2:
            raise DataFormatError(path, f"expected 2 tab-separated fields (raw id, index), got {len(fields)}", line=number)
        out[fields[1]] = fields[0]
    return out


def _as_text(value) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return "" if value != value else str(value)  # NaN -> ""


# ----------------------------------------------------------------------------- s3rec lines
def read_s3rec(path: Path) -> InteractionTable:
    """``user item item ...`` per line, items in time order."""
    users, items = [], []
    seen: set[str] = set()
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise DataFormatError(path, f"expected a user id followed by at least one item id, got {line.strip()!r}", line=number)
        if fields[0] in seen:
            raise DataFormatError(path, f"user {fields[0]!r} appears twice: expected one line per user", line=number)
        seen.add(fields[0])
        users.extend([fields[0]] * (len(fields) - 1))
        items.extend(fields[1:])
    return InteractionTable(users, items, str(path))


# ----------------------------------------------------------------------------- JSON sequences
def read_json(path: Path) -> InteractionTable:
    """One ``{"user": [items]}`` file, or a folder with the seed's train/val/test files."""
    if path.is_file():
        sequences = _read_json_sequences(path)
    else:
        train, val, test = (_read_json_sequences(path / f) for f in JSON_SPLIT_FILES)
        sequences = {}
        for user, items in train.items():
            v = _held_out_item(items, val, user, path / JSON_SPLIT_FILES[1])
            t = _held_out_item(items + [v], test, user, path / JSON_SPLIT_FILES[2])
            sequences[user] = items + [v, t]
        extra = (set(val) | set(test)) - set(train)
        if extra:
            raise DataFormatError(path / JSON_SPLIT_FILES[0], f"users {sorted(extra)[:5]} are in val/test but have no training sequence")
    users, items = [], []
    for user, seq in sequences.items():
        users.extend([user] * len(seq))
        items.extend(seq)
    return InteractionTable(users, items, str(path))


def _held_out_item(before: list[str], split: dict[str, list[str]], user: str, path: Path) -> str:
    """The one item a val/test file adds after ``before``: given alone or as the extended sequence."""
    if user not in split:
        raise DataFormatError(path, f"user {user!r} is missing: expected every training user in this file")
    seq = split[user]
    extra = seq[len(before):] if seq[: len(before)] == before and len(seq) > len(before) else seq
    if len(extra) != 1:
        raise DataFormatError(path, f"user {user!r}: expected exactly one held-out item (alone, or after the earlier items), got {len(extra)}")
    return extra[0]


def _read_json_sequences(path: Path) -> dict[str, list[str]]:
    text = "".join(read_lines(path))
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(raw, dict):
        raise DataFormatError(path, f'expected an object {{"user": [item, ...]}}, got {type(raw).__name__}')
    out = {}
    for user, items in raw.items():
        if not isinstance(items, list) or not all(isinstance(i, (int, str)) and not isinstance(i, bool) for i in items):
            raise DataFormatError(path, f"user {user!r}: expected a list of item ids (int or str), got {str(items)[:60]}")
        out[str(user)] = [str(i) for i in items]
    return out


# ----------------------------------------------------------------------------- GroupLens ML-100K
def read_grouplens(folder: Path) -> InteractionTable:
    """The original ML-100K files: ``u.data`` (user, item, rating, time) and ``u.item`` (title, genres)."""
    users, items, ratings, stamps = [], [], [], []
    path = folder / "u.data"
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if len(fields) != 4:
            raise DataFormatError(path, f"expected 4 fields (user item rating timestamp), got {len(fields)}", line=number)
        try:
            ratings.append(float(fields[2]))
            stamps.append(float(fields[3]))
        except ValueError:
            raise DataFormatError(path, f"expected a numeric rating and timestamp, got {fields[2:]!r}", line=number) from None
        users.append(fields[0])
        items.append(fields[1])
    table = InteractionTable(users, items, str(path), np.array(ratings), np.array(stamps))
    genres = [line.split("|")[0] for line in read_lines(folder / "u.genre", "latin-1") if "|" in line]
    for number, line in enumerate(read_lines(folder / "u.item", "latin-1"), start=1):
        fields = line.rstrip("\n").split("|")
        if len(fields) != 5 + len(genres):
            raise DataFormatError(folder / "u.item", f"expected {5 + len(genres)} '|'-separated fields, got {len(fields)}", line=number)
        names = " ".join(g for g, flag in zip(genres, fields[5:]) if flag == "1")
        table.item_text[fields[0]] = f"{fields[1]}. {names}"
        table.item_title[fields[0]] = fields[1]
        table.item_category[fields[0]] = names
    return table


def read_lines(path: Path, encoding: str = "utf-8") -> list[str]:
    """The lines of a checked text file (:func:`read_text`), refused when it holds no text at all."""
    lines = io.StringIO(read_text(path, encoding), newline=None).readlines()  # as a text file reads
    if not any(line.strip() for line in lines):
        raise DataFormatError(path, "file is empty: expected at least a header or one data line")
    return lines


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The text of a data file, checked once for every reader: a file that is missing, binary (NUL
    bytes) or not ``encoding`` text is one :class:`~memrec.errors.DataFormatError` naming the file,
    line and byte. A UTF-8 byte order mark is dropped.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "x.inter"; _ = path.write_bytes(b"u i\\n1 \\xe9\\n")
        >>> try:
        ...     read_text(path)
        ... except DataFormatError as e:
        ...     print(e.line, str(e).split(": ", 1)[1])
        2 byte 6 (0xe9) is not utf-8 text; expected a utf-8 text file
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise NotTextError(path, f"byte {e.start} (0x{data[e.start]:02x}) is not {encoding} text; expected a {encoding} text file",
                           line=data[: e.start].count(b"\n") + 1) from None
    if "\x00" in text:
        at = data.index(0)
        raise NotTextError(path, f"byte {at} is a NUL byte: this is a binary file, expected {encoding} text", line=data[:at].count(b"\n") + 1)
    return text.removeprefix("\ufeff")
