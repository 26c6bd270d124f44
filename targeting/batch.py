"""Batch scoring (``targeting score``): decide a Parquet file of requests, streaming.

Requests (docs/files.md) are read in record batches, decided with the vectorized
pipeline of :mod:`targeting.batchrank` (same answers as ``Engine.decide``:
profiles fill missing attributes, store-backed checks read the state as of the
start of the run — a :class:`~targeting.stores.snapshot.StateSnapshot` when the
store can take one, else the store once per step — and pCTR comes from the
engine's model) and written as they come:
``request_id, rank, campaign_id, ecpm, pctr``, ``limit`` decisions per request
at or above ``floor_cpm``. Invalid rows are left out, counted and reported
(``errors``), never silently.

With ``scheduler`` (a Dask scheduler address or a ``distributed.Client``) the
input's row groups are scored on the workers and written as partitioned
Parquet (``out/part-00000.parquet`` ...); input and output paths must be
visible to the workers. ``summary=True`` adds "what would have served": per
campaign, impressions (rank-1 wins), expected clicks (Σ pCTR of those) and
spend (CPM: bid / 1000 per impression; CPC: bid × pCTR).
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .compiler import CampaignIndex
from .errors import TargetingError
from .layout import Layout
from .progress import Progress
from .request import DEFAULT_LIMIT, MAX_LIMIT
from .scoring import ClickModel
from .stores.base import StateStore
from .stores.snapshot import StateSnapshot
from .taxonomy import Taxonomy

BATCH_ROWS = 65_536
MAX_REPORTED_ERRORS = 100
OUTPUT_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("rank", pa.int16()), ("campaign_id", pa.string()),
    ("ecpm", pa.float64()), ("pctr", pa.float64()),
])
# dictionary-encode the columns with few distinct values only: hashing every request_id
# cost more than the rest of writing (request ids repeat on adjacent rows; snappy packs them)
WRITE_OPTIONS: dict[str, Any] = {"use_dictionary": ["rank", "campaign_id"]}


# ------------------------------------------------------------------ the work
@dataclass
class Job:
    """Everything a worker needs to score requests: picklable, no open resources but the store."""

    taxonomy: Taxonomy
    index: CampaignIndex
    model: ClickModel
    store: StateStore | None
    profiles: Any
    now: float
    limit: int
    floor_cpm: float
    layout: Layout | None = None  # the ranking layout: the engine's, or built where the job is unpickled

    def ranking(self) -> Layout:
        """The ranking layout of the job's index and model, built once per process."""
        if self.layout is None:
            self.layout = Layout.of(self.index, self.model)
        return self.layout


@dataclass
class Tally:
    """Counts of one partition (or the whole run); summary arrays are per campaign position."""

    requests: int = 0
    invalid: int = 0
    decisions: int = 0
    no_decision: int = 0
    degraded: int = 0
    errors: list[dict[str, Any]] | None = None
    impressions: np.ndarray | None = None
    clicks: np.ndarray | None = None
    spend: np.ndarray | None = None

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.invalid += other.invalid
        self.decisions += other.decisions
        self.no_decision += other.no_decision
        self.degraded += other.degraded
        self.errors = ((self.errors or []) + (other.errors or []))[:MAX_REPORTED_ERRORS]
        for f in ("impressions", "clicks", "spend"):
            mine, theirs = getattr(self, f), getattr(other, f)
            setattr(self, f, theirs if mine is None else mine + theirs)


