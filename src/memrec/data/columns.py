"""Tables with named columns: CSV / TSV with a header line, Parquet, and MovieLens ``.dat`` files.

Each column has a *role*: ``user``, ``item``, ``rating``, ``time`` in an interactions file, ``item``,
``title``, ``categories`` in an item metadata file. A role's column is found by its header name among
the common names in :data:`ROLES` (case, ``_``, ``-`` and spaces ignored), or named by the user with
``columns={"user": "member", ...}`` (``--columns user=member,...``). MovieLens ``.dat`` files
(``ratings.dat``, ``movies.dat``: ``::`` separated, no header) have MovieLens's fixed columns.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "ratings.csv"
    >>> _ = path.write_text("userId,movieId,rating,timestamp\\n1,31,2.5,1260759144\\n1,1029,3.0,1260759179\\n")
    >>> table = read_columns_file(path, "csv")
    >>> table.users, table.items, table.ratings.tolist()
    (['1', '1'], ['31', '1029'], [2.5, 3.0])
"""
from __future__ import annotations

import csv
import re
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

from memrec.data.readers import CATEGORY_COLUMNS, TITLE_COLUMNS, read_lines
from memrec.data.table import InteractionTable
from memrec.errors import DataFormatError, NotTextError

ROLES = {  # role -> the header names recognised for it
    "user": ("user", "user_id", "userId", "uid", "reviewerID", "customer_id", "visitor_id"),
    "item": ("item", "item_id", "itemId", "movieId", "movie_id", "asin", "product_id", "iid", "track_id", "book_id", "business_id"),
    "rating": ("rating", "score", "stars", "overall"),
    "time": ("timestamp", "time", "ts", "datetime", "date", "unixReviewTime", "event_time"),
    "title": TITLE_COLUMNS,
    "categories": CATEGORY_COLUMNS,
}
INTERACTIONS = ("user", "item", "rating", "time")  # user and item are required wherever they are read
ITEMS = ("item", "title", "categories")
TABLE_FORMATS = {"csv": "CSV / TSV with a header line", "parquet": "Parquet", "dat": "MovieLens .dat (:: separated)"}
DAT_COLUMNS = {INTERACTIONS: ["user", "item", "rating", "time"], ITEMS: ["item", "title", "categories"]}  # MovieLens's README
ITEM_FILE_STEMS = ("movies", "items", "item", "products", "metadata")  # item files found beside an interactions file
SUFFIXES = {".csv": "csv", ".tsv": "csv", ".tab": "csv", ".parquet": "parquet", ".pq": "parquet", ".dat": "dat"}
DELIMITERS = ("\t", ",", ";", "|")


def table_format(path: Path) -> str | None:
    """The table format of a file by its name: ``csv``, ``parquet``, ``dat``, or None."""
    return SUFFIXES.get(path.suffix.lower())


def has_header(line: str) -> bool:
    """Whether a first line names a user and an item column (a table with a header, not ``user item item ...``).

    Example:
        >>> has_header("user_id\\titem_id\\trating"), has_header("1 2 3 4")
        (True, False)
    """
    fields = [_norm(f) for f in re.split(r"[\t,;|]", line.strip())]
    return len(fields) > 1 and all(any(_norm(n) in fields for n in ROLES[role]) for role in ("user", "item"))


def read_columns_file(path: Path, fmt: str, columns: dict[str, str] | None = None) -> InteractionTable:
    """Interactions from a ``csv``, ``parquet`` or ``dat`` file: user, item, optional rating and time
    (numbers, or ISO dates such as ``2020-01-31T12:00:00``, read as seconds since 1970 UTC)."""
    cols, where = _read_roles(path, fmt, INTERACTIONS, columns)
    ratings = np.array([_number(v, "rating", where(r)) for r, v in enumerate(cols["rating"])]) if "rating" in cols else None
    stamps = np.array([_seconds(v, where(r)) for r, v in enumerate(cols["time"])]) if "time" in cols else None
    return InteractionTable(_ids(cols["user"], "user", where), _ids(cols["item"], "item", where), str(path), ratings, stamps)


