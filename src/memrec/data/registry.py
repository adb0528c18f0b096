"""Named data sets, where their files are looked for, format detection and the official download.

Registered names are looked up, in order, under ``--data-dir`` (``DataConfig.data_dir``), then
``$MEMREC_DATA_DIR``, then the cache (``$MEMREC_CACHE_DIR`` or ``~/.cache/memrec``). A name that is
not registered is taken as a path to a file or folder in any supported format. A loaded data set
records where it was read (``SequenceDataset.origin``); checkpoints keep that record, and
``load_dataset(config, recorded=...)`` reads those files again while they are there.

Example:
    >>> sorted(REGISTRY)
    ['amazon-scientific', 'beauty', 'lastfm', 'ml-100k', 'sports']
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from memrec.config import DataConfig
from memrec.data import columns, readers
from memrec.data.dataset import SequenceDataset
from memrec.data.table import InteractionTable, build_dataset
from memrec.errors import ConfigError, DataFormatError, DatasetNotFoundError

FORMATS = ("atomic", "atomic-split", "s3rec", "json", "grouplens", *columns.TABLE_FORMATS)
INTERACTION_FILE_STEMS = ("ratings", "interactions", "reviews")  # a folder's table file, when it holds several


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    paths: tuple[str, ...]  # candidate files, relative to a data directory
    url: str | None = None  # official source, for users who are online
    archive_folder: str | None = None  # folder inside the downloaded zip


REGISTRY = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "ml-100k",
            "MovieLens 100K: 943 users, 1,682 movies, 100,000 ratings with timestamps; titles, years, genres",
            ("ml-100k/ml-100k.inter", "ml-100k/u.data"),
            url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
            archive_folder="ml-100k",
        ),
        DatasetSpec(
            "amazon-scientific",
            "Amazon 2018 Industrial & Scientific (UniSRec preprocessing), leave-one-out split files; product text",
            ("amazon-scientific/Scientific.test.inter", "Scientific/Scientific.test.inter"),
        ),
        DatasetSpec("beauty", "Amazon Beauty, 5-core, one line per user (S3-Rec files); ids only", ("s3rec/Beauty.txt", "beauty/Beauty.txt")),
        DatasetSpec(
            "sports",
            "Amazon Sports and Outdoors, 5-core, one line per user (S3-Rec files); ids only",
            ("s3rec/Sports_and_Outdoors.txt", "sports/Sports_and_Outdoors.txt"),
        ),
        DatasetSpec("lastfm", "LastFM, one line per user (S3-Rec files); ids only", ("s3rec/LastFM.txt", "lastfm/LastFM.txt")),
    ]
}


def cache_dir() -> Path:
    return Path(os.environ.get("MEMREC_CACHE_DIR") or Path.home() / ".cache" / "memrec")


def search_dirs(data_dir: str | None) -> list[Path]:
    dirs = [data_dir, os.environ.get("MEMREC_DATA_DIR"), str(cache_dir() / "data")]
    return [Path(d).expanduser() for d in dirs if d]


def load_dataset(config: DataConfig, recorded: dict | None = None) -> SequenceDataset:
    """Resolve, read, filter and sequence the data set a :class:`DataConfig` names. ``recorded``: the
    ``origin`` of a data set loaded before (a checkpoint keeps it): its files are read while they exist.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "ratings.csv"
        >>> _ = path.write_text("user,item,time\\nu,a,2\\nu,b,1\\n")
        >>> ds = load_dataset(DataConfig(dataset=str(path)))
        >>> [ds.item_ids[i] for i in ds.sequence("u")], ds.origin["format"]
        (['b', 'a'], 'csv')
    """
    try:
        path, name = resolve(config, recorded)
    except DatasetNotFoundError as exc:
        if not recorded:
            raise
        raise DatasetNotFoundError(f"{exc} (it was read from {recorded.get('path')}, which is no longer there)") from None
    fmt, file, stem = detect_format(path, config.format)
    table = read_table(fmt, file, stem, config.columns)
    item_file = _item_file(config, fmt, file, recorded)
    if item_file is not None:
        columns.attach_item_file(table, item_file, config.columns)
    ds = build_dataset(table, name, config.min_rating, config.user_core, config.item_core)
    ds.origin = {"path": str(path.resolve()), "name": name, "format": fmt, "item_file": str(item_file.resolve()) if item_file else None}
    return ds


def _item_file(config: DataConfig, fmt: str, file: Path, recorded: dict | None) -> Path | None:
    """The item metadata file: the recorded one, ``data.item_file``, or one beside a table file."""
    if recorded and recorded.get("item_file") and Path(recorded["item_file"]).is_file():
        return Path(recorded["item_file"])
    if config.item_file:
        path = Path(config.item_file).expanduser()
        if not path.is_file():
            raise DatasetNotFoundError(f"item file {config.item_file} (data.item_file) does not exist: expected a CSV / TSV / "
                                       f"Parquet / .dat file with an item column and titles or categories")
        return path
    return columns.item_file_beside(file) if fmt in columns.TABLE_FORMATS else None


def resolve(config: DataConfig, recorded: dict | None = None) -> tuple[Path, str]:
    """The file or folder to read and the data set's display name: the ``recorded`` path while it
    exists, else the registered name looked up in the data folders, else ``config.dataset`` as a path."""
    if recorded and recorded.get("path") and Path(recorded["path"]).exists():
        return Path(recorded["path"]), str(recorded.get("name") or config.dataset)
    spec = REGISTRY.get(config.dataset)
    if spec is None:
        path = Path(config.dataset).expanduser()
        if not path.exists():
            raise DatasetNotFoundError(
                f"unknown data set {config.dataset!r}: expected one of {sorted(REGISTRY)} or a path to a file or folder "
                f"(formats: {', '.join(FORMATS)})"
            )
        named_by_folder = path.is_file() and path.stem in INTERACTION_FILE_STEMS and columns.table_format(path)  # ml-latest/ratings.csv
        return path, path.parent.name if named_by_folder else path.stem if path.is_file() else path.name
    searched = []
    for base in search_dirs(config.data_dir):
        for rel in spec.paths:
            candidate = base / rel
            searched.append(str(candidate))
            if candidate.exists():
                return candidate, spec.name
    if spec.url and config.download:
        return download(spec), spec.name
    hint = f" or allow the download from {spec.url} (data.download=true)" if spec.url else ""
    raise DatasetNotFoundError(
        f"data set {spec.name!r} not found; looked for {searched or spec.paths}. "
        f"Pass --data-dir DIR or set MEMREC_DATA_DIR to a folder holding {spec.paths[0]}{hint}"
    )


def download(spec: DatasetSpec) -> Path:
    """Fetch the official archive once into the cache; a clear error when offline."""
    target = cache_dir() / "data" / spec.name
    marker = target / "u.data"
    if marker.exists():
        return marker
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "archive.zip"
        try:
            with urllib.request.urlopen(spec.url, timeout=30) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise DatasetNotFoundError(
                f"data set {spec.name!r} is not on this machine and the download from {spec.url} failed ({exc}). "
                f"If you are offline, copy the data set by hand and pass --data-dir DIR or MEMREC_DATA_DIR"
            ) from None
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        except zipfile.BadZipFile:
            raise DatasetNotFoundError(f"the download from {spec.url} is not a valid zip archive") from None
        extracted = Path(tmp) / (spec.archive_folder or "")
        if not (extracted / "u.data").exists():
            raise DatasetNotFoundError(f"the archive from {spec.url} has no {spec.archive_folder}/u.data")
        shutil.rmtree(target, ignore_errors=True)
        extracted.rename(target)
    return marker


def detect_format(path: Path, fmt: str | None = None) -> tuple[str, Path, str]:
    """(format, folder, base name) of a data file or folder; ``fmt`` forces the format."""
    if fmt is not None and fmt not in FORMATS:
        raise DataFormatError(path, f"unknown format {fmt!r}: expected one of {FORMATS}")
    folder = path if path.is_dir() else path.parent
    if fmt is None:
        fmt = _guess_format(path)
    if fmt == "atomic-split":
        stems = [p.name[: -len(".test.inter")] for p in sorted(folder.glob("*.test.inter"))]
        stem = path.name[: -len(".test.inter")] if path.name.endswith(".test.inter") else path.name.split(".")[0]
        if path.is_dir() or stem not in stems:
            stem = stems[0] if stems else stem
        return fmt, folder, stem
    if fmt == "atomic":
        stem = path.name[: -len(".inter")] if path.is_file() else _single(folder, "*.inter").stem
        return fmt, folder, stem
    if fmt in columns.TABLE_FORMATS:
        file = path if path.is_file() else _table_file(path)
        return fmt, file, file.stem
    return fmt, path if fmt in ("json", "s3rec") else folder, path.stem


def _guess_format(path: Path) -> str:
    """A file's format by its name, else by its first line: ``::`` is MovieLens's ``.dat`` layout, a
    ',' or ';' or a header naming a user and an item column a table, anything else ``user item ...`` lines."""
    name = path.name
    if path.is_file():
        if name.endswith((".train.inter", ".valid.inter", ".test.inter")):
            return "atomic-split"
        if name.endswith(".inter"):
            return "atomic"
        if name.endswith(".json"):
            return "json"
        if name == "u.data":
            return "grouplens"
        if columns.table_format(path):
            return columns.table_format(path)
        first = _first_line(path)
        if "::" in first:
            return "dat"
        if "," in first or ";" in first or columns.has_header(first):
            return "csv"
        return "s3rec"
    if any(path.glob("*.test.inter")):
        return "atomic-split"
    if any(path.glob("*.inter")):
        return "atomic"
    if (path / "u.data").exists():
        return "grouplens"
    if (path / readers.JSON_SPLIT_FILES[0]).exists():
        return "json"
    return columns.table_format(_table_file(path))


def _first_line(path: Path) -> str:
    with open(path, "rb") as f:
        return f.readline(4096).decode("utf-8", errors="replace")


def _table_file(folder: Path) -> Path:
    """The interactions table of a folder: ``ratings.*`` (``interactions.*``, ``reviews.*``), else its
    only table file that is not an item file."""
    tables = sorted(p for p in folder.glob("*") if p.is_file() and columns.table_format(p))
    named = [p for stem in INTERACTION_FILE_STEMS for p in tables if p.stem == stem]
    others = [p for p in tables if p.stem not in columns.ITEM_FILE_STEMS]
    found = named or others
    if len(found) == 1:
        return found[0]
    seen = sorted(p.name for p in folder.glob("*"))[:8]
    raise DataFormatError(folder, f"cannot tell the format of this folder: expected NAME.inter, NAME.test.inter, u.data, "
                                  f"train_sequences.json, or one ratings.csv / .tsv / .parquet / .dat in it; found {seen or 'nothing'}"
                                  + (": name the file instead" if len(found) > 1 else ""))


def _single(folder: Path, pattern: str) -> Path:
    found = sorted(p for p in folder.glob(pattern) if not p.name.endswith((".train.inter", ".valid.inter", ".test.inter")))
    if len(found) != 1:
        raise DataFormatError(folder, f"expected exactly one {pattern} file, found {[p.name for p in found]}: name the file instead")
    return found[0]


def read_table(fmt: str, path: Path, stem: str, names: dict[str, str] | None = None) -> InteractionTable:
    """The interactions of a detected format; ``names``: the columns of a table file (``data.columns``)."""
    if names and fmt not in ("csv", "parquet"):
        raise ConfigError(f"data.columns names the columns of a CSV / TSV / Parquet file; format {fmt} has fixed columns: drop it")
    if fmt in columns.TABLE_FORMATS:
        return columns.read_columns_file(path, fmt, names)
    if fmt == "atomic":
        return readers.read_atomic(path, stem)
    if fmt == "atomic-split":
        return readers.read_atomic_split(path, stem)
    if fmt == "s3rec":
        return readers.read_s3rec(path)
    if fmt == "json":
        return readers.read_json(path)
    return readers.read_grouplens(path)
