"""Audience export: the matched users' ids, streamed shard by shard to Parquet or CSV.

Locally the result is one file written to a temporary sibling and renamed when
complete (a failed export leaves nothing behind). With ``scheduler`` (a Dask
scheduler address or a ``distributed.Client``) each shard is a task: the worker
maps that shard of the saved index, selects the rows and writes
``part-NNNNN.parquet`` (or ``.csv``) into the output *directory*. Row order within
a file is the index's cell order, not ``user_id`` order.

``hash_salt``: ids are written as hex SHA-256 of ``salt + user_id`` (UTF-8).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pyroaring import BitMap

from ..errors import TargetingError
from ..progress import Progress
from ..spec import Clause, Spec
from .index import AudienceIndex, Shard, ids_to_arrow
from .reach import Evaluator

FORMATS = ("parquet", "csv")
SCHEMA = pa.schema([("user_id", pa.string())])


def _hashed(ids: pa.Array, salt: str) -> pa.Array:
    prefix = salt.encode()
    return pa.array([hashlib.sha256(prefix + u).hexdigest() for u in ids.cast(pa.binary()).to_pylist()],
                    type=pa.string())


def _ids_of(shard: Shard, rows: np.ndarray | slice, hash_salt: str | None) -> pa.Array:
    """Ids of ``rows`` (an index array, or a slice: a contiguous range read without a gather)."""
    arr = ids_to_arrow(np.asarray(shard.ids)[rows])
    return _hashed(arr, hash_salt) if hash_salt is not None else arr


class _Writer:
    def __init__(self, path: Path, fmt: str) -> None:
        self.fmt = fmt
        self._w: Any = (pq.ParquetWriter(path, SCHEMA, compression="snappy", use_dictionary=False,
                                          write_statistics=False) if fmt == "parquet"
                        else pacsv.CSVWriter(path, SCHEMA))

    def write(self, ids: pa.Array) -> None:
        if len(ids):
            batch = pa.record_batch([ids], schema=SCHEMA)
            if self.fmt == "parquet":
                self._w.write_batch(batch)
            else:
                self._w.write(batch)

    def close(self) -> None:
        self._w.close()


def _check(fmt: str, hash_salt: Any, min_size: Any) -> None:
    if fmt not in FORMATS:
        raise TargetingError(f"format is parquet or csv, not {fmt!r}", path="format", code="invalid")
    if hash_salt is not None and not isinstance(hash_salt, str):
        raise TargetingError("hash_salt is a string", path="hash_salt", code="invalid")
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
        raise TargetingError("min_size is a non-negative integer", path="min_size", code="invalid")


def export(index: AudienceIndex, spec: Spec, path: str | Path, *, advertiser: str | None = None,
           store: Any = None, now: float = 0.0, fmt: str = "parquet", hash_salt: str | None = None,
           scheduler: Any = None, progress: bool = False, min_size: int = 0,
           on_progress: Callable[[int, int], None] | None = None) -> int:
    """Write the ids of the users matching ``spec``; returns the row count.

    Refuses (``audience_too_small``, a 4xx) when fewer than ``min_size`` users match;
    ``on_progress(rows_written, rows_total)`` is called after each shard.
    """
    _check(fmt, hash_salt, min_size)
    ev = Evaluator(index, advertiser=advertiser, store=store, now=now)
    clauses = ev.clauses(spec)
    sels = ev.select(clauses)
    total = sum(s.count() for s in sels)
    if total < min_size:
        raise TargetingError(f"the audience has fewer than {min_size} users; exports need at least that many",
                             path="targeting", code="audience_too_small")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if scheduler is not None:
        return _export_dask(index, ev, clauses, out, fmt, hash_salt, scheduler, total, on_progress)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{id(sels)}")
    writer = _Writer(tmp, fmt)
    done = 0

    def chunks() -> Iterator[tuple[int, bool, np.ndarray | slice, int]]:
        for k, sel in enumerate(sels):
            if sel.count() == 0:
                continue
            step = max(1, min(1 << 21, (1 << 30) // index.shards[k].ids.dtype.itemsize))  # int32 offsets
            if sel.bits is None:  # row ranges: slice the ids, no gather
                spans = [(lo, min(lo + step, end)) for start, end in zip(sel.starts.tolist(), sel.ends.tolist())
                         for lo in range(start, end, step)]
                for i, (a, b) in enumerate(spans):
                    yield k, i == len(spans) - 1, slice(a, b), b - a
                continue
            rows = sel.rows()
            for lo in range(0, len(rows), step):
                part = rows[lo: lo + step]
                yield k, lo + step >= len(rows), part, len(part)

    try:
        # two-stage pipeline: gather ids of the next chunk while the writer encodes this one
        with Progress("export", total=total, unit="ids", enabled=progress) as bar, ThreadPoolExecutor(1) as pool:
            pending = None
            for k, last, part, size in chunks():
                nxt = pool.submit(_ids_of, index.shards[k], part, hash_salt)
                if pending is not None:
                    writer.write(pending.result())
                pending = nxt
                done += size
                bar.update(size)
                if last and on_progress is not None:
                    on_progress(done, total)
            if pending is not None:
                writer.write(pending.result())
        writer.close()
        writer = None  # type: ignore[assignment]
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    if on_progress is not None:
        on_progress(done, total)
    return done


# ------------------------------------------------------------------ on Dask
def export_shard(directory: str, shard_no: int, meta: dict[str, Any], taxonomy: Any,
                 clauses: Sequence[Clause], rt: dict[Any, bytes], out: str, fmt: str,
                 hash_salt: str | None) -> int:
    """One task: select the clause rows of one saved shard and write them to ``out``."""
    shard = Shard.open(Path(directory) / f"shard-{shard_no:05d}", meta)
    sub = AudienceIndex(taxonomy, [shard])
    rt_maps = {r: [BitMap.deserialize(b)] for r, b in rt.items()}
    parts = []
    for c in clauses:
        parts.append(sub.rows_for(c, sub.cell_runs(c), 0, rt_maps))
    if len(parts) == 1:
        rows = parts[0].rows()
    else:
        rows = np.frombuffer(BitMap.union(*(p.bitmap() for p in parts)).to_array(), dtype=np.uint32)
    w = _Writer(Path(out), fmt)
    try:
        w.write(_ids_of(shard, rows, hash_salt))
    finally:
        w.close()
    return len(rows)


def _export_dask(index: AudienceIndex, ev: Evaluator, clauses: Sequence[Clause], out: Path, fmt: str,
                 hash_salt: str | None, scheduler: Any, total: int,
                 on_progress: Callable[[int, int], None] | None) -> int:
    import json

    from distributed import Client, as_completed

    tmpdir = None
    directory = index.directory
    if directory is None:  # workers read shards from disk: save an in-memory index first
        tmpdir = Path(tempfile.mkdtemp(prefix="targeting-index-"))
        directory = index.save(tmpdir / "index", adopt=False)
    manifest = json.loads((Path(directory) / "manifest.json").read_text())
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    stage = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    ext = "parquet" if fmt == "parquet" else "csv"
    try:
        futures = []
        for k, meta in enumerate(manifest["shards"]):
            rt = {r: maps[k].serialize() for r, maps in ev.rt.items()}
            futures.append(client.submit(
                export_shard, str(directory), k, meta, index.taxonomy, list(clauses), rt,
                str(stage / f"part-{k:05d}.{ext}"), fmt, hash_salt, pure=False))
        done = 0
        for f in as_completed(futures):
            done += int(f.result())
            if on_progress is not None:
                on_progress(done, total)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        stage.rename(out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
        if client is not scheduler:
            client.close()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return done