def attach_item_file(table: InteractionTable, path: Path, columns: dict[str, str] | None = None) -> None:
    """Titles and categories from an item metadata file (``csv``, ``parquet`` or ``dat``) into
    ``table``; an item's text is its title and categories. Items the file lacks keep no text. The
    item column named in ``columns`` is used where the file has it, else the file's is found by name."""
    fmt = table_format(path) or "csv"
    cols, where = _read_roles(path, fmt, ITEMS, columns, optional=("item",))
    for row, item in enumerate(_ids(cols["item"], "item", where)):
        title = _text(cols["title"][row]) if "title" in cols else ""
        categories = _text(cols["categories"][row]).replace("|", ", ") if "categories" in cols else ""
        if title:
            table.item_title[item] = title
        if categories:
            table.item_category[item] = categories
        table.item_text[item] = ". ".join(p for p in (title, categories) if p)


def item_file_beside(path: Path) -> Path | None:
    """An item metadata file in the folder of an interactions file (``movies.csv``, ``items.parquet``...)."""
    found = [p for stem in ITEM_FILE_STEMS for p in sorted(path.parent.glob(f"{stem}.*")) if table_format(p) and p != path]
    if len(found) > 1:
        raise DataFormatError(path.parent, f"several item metadata files {[p.name for p in found]}: name one with data.item_file")
    return found[0] if found else None


# ----------------------------------------------------------------------------- reading the columns
def _read_roles(path: Path, fmt: str, roles: tuple[str, ...], given: dict[str, str] | None, optional: tuple[str, ...] = ()):
    """``{role: values}`` of the columns a file has for ``roles``, and a function from row to its place;
    a column given for an ``optional`` role that the file lacks is found by name instead."""
    if fmt == "parquet":
        header, values = _parquet(path)
        where = lambda row: (path, f"row {row + 1}: ", None)  # noqa: E731
        layout = "read as Parquet"
    else:
        header, rows, lines, layout = _text_rows(path, fmt, roles)
        values = lambda i: [r[i] for r in rows]  # noqa: E731
        where = lambda row: (path, "", lines[row])  # noqa: E731
    given = {role: name for role, name in (given or {}).items() if role not in optional or name in header}
    picked = pick_columns(header, roles, given, path, layout)
    return {role: values(i) for role, i in picked.items()}, where


def pick_columns(header: list[str], roles: tuple[str, ...], given: dict[str, str] | None, path, layout: str = "") -> dict[str, int]:
    """The header position of each role a file has (user and item are required).

    Example:
        >>> pick_columns(["userId", "movieId", "rating"], INTERACTIONS, None, "r.csv")
        {'user': 0, 'item': 1, 'rating': 2}
        >>> pick_columns(["member", "movieId"], INTERACTIONS, None, "r.csv", "read as CSV")
        Traceback (most recent call last):
        ...
        memrec.errors.DataFormatError: r.csv, line 1: read as CSV: no user column: expected a header name among user, user_id, userId, uid, reviewerID, customer_id, visitor_id, or one given as --columns user=NAME (Python: columns={'user': NAME}); the header is ['member', 'movieId']
    """
    given = given or {}
    prefix = f"{layout}: " if layout else ""
    picked: dict[str, int] = {}
    for role in roles:
        if role in given:
            if given[role] not in header:
                raise DataFormatError(path, f"{prefix}column {given[role]!r} (given for {role}) is not in the header {header}", line=1)
            picked[role] = header.index(given[role])
            continue
        names = {_norm(name) for name in ROLES[role]}
        found = [i for i, h in enumerate(header) if _norm(h) in names and i not in picked.values()]
        if len(found) > 1:
            raise DataFormatError(path, f"{prefix}columns {[header[i] for i in found]} could each be the {role}: "
                                        f"name one with --columns {role}=NAME (Python: columns={{'{role}': NAME}})", line=1)
        if found:
            picked[role] = found[0]
        elif role in ("user", "item"):
            raise DataFormatError(path, f"{prefix}no {role} column: expected a header name among {', '.join(ROLES[role])}, or one given as "
                                        f"--columns {role}=NAME (Python: columns={{'{role}': NAME}}); the header is {header}", line=1)
    return picked


