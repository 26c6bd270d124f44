"""Audience export: the matched users' ids, streamed shard by shard to Parquet or CSV.

Locally the result is one file written to a temporary sibling and renamed when
complete (a failed export leaves nothing behind). With ``scheduler`` (a Dask
scheduler address or a ``distributed.Client``) each shard is a task: the worker
maps that shard of the saved index, selects the rows and writes
``part-NNNNN.parquet`` (or ``.csv``) into the output *directory*. Row order within
a file is the index's cell order, not ``user_id`` order.

``hash_salt``: ids are written as hex SHA-256 of ``salt + user_id`` (UTF-8).

:func:`export_first_party` writes an advertiser's *own* audience (a spec of its
retargeting rules only) straight from its events in the state store, without the
profile index: the file depends on nothing but the events the advertiser sent (the
export policy in :mod:`.privacy`).
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

from ..errors import TargetingError, Unavailable
from ..progress import Progress
from ..spec import Clause, Rule, Spec
from ..stores import StoreUnavailable
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


# ------------------------------------------------------- first-party exports
DAY = 86400.0


def first_party_users(spec: Spec, taxonomy: Any, store: Any, advertiser: str, now: float) -> list[str]:
    """Sorted ids of the users ``spec`` selects from ``advertiser``'s own events.

    ``spec`` holds retargeting rules only (:func:`.privacy.first_party_problem` is None):
    each clause is the AND of its ``any`` groups (a group: users with one of its events
    in its window) minus the users of its ``none`` rules; the audience is the OR of the
    clauses. Users need not be in the profile population.
    """
    fetch = getattr(store, "users_with_events", None)
    if fetch is None:
        raise Unavailable("the state store cannot list users by event, so retargeting audiences "
                          "cannot be exported from it", path="targeting.retargeting")
    cache: dict[Rule, set[str]] = {}

    def users(rule: Rule) -> set[str]:
        if rule not in cache:
            event, days = rule
            try:
                cache[rule] = set(fetch(advertiser, {event}, now - days * DAY))
            except StoreUnavailable as e:
                raise Unavailable(f"state store unavailable, the audience cannot be exported: {e}",
                                  path="targeting.retargeting") from e
        return cache[rule]

    out: set[str] = set()
    for c in spec.clauses(taxonomy):
        if not c.rt_any:
            raise TargetingError("a first-party export needs a retargeting 'any' rule in every alternative",
                                 path="targeting.retargeting", code="platform_data")
        chosen: set[str] | None = None
        for group in c.rt_any:
            either = set().union(*(users(r) for r in group))
            chosen = either if chosen is None else chosen & either
        assert chosen is not None
        for r in c.rt_none:
            chosen -= users(r)
        out |= chosen
    return sorted(out)


def export_first_party(spec: Spec, taxonomy: Any, store: Any, advertiser: str, path: str | Path, *,
                       now: float, fmt: str = "parquet", hash_salt: str | None = None,
                       on_progress: Callable[[int, int], None] | None = None) -> int:
    """Write :func:`first_party_users` to ``path`` (written aside, then renamed); the row count."""
    _check(fmt, hash_salt, 0)
    ids = first_party_users(spec, taxonomy, store, advertiser, now)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{id(ids)}")
    writer: _Writer | None = _Writer(tmp, fmt)
    step = 1 << 18
    try:
        assert writer is not None
        for lo in range(0, len(ids), step):
            arr = pa.array(ids[lo: lo + step], type=pa.string())
            writer.write(_hashed(arr, hash_salt) if hash_salt is not None else arr)
            if on_progress is not None:
                on_progress(min(lo + step, len(ids)), len(ids))
        writer.close()
        writer = None
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    if on_progress is not None:
        on_progress(len(ids), len(ids))
    return len(ids)


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
