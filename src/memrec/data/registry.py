"""Named data sets, where their files are looked for, format detection and the official download.

Registered names are looked up, in order, under ``--data-dir`` (``DataConfig.data_dir``), then
``$MEMREC_DATA_DIR``, then the cache (``$MEMREC_CACHE_DIR`` or ``~/.cache/memrec``). A name that is
not registered is taken as a path to a file or folder in any supported format.

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
from memrec.data import readers
from memrec.data.dataset import SequenceDataset
from memrec.data.table import InteractionTable, build_dataset
from memrec.errors import DataFormatError, DatasetNotFoundError

FORMATS = ("atomic", "atomic-split", "s3rec", "json", "grouplens")


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


def load_dataset(config: DataConfig) -> SequenceDataset:
    """Resolve, read, filter and sequence the data set a :class:`DataConfig` names."""
    path, name = resolve(config)
    fmt, folder, stem = detect_format(path, config.format)
    table = read_table(fmt, folder, stem)
    return build_dataset(table, name, config.min_rating, config.user_core, config.item_core)


def resolve(config: DataConfig) -> tuple[Path, str]:
    """The file or folder to read and the data set's display name."""
    spec = REGISTRY.get(config.dataset)
    if spec is None:
        path = Path(config.dataset).expanduser()
        if not path.exists():
            raise DatasetNotFoundError(
                f"unknown data set {config.dataset!r}: expected one of {sorted(REGISTRY)} or a path to a file or folder "
                f"(formats: {', '.join(FORMATS)})"
            )
        return path, path.stem if path.is_file() else path.name
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
    return fmt, path if fmt in ("json", "s3rec") else folder, path.stem


def _guess_format(path: Path) -> str:
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
        return "s3rec"
    if any(path.glob("*.test.inter")):
        return "atomic-split"
    if any(path.glob("*.inter")):
        return "atomic"
    if (path / "u.data").exists():
        return "grouplens"
    if (path / readers.JSON_SPLIT_FILES[0]).exists():
        return "json"
    raise DataFormatError(
        path, "cannot tell the format of this folder: expected NAME.inter, NAME.test.inter, u.data or train_sequences.json in it"
    )


def _single(folder: Path, pattern: str) -> Path:
    found = sorted(p for p in folder.glob(pattern) if not p.name.endswith((".train.inter", ".valid.inter", ".test.inter")))
    if len(found) != 1:
        raise DataFormatError(folder, f"expected exactly one {pattern} file, found {[p.name for p in found]}: name the file instead")
    return found[0]


def read_table(fmt: str, path: Path, stem: str) -> InteractionTable:
    if fmt == "atomic":
        return readers.read_atomic(path, stem)
    if fmt == "atomic-split":
        return readers.read_atomic_split(path, stem)
    if fmt == "s3rec":
        return readers.read_s3rec(path)
    if fmt == "json":
        return readers.read_json(path)
    return readers.read_grouplens(path)