def _text_rows(path: Path, fmt: str, roles: tuple[str, ...]):
    """Header, rows, each row's line number and how the file was read, for a CSV / TSV or ``.dat`` file."""
    if fmt == "dat":
        lines = _dat_lines(path)
        header = DAT_COLUMNS[roles]
        rows, numbers = [], []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("::")
            if len(fields) != len(header):
                raise DataFormatError(path, f"read as a MovieLens .dat file: expected {len(header)} '::'-separated fields "
                                            f"({', '.join(header)}), got {len(fields)}", line=number)
            rows.append(fields)
            numbers.append(number)
        return header, rows, numbers, "read as a MovieLens .dat file"
    lines = read_lines(path)
    delimiter = next((d for d in DELIMITERS if d in lines[0]), None)
    if delimiter is None:
        raise DataFormatError(path, f"read as a table with a header (format csv): expected a header line with columns separated by "
                                    f"a tab, ',', ';' or '|', got {lines[0].strip()[:60]!r}", line=1)
    layout = f"read as a table with a header ({'tab' if delimiter == chr(9) else repr(delimiter)} separated)"
    reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
    try:
        header = [h.strip() for h in next(reader)]
        rows, numbers = [], []
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise DataFormatError(path, f"{layout}: expected {len(header)} fields ({', '.join(header)}), got {len(fields)}", line=reader.line_num)
            rows.append(fields)
            numbers.append(reader.line_num)
    except csv.Error as exc:
        raise DataFormatError(path, f"{layout}: {exc}", line=reader.line_num) from None
    return header, rows, numbers, layout


def _dat_lines(path: Path) -> list[str]:
    """MovieLens wrote ML-1M's files in Latin-1 and later ones in UTF-8: UTF-8 first."""
    try:
        return read_lines(path)
    except NotTextError as exc:
        if "NUL" in str(exc):
            raise
        return read_lines(path, "latin-1")


def _parquet(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataFormatError(path, "reading Parquet needs pyarrow: pip install pyarrow") from None
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
        raise DataFormatError(path, f"read as Parquet: not a Parquet file ({' '.join(str(exc).split())[:160]})") from None
    if table.num_rows == 0:
        raise DataFormatError(path, "read as Parquet: no rows: expected at least one")
    return list(table.column_names), lambda i: table.column(i).to_pylist()


# ----------------------------------------------------------------------------- values
def _ids(values: list, role: str, where) -> list[str]:
    out = []
    for row, value in enumerate(values):
        text = _text(value)
        if not text:
            path, prefix, line = where(row)
            raise DataFormatError(path, f"{prefix}empty {role} id: expected one in every row", line=line)
        out.append(text)
    return out


def _text(value) -> str:
    """A cell as text; a whole float (an id Parquet stored as 3.0) as an integer."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _number(value, role: str, at) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        path, prefix, line = at
        raise DataFormatError(path, f"{prefix}{role}: expected a number, got {value!r}", line=line) from None


def _seconds(value, at) -> float:
    """A time as seconds since 1970 (UTC): a number as it is, a date or date-time converted."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp()
    try:
        return _number(value, "time", at)
    except DataFormatError:
        try:
            return _seconds(datetime.fromisoformat(str(value).strip()), at)
        except ValueError:
            path, prefix, line = at
            raise DataFormatError(path, f"{prefix}time: expected a number or an ISO date such as 2020-01-31T12:00:00, got {value!r}",
                                  line=line) from None


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()
