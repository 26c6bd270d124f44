"""The delivery log: impressions and clicks appended as Parquet, off the request path.

Layout under the log directory (``--log-dir``, default ``var/log/``)::

    impressions/date=2026-12-03/part-20261203T101500-4711-0001.parquet
    clicks/date=2026-12-03/part-….parquet

``date`` is the UTC date of the row's ``ts``. A file is written as
``….parquet.inprogress`` and renamed to ``.parquet`` when it is rotated: every
``rotate_seconds`` (default 60) or once it passes ``rotate_bytes`` (default
64 MiB), and on :meth:`LogWriter.close`. Readers only read ``*.parquet``, so
they never see a half-written file.

Requests hand rows to :meth:`LogWriter.append`, which only puts them on a
bounded queue (``queue_rows``, default 200,000 rows); one writer thread takes
everything queued every ``flush_seconds`` (default 1 s) and writes it as one
row group per (kind, date). **When the queue is full, the new rows are dropped
and counted** (``dropped``): the log never slows down or fails a decision; the
state says ``degraded`` and ``/metrics`` shows the loss.

A directory that cannot be written (read-only, full) makes the writer drop the
batch it holds, count it, mark the log ``degraded`` with the error, and try
again at the next flush; decisions go on.

Loss window: after ``kill -9`` the rows lost are those queued (at most
``flush_seconds`` old) plus those in the open ``.inprogress`` files (at most
``rotate_seconds`` old): every row older than ``rotate_seconds +
flush_seconds`` is in a finished file. On start, a writer renames
``.inprogress`` files left by a dead process to ``.inprogress.broken`` (a
Parquet file without its footer cannot be read).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger("targeting.delivery")

_ATTRS = [
    pa.field("province", pa.int32()), pa.field("city", pa.int32()), pa.field("gender", pa.string()),
    pa.field("age", pa.int16()), pa.field("tags", pa.list_(pa.string())), pa.field("scene", pa.string()),
    pa.field("slot", pa.string()), pa.field("hour", pa.int8()), pa.field("weekday", pa.int8()),
]
#: Row layout of each kind; rows handed to :meth:`LogWriter.append` are tuples in this order,
#: with ``ts`` (and ``impression_ts``) as epoch seconds.
SCHEMAS: dict[str, pa.Schema] = {
    "impressions": pa.schema([
        pa.field("impression_id", pa.string()), pa.field("ts", pa.timestamp("ms", tz="UTC")),
        pa.field("user_id", pa.string()), pa.field("campaign_id", pa.string()),
        pa.field("advertiser", pa.string()), pa.field("price", pa.float64()), pa.field("cost", pa.float64()),
        *_ATTRS,
    ]),
    "clicks": pa.schema([
        pa.field("impression_id", pa.string()), pa.field("ts", pa.timestamp("ms", tz="UTC")),
        pa.field("impression_ts", pa.timestamp("ms", tz="UTC")),
        pa.field("user_id", pa.string()), pa.field("campaign_id", pa.string()),
        pa.field("advertiser", pa.string()), *_ATTRS,
    ]),
}
KINDS = tuple(SCHEMAS)
_TS_COLUMNS = {"ts", "impression_ts"}


def table_of(kind: str, rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    """Rows (tuples in ``SCHEMAS[kind]`` order) → an Arrow table: one ``pa.array`` per column."""
    schema = SCHEMAS[kind]
    columns = list(zip(*rows)) if rows else [()] * len(schema)
    arrays = []
    for field, col in zip(schema, columns):
        if field.name in _TS_COLUMNS:
            arrays.append(pa.array([round(t * 1000) for t in col], pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(col, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def utc_date(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


class _OpenFile:
    __slots__ = ("opened", "path", "writer")

    def __init__(self, path: Path, writer: pq.ParquetWriter, opened: float) -> None:
        self.path, self.writer, self.opened = path, writer, opened


class LogWriter:
    """Append rows from any thread; one background thread writes them. See the module doc.

    ``clock`` (epoch seconds) times rotation; rows carry their own ``ts``.
    """

    def __init__(self, directory: str | Path, *, rotate_seconds: float = 60.0, rotate_bytes: int = 64 << 20,
                 queue_rows: int = 200_000, flush_seconds: float = 1.0,
                 clock: Callable[[], float] = time.time, compression: str = "zstd") -> None:
        self.directory = Path(directory)
        self.rotate_seconds, self.rotate_bytes = rotate_seconds, rotate_bytes
        self.queue_rows, self.flush_seconds = queue_rows, flush_seconds
        self.compression = compression
        self._clock = clock
        self._queue: deque[tuple[str, Sequence[tuple[Any, ...]]]] = deque()
        self._queued = 0
        self._cv = threading.Condition()
        self._open: dict[tuple[str, str], _OpenFile] = {}
        self._seq = itertools.count(1)
        self._closing = False
        self._flush_asked = 0
        self._flushed = 0
        self.written = {k: 0 for k in KINDS}
        self.dropped = {"queue_full": 0, "write_error": 0}
        self.files = 0
        self.error: str | None = None  # the last write error, None once a write succeeds again
        self.last_write = 0.0
        self._recover()
        self._thread = threading.Thread(target=self._run, name="targeting-delivery-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ producers
    def append(self, kind: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """Queue ``rows`` of ``kind``; never blocks on I/O. Returns how many were queued
        (0 when the queue was full or the writer is closed: those rows are counted as dropped)."""
        n = len(rows)
        if not n:
            return 0
        with self._cv:
            if self._closing or self._queued + n > self.queue_rows:
                self.dropped["queue_full"] += n
                return 0
            self._queue.append((kind, rows))
            self._queued += n
        return n

    @property
    def queued(self) -> int:
        return self._queued

    def status(self) -> dict[str, Any]:
        """``state``: ``ok``, or ``degraded`` while the last write failed or rows are being dropped."""
        behind = self._queued > self.queue_rows // 2
        state = "degraded" if self.error or behind or not self._thread.is_alive() else "ok"
        out: dict[str, Any] = {"state": state, "queued": self._queued, "written": dict(self.written),
                               "dropped": dict(self.dropped), "files": self.files}
        if self.error:
            out["error"] = self.error
        return out

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything queued so far and rotate the open files into finished ones.
        True when done within ``timeout``."""
        with self._cv:
            self._flush_asked += 1
            want = self._flush_asked
            self._cv.notify_all()
            return self._cv.wait_for(lambda: self._flushed >= want or not self._thread.is_alive(), timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush, finish the open files and stop the thread (idempotent)."""
        with self._cv:
            if self._closing:
                return
            self._closing = True
            self._cv.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("delivery log: writer did not finish within %.0f s; %d rows may be lost",
                      timeout, self._queued)

    # ------------------------------------------------------------ the thread
    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closing or self._flush_asked > self._flushed,
                                  self.flush_seconds)
                closing, asked = self._closing, self._flush_asked
                batch = list(self._queue)
                self._queue.clear()
                self._queued = 0
            self._write(batch)
            self._rotate(everything=closing or asked > self._flushed)
            with self._cv:
                self._flushed = asked
                self._cv.notify_all()
            if closing:
                return

    def _write(self, batch: list[tuple[str, Sequence[tuple[Any, ...]]]]) -> None:
        if not batch:
            return
        by_kind: dict[str, list[tuple[Any, ...]]] = {}
        for kind, rows in batch:
            by_kind.setdefault(kind, []).extend(rows)
        for kind, rows in by_kind.items():
            try:
                table = table_of(kind, rows)
                days = pc.strftime(table.column("ts"), format="%Y-%m-%d")
                unique = pc.unique(days).to_pylist()
                for day in unique:
                    part = table.filter(pc.equal(days, day)) if len(unique) > 1 else table
                    self._file(kind, day).writer.write_table(part)
                self.written[kind] += len(rows)
                self.error = None
                self.last_write = self._clock()
            except (OSError, pa.ArrowException) as e:
                self.dropped["write_error"] += len(rows)
                if self.error is None:
                    log.error("delivery log: cannot write %d %s to %s (%s); the rows are dropped and "
                              "the service keeps deciding", len(rows), kind, self.directory, e)
                self.error = f"{type(e).__name__}: {e}"
                self._abandon(kind)
            except Exception as e:  # a bad row must not kill the writer
                self.dropped["write_error"] += len(rows)
                self.error = f"{type(e).__name__}: {e}"
                log.exception("delivery log: %d %s rows could not be encoded; dropped", len(rows), kind)

    def _file(self, kind: str, day: str) -> _OpenFile:
        f = self._open.get((kind, day))
        if f is None:
            d = self.directory / kind / f"date={day}"
            d.mkdir(parents=True, exist_ok=True)
            now = self._clock()
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
            path = d / f"part-{stamp}-{os.getpid()}-{next(self._seq):04d}.parquet.inprogress"
            f = _OpenFile(path, pq.ParquetWriter(path, SCHEMAS[kind], compression=self.compression), now)
            self._open[(kind, day)] = f
        return f

    def _rotate(self, everything: bool) -> None:
        now = self._clock()
        for key, f in list(self._open.items()):
            try:
                due = everything or now - f.opened >= self.rotate_seconds or f.path.stat().st_size >= self.rotate_bytes
            except OSError:
                due = True
            if not due:
                continue
            del self._open[key]
            try:
                f.writer.close()
                os.replace(f.path, f.path.with_suffix(""))  # drop ".inprogress"
                self.files += 1
            except OSError as e:
                self.error = f"{type(e).__name__}: {e}"
                log.error("delivery log: cannot finish %s: %s", f.path, e)

    def _abandon(self, kind: str) -> None:
        """After a failed write the open files of ``kind`` may be torn: finish what can be."""
        for key in [k for k in self._open if k[0] == kind]:
            f = self._open.pop(key)
            try:
                f.writer.close()
                os.replace(f.path, f.path.with_suffix(""))
                self.files += 1
            except Exception as e:  # noqa: BLE001 - the disk is failing; the file stays .inprogress
                log.debug("delivery log: cannot finish %s after a failed write: %s", f.path, e)

    def _recover(self) -> None:
        """Rename ``.inprogress`` files of dead writers so nobody mistakes them for live ones."""
        if not self.directory.is_dir():
            return
        for p in self.directory.glob("*/date=*/*.parquet.inprogress"):
            pid = _pid_of(p.name)
            if pid is not None and pid != os.getpid() and _alive(pid):
                continue  # another live worker's open file
            try:
                os.replace(p, p.with_name(p.name + ".broken"))
                log.warning("delivery log: %s was left open by a process that died (kill -9?): "
                            "its rows are lost; renamed to .broken", p)
            except OSError:
                pass


def _pid_of(name: str) -> int | None:
    parts = name.split("-")
    try:
        return int(parts[2])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def utc_day_range(start: dt.date, end: dt.date) -> list[str]:
    """``YYYY-MM-DD`` of every day from ``start`` to ``end`` inclusive."""
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