def score_batches(job: Job, batches: Iterator[tuple[int, pa.RecordBatch]], writer: pq.ParquetWriter,
                  progress: Progress | None = None) -> Tally:
    """Decide every ``(first_row, record batch)`` and write the decisions; returns the tally."""
    from .batchrank import decide_requests
    from .batchrequests import parse_requests

    index = job.index
    layout = job.ranking()
    n = index.n_campaigns
    t = Tally(errors=[], impressions=np.zeros(n, dtype=np.int64), clicks=np.zeros(n), spend=np.zeros(n))
    ids = pa.array(index.ids, pa.string())
    for first, batch in batches:
        reqs, errors = parse_requests(batch, job.taxonomy, now=job.now, profiles=job.profiles, first_row=first)
        t.requests += batch.num_rows
        t.invalid += len(errors)
        assert t.errors is not None
        if len(t.errors) < MAX_REPORTED_ERRORS:
            t.errors.extend(errors[:MAX_REPORTED_ERRORS - len(t.errors)])
        if len(reqs):
            ranked, degraded = decide_requests(layout, job.taxonomy, job.store, reqs,
                                            limit=job.limit, floor_cpm=job.floor_cpm)
            t.degraded += int(degraded.sum())
            t.decisions += ranked.req.size
            t.no_decision += len(reqs) - int(np.count_nonzero(ranked.rank == 1))  # one rank 1 per answered request
            writer.write_table(pa.table({
                "request_id": _request_ids(batch, reqs.row[ranked.req] - first),
                "rank": pa.array(ranked.rank, pa.int16()),
                "campaign_id": ids.take(pa.array(ranked.camp)),
                "ecpm": pa.array(ranked.ecpm, pa.float64()),
                "pctr": pa.array(ranked.pctr, pa.float64()),
            }, schema=OUTPUT_SCHEMA))
            win = ranked.rank == 1
            camp, pctr = ranked.camp[win], ranked.pctr[win]
            assert t.impressions is not None and t.clicks is not None and t.spend is not None
            t.impressions += np.bincount(camp, minlength=n)
            t.clicks += np.bincount(camp, weights=pctr, minlength=n)
            cost = np.where(index.is_cpc[camp], index.bid[camp] * pctr, index.bid[camp] / 1000.0)
            t.spend += np.bincount(camp, weights=cost, minlength=n)
        if progress is not None:
            progress.update(batch.num_rows)
    return t


def _request_ids(batch: pa.RecordBatch, rows: np.ndarray) -> pa.Array:
    """string[len(rows)]: the input's ``request_id`` of each output row (null when absent)."""
    if "request_id" not in batch.schema.names:
        return pa.nulls(rows.size, pa.string())
    col = batch.column(batch.schema.get_field_index("request_id")).take(pa.array(rows))
    return col if pa.types.is_string(col.type) else col.cast(pa.string())


def _batches(path: Path, part: tuple[int, int, int] | None, first_row: int,
             rows: int) -> Iterator[tuple[int, Any]]:
    """``(first row, record batch)`` of a file, or of rows ``[start, stop)`` of one row group."""
    pf = pq.ParquetFile(path)
    if part is None:
        for batch in pf.iter_batches(batch_size=rows):
            yield first_row, batch
            first_row += batch.num_rows
        return
    group, start, stop = part
    table = pf.read_row_group(group).slice(start, stop - start)
    for batch in table.to_batches(max_chunksize=rows):
        yield first_row, batch
        first_row += batch.num_rows


