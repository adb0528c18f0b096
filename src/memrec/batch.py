"""Batch inference: every user's top-k into one Parquet (or CSV) file, in chunks, resumable.

``memrec recommend CHECKPOINT --all --output recs.parquet`` ranks the whole catalogue for every user
of the data set (their whole history read and excluded, the neighbour memory as trained), ``chunk``
users at a time. Each chunk is written to ``OUTPUT.parts/`` as soon as it is ranked, so memory stays
bounded by one chunk and an interrupted run resumes where it stopped (the same checkpoint, ``k`` and
chunk size are required; ``manifest.json`` records them). When every chunk is there they are streamed
into ``OUTPUT`` (written to a temporary name, then renamed: a reader never sees half a file) and the
parts are removed. Rows: ``user, rank, item, score``, users in data-set order, ranks from 1.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from memrec import progress
from memrec.errors import MemrecError
from memrec.memory.item_search import ITEMS, SearchConfig, approximate_search

FORMATS = ("parquet", "csv")
SCORED_AT_ONCE = 1 << 27  # exact ranking scores at most this many (user, item) pairs at a time: 512 MiB of float32


def output_format(path: Path, format: str | None) -> str:  # noqa: A002
    """``format``, else the file's suffix (.parquet / .csv)."""
    chosen = format or path.suffix.lstrip(".").lower()
    if chosen not in FORMATS:
        raise MemrecError(f"{path}: expected a .parquet or .csv output (or --format parquet|csv), got {path.suffix or 'no suffix'!r}")
    return chosen


def recommend_all(rec, output: str | Path, k: int = 10, chunk: int = 2048, format: str | None = None, log=print,  # noqa: A002
                  search: SearchConfig = ITEMS) -> dict:
    """Write every user's top ``k`` to ``output``; returns users, rows, seconds and users per second.
    A catalogue that ``search`` searches approximately (by default from 10^6 items) is ranked through
    an item index (:mod:`memrec.memory.item_search`) where the model's scores are dot products.

    Example:
        >>> import tempfile, pyarrow.parquet as pq
        >>> from memrec.api import _tiny_run
        >>> out = Path(tempfile.mkdtemp()) / "recs.parquet"
        >>> report = recommend_all(_tiny_run(), out, k=3, chunk=5, log=lambda *_: None)
        >>> report["users"], report["rows"], pq.read_table(out).column_names
        (12, 36, ['user', 'rank', 'item', 'score'])
    """
    import pyarrow as pa

    if k < 1 or chunk < 1:
        raise MemrecError(f"k and the chunk size must be positive integers, got {k} and {chunk}")
    out = Path(output)
    kind = output_format(out, format)
    if out.is_dir():
        raise MemrecError(f"{out} is a folder: give a file path such as recs.parquet")
    parts = out.with_name(out.name + ".parts")
    manifest = {"checkpoint": str(rec.path or ""), "fingerprint": rec.checkpoint.fingerprint, "k": k, "chunk": chunk,
                "users": rec.dataset.num_users, "memory": rec.memory}
    index = approximate_search(rec.model, search)  # None: every item scored exactly
    if index is not None:
        manifest["index"] = index.backend
    _start_or_resume(parts, manifest)
    ds, max_len = rec.dataset, rec.config.data.max_len
    starts = range(0, ds.num_users, chunk)
    tic, done = time.perf_counter(), 0
    with progress.bar(ds.num_users, "recommend", "user") as bar:
        for start in starts:
            part = parts / f"part-{start:012d}.parquet"
            rows = np.arange(start, min(start + chunk, ds.num_users))
            if not part.exists():
                top, scores = _top_k(rec.model, ds, rows, k, max_len, index)  # (B, k') each
                width = top.size(1)
                table = pa.table({"user": pa.array(np.repeat([ds.user_ids[u] for u in rows], width)),
                                  "rank": pa.array(np.tile(np.arange(1, width + 1, dtype=np.int32), len(rows))),
                                  "item": pa.array([ds.item_ids[i] for i in top.flatten().tolist()]),
                                  "score": pa.array(scores.flatten().numpy().astype(np.float32))})
                _write_atomically(table, part)
                done += len(rows)
            bar.update(len(rows))
    seconds = time.perf_counter() - tic
    total = _combine(sorted(parts.glob("part-*.parquet")), out, kind)
    shutil.rmtree(parts)
    report = {"output": str(out), "format": kind, "users": ds.num_users, "rows": total, "k": k,
              "users_ranked_now": done, "seconds": round(seconds, 2), "users_per_second": round(done / seconds, 1) if done and seconds else None}
    log(f"{ds.num_users} users, {total} rows -> {out}" + (f" ({report['users_per_second']} users/s)" if report["users_per_second"] else ""))
    return report


def _top_k(model, ds, rows: np.ndarray, k: int, max_len: int, index) -> tuple:
    """The top ``k`` of each user in ``rows`` through ``index`` or, exactly, scoring at most
    ``SCORED_AT_ONCE`` (user, item) pairs at a time (a chunk of 1,024 users at 10^6 items would be 4 GiB)."""
    import torch

    from memrec.data.batching import make_eval_batch

    found = []
    for part in np.array_split(rows, -(-len(rows) * (model.num_items + 1) // SCORED_AT_ONCE)):
        batch = make_eval_batch(part, [ds.sequences[u] for u in part], np.zeros(len(part), dtype=np.int64), max_len)
        result = index.recommend(model, batch, k) if index is not None else None
        found.append(result if result is not None else model.recommend(batch, k=k))
    width = min(top.size(1) for top, _ in found)  # as one batch: the fewest rankable items of any row
    return torch.cat([top[:, :width] for top, _ in found]), torch.cat([scores[:, :width] for _, scores in found])


def _start_or_resume(parts: Path, manifest: dict) -> None:
    recorded = parts / "manifest.json"
    if parts.exists():
        if not recorded.exists() or json.loads(recorded.read_text()) != manifest:
            raise MemrecError(f"{parts} holds an unfinished run of another checkpoint, k, chunk size or memory setting; "
                              f"remove it or give another --output")
        return
    parts.mkdir(parents=True)
    recorded.write_text(json.dumps(manifest))


def _write_atomically(table, path: Path) -> None:
    import pyarrow.parquet as pq

    temporary = path.with_name(path.name + ".tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, path)


def _combine(parts: list[Path], out: Path, kind: str) -> int:
    """Stream the parts into ``out`` one at a time; returns the number of rows."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    temporary = out.with_name(out.name + ".tmp")
    writer, rows = None, 0
    try:
        for part in parts:
            table = pq.read_table(part)
            if writer is None:
                writer = pq.ParquetWriter(temporary, table.schema) if kind == "parquet" else pacsv.CSVWriter(temporary, table.schema)
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    os.replace(temporary, out)
    return rows