# ------------------------------------------------------------------ entry point
def score(
    engine: Any, requests_path: str | Path, out_path: str | Path, *, scheduler: Any = None, summary: bool = False,
    progress: bool = True, limit: int = DEFAULT_LIMIT, floor_cpm: float = 0.0, batch_rows: int = BATCH_ROWS,
    partition_rows: int = 250_000,
) -> dict[str, Any]:
    """Score a Parquet file (or a directory of them) of requests; see the module docstring.

    Returns ``{"requests", "scored", "invalid", "errors" (the first 100:
    ``{"row", "request_id", "error"}``), "decisions", "no_decision", "degraded",
    "out", "partitions", "seconds", "requests_per_s", "index_version",
    "model_version"}`` and with ``summary`` a ``"summary"`` list, one entry per
    campaign that won an impression, by spend descending."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise TargetingError(f"limit is a whole number 1..{MAX_LIMIT}", path="limit")
    if not (0 <= floor_cpm < float("inf")):
        raise TargetingError("floor_cpm is a non-negative number", path="floor_cpm")
    files = _input_files(Path(requests_path))
    job = Job(engine.taxonomy, engine.index, engine.model, _state_for_batch(engine.store, engine.index),
              engine.profiles, float(engine.clock()), limit, float(floor_cpm), engine.layout)
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    bar = Progress("score", total=total, enabled=progress)
    t0 = time.perf_counter()
    out = Path(out_path)
    if scheduler is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tally = Tally()
        with pq.ParquetWriter(out, OUTPUT_SCHEMA, **WRITE_OPTIONS) as writer:
            first = 0
            for f in files:
                n = pq.ParquetFile(f).metadata.num_rows
                tally.add(score_batches(job, _batches(f, None, first, batch_rows), writer, bar))
                first += n
        partitions = 1
    else:
        tally, partitions = _score_dask(job, files, out, scheduler, bar, partition_rows)
    bar.close()
    seconds = time.perf_counter() - t0
    result: dict[str, Any] = {
        "requests": tally.requests, "scored": tally.requests - tally.invalid, "invalid": tally.invalid,
        "errors": tally.errors or [], "decisions": tally.decisions, "no_decision": tally.no_decision,
        "degraded": tally.degraded, "out": str(out), "partitions": partitions, "seconds": round(seconds, 3),
        "requests_per_s": round(tally.requests / seconds, 1) if seconds > 0 else None,
        "index_version": job.index.version, "model_version": job.model.version,
    }
    if tally.invalid and progress:
        first_err = tally.errors[0] if tally.errors else {}
        print(f"score: {tally.invalid:,} invalid requests left out; first: row {first_err.get('row')}: "
              f"{first_err.get('error', {}).get('message')}", file=sys.stderr, flush=True)
    if summary:
        result["summary"] = _summary(job.index, tally)
    return result


def _input_files(p: Path) -> list[Path]:
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.parquet") if f.is_file())
        if not files:
            raise TargetingError(f"no .parquet files under {p}", path="requests", code="not_found")
        return files
    if not p.is_file():
        raise TargetingError(f"no requests file at {p}", path="requests", code="not_found")
    try:
        pq.ParquetFile(p)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise TargetingError(f"{p} is not a readable Parquet file: {e}", path="requests") from None
    return [p]


def _summary(index: CampaignIndex, t: Tally) -> list[dict[str, Any]]:
    assert t.impressions is not None and t.clicks is not None and t.spend is not None
    rows: list[dict[str, Any]] = []
    for ci in np.flatnonzero(t.impressions).tolist():
        c = index.campaigns[ci]
        rows.append({
            "campaign_id": c.id, "advertiser": c.advertiser, "bid": {c.bid_type: c.bid},
            "impressions": int(t.impressions[ci]), "expected_clicks": round(float(t.clicks[ci]), 4),
            "spend": round(float(t.spend[ci]), 4),
        })
    rows.sort(key=lambda r: (-r["spend"], r["campaign_id"]))
    return rows


# ------------------------------------------------------------------ dask
def _score_dask(job: Job, files: list[Path], out: Path, scheduler: Any, bar: Progress,
                            batch_rows: int) -> tuple[Tally, int]:
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("part-*.parquet"):
            old.unlink()
        parts = _partitions(files, batch_rows)
        shipped = Job(job.taxonomy, job.index, job.model, _portable_store(job), _portable_profiles(job),
                      job.now, job.limit, job.floor_cpm)
        # distributed's own serialization walks the nested campaign objects slowly (tens of
        # seconds at 10k campaigns); plain pickle bytes go through in a blink
        import cloudpickle  # distributed's own dependency; handles lambdas (clocks) too

        payload = cloudpickle.dumps(shipped, protocol=pickle.HIGHEST_PROTOCOL)
        token = hashlib.sha256(payload).hexdigest()[:16]
        [remote] = client.scatter([payload], broadcast=True)
        batch_rows = min(batch_rows, BATCH_ROWS)
        futures = [
            client.submit(_score_partition, remote, token, str(f), part, first,
                          str(out / f"part-{k:05d}.parquet"), batch_rows, pure=False)
            for k, (f, part, first, _) in enumerate(parts)
        ]
        sizes = {fut.key: p[3] for fut, p in zip(futures, parts)}
        tally = Tally()
        for fut in as_completed(futures):
            tally.add(fut.result())
            bar.update(sizes[fut.key])
        return tally, len(parts)
    finally:
        if client is not scheduler:
            client.close()


def _partitions(files: list[Path], target_rows: int) -> list[tuple[Path, tuple[int, int, int], int, int]]:
    """(file, (row group, start, stop), first row, rows): slices of at most ``target_rows`` rows."""
    parts = []
    first = 0
    for f in files:
        meta = pq.ParquetFile(f).metadata
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            for start in range(0, n, target_rows):
                stop = min(n, start + target_rows)
                parts.append((f, (g, start, stop), first + start, stop - start))
            first += n
    return parts


_WORKER_JOBS: dict[str, Job] = {}  # token -> unpickled job, per worker process
_WORKER_LOCK = threading.Lock()


def _worker_job(payload: bytes, token: str) -> Job:
    """The job of ``payload``, unpickled once per worker process (its caches live on with it)."""
    with _WORKER_LOCK:
        job = _WORKER_JOBS.get(token)
        if job is None:
            job = pickle.loads(payload)
            if len(_WORKER_JOBS) >= 2:
                _WORKER_JOBS.clear()
            _WORKER_JOBS[token] = job
        return job


def _score_partition(payload: bytes, token: str, path: str, part: tuple[int, int, int], first_row: int, out: str,
                     batch_rows: int) -> Tally:
    job = _worker_job(payload, token)
    with pq.ParquetWriter(out, OUTPUT_SCHEMA, **WRITE_OPTIONS) as writer:
        return score_batches(job, _batches(Path(path), part, first_row, batch_rows), writer)


def _state_for_batch(store: StateStore | None, index: CampaignIndex) -> StateStore | None:
    """What a run reads state from: ``None`` when no campaign needs state, a
    :class:`StateSnapshot` (the state as of the start of the run, read in array
    operations) when the store can take one, else the store itself."""
    if store is None or not index.needs_store.any():
        return None
    return store.snapshot() if isinstance(store, Snapshots) else store


@runtime_checkable
class Snapshots(Protocol):
    """A store that can hand out a :class:`StateSnapshot` of its state (the in-memory one)."""

    def snapshot(self) -> StateSnapshot: ...


def _portable_store(job: Job) -> StateStore | None:
    """The run's state as workers can use it: ``None`` or a snapshot as they are, the
    store itself when it pickles, a re-opened store for one with a ``url``."""
    store = job.store
    if store is None or isinstance(store, StateSnapshot):
        return store
    try:
        pickle.dumps(store)
        return store
    except (TypeError, pickle.PicklingError, AttributeError):
        pass
    url = getattr(store, "url", None)
    if isinstance(url, str):
        return _Reopen(url)
    raise TargetingError(
        f"the state store ({type(store).__name__}) cannot be sent to Dask workers; "
        "use a redis:// store or score without --scheduler", path="store", code="unavailable",
    )


def _portable_profiles(job: Job) -> Any:
    """Profiles as workers can use them: a saved audience index is re-opened (memory-mapped)
    from its directory on each worker; other profile objects must pickle."""
    prof = job.profiles
    if prof is None:
        return None
    directory = getattr(prof, "directory", None)
    if directory is not None:
        return _ReopenProfiles(str(directory), job.taxonomy)
    try:
        pickle.dumps(prof)
    except (TypeError, pickle.PicklingError, AttributeError):
        raise TargetingError(
            f"the loaded profiles ({type(prof).__name__}) cannot be sent to Dask workers; "
            "use a saved audience index directory or score without --scheduler", path="profiles",
            code="unavailable") from None
    return prof


class _ReopenProfiles:
    """An audience index opened lazily from its saved directory on the worker that uses it."""

    def __init__(self, directory: str, taxonomy: Taxonomy) -> None:
        self.directory = directory
        self.taxonomy = taxonomy
        self._index: Any = None

    def lookup(self, user_id: str) -> Any:
        if self._index is None:
            from .audience import AudienceIndex

            self._index = AudienceIndex.load(self.directory, self.taxonomy)
        return self._index.lookup(user_id)

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory, "taxonomy": self.taxonomy}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.directory, self.taxonomy, self._index = state["directory"], state["taxonomy"], None


class _Reopen:
    """A store opened lazily from its URL on the worker that uses it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: Any = None

    def _get(self) -> Any:
        if self._store is None:
            from .stores import open_store

            self._store = open_store(self.url)
        return self._store

    def fetch(self, queries: Any) -> Any:
        return self._get().fetch(queries)

    def add_events(self, events: Any, ttl: int) -> None:
        self._get().add_events(events, ttl)

    def add_counters(self, counters: Any) -> None:
        self._get().add_counters(counters)

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.url = state["url"]
        self._store = None


__all__ = ["BATCH_ROWS", "OUTPUT_SCHEMA", "Job", "Tally", "score", "score_batches"]
