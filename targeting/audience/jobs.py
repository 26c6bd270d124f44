"""Background audience exports: ``queued → running → done | failed``, then ``expired``.

The spec is parsed and the export policy checked when the job is started, so a bad
or forbidden request is a 4xx at once rather than a failed job later. Jobs run one
at a time (an export already uses the machine's cores and disk); each writes
``<directory>/<job id>.<ext>``. A job is visible only to the advertiser it was
started for (``get(job_id, advertiser=...)``); operators (``advertiser=None``) see all.

**Policy** (:mod:`.privacy`): with ``first_party_only`` (every advertiser key) the spec
must be made of the advertiser's own retargeting rules, and the file is written from
its events alone (:func:`.export.export_first_party`); platform-derived audiences are
exported by operators only.

**Bounded storage** (:class:`ExportLimits`): per owner (the advertiser, or ``""`` for
operator jobs without one) at most ``max_concurrent`` queued or running jobs and
``max_daily`` jobs started in any 24 hours (429 ``quota_exceeded``); files expire
``ttl_s`` after they are finished and a sweeper thread deletes them (the job then
says ``expired``; a download answers 410), along with files of earlier runs older
than the TTL and abandoned temporary files. Less than ``min_free_bytes`` free on the
disk, or ``max_bytes`` of live files, refuses new jobs (507 ``disk_full``); a disk
that fills during a job fails it with ``disk_full`` and leaves no partial file.
Quotas are per process: ``serve --workers N`` allows N times as many.
"""

from __future__ import annotations

import errno
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NotFound, TargetingError, Unavailable
from .export import FORMATS, export_first_party
from .privacy import first_party_problem

log = logging.getLogger("targeting.audience")
DAY = 86400.0
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class QuotaExceeded(TargetingError):
    status = 429

    def __init__(self, message: str) -> None:
        super().__init__(message, path=None, code="quota_exceeded")


class StorageFull(TargetingError):
    status = 507

    def __init__(self, message: str) -> None:
        super().__init__(message, path=None, code="disk_full")


class Gone(TargetingError):
    status = 410

    def __init__(self, message: str) -> None:
        super().__init__(message, path="job", code="expired")


class PlatformData(TargetingError):
    status = 403

    def __init__(self, message: str) -> None:
        super().__init__(message, path="targeting", code="platform_data")


@dataclass(frozen=True)
class ExportLimits:
    max_concurrent: int = 2  # queued + running jobs per owner
    max_daily: int = 20  # jobs started per owner in any 24 hours
    ttl_s: float = DAY  # a finished file is deleted this long after it was written
    min_free_bytes: int = 256 << 20  # refuse new jobs when the disk has less free
    max_bytes: int | None = 20 << 30  # all live export files together
    sweep_every_s: float = 60.0


class ExportJobs:
    def __init__(self, directory: str | Path | None = None, *, limits: ExportLimits | None = None,
                 scheduler: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory) if directory is not None else Path(
            tempfile.mkdtemp(prefix="targeting-exports-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.limits = limits or ExportLimits()
        self.scheduler = scheduler
        self.clock = clock
        self.stats: Counter[str] = Counter()  # started, done, failed, disk_full, refused_*, expired
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export")
        self._stop = threading.Event()
        self.sweep()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="export-sweeper", daemon=True)
        self._sweeper.start()

    # ------------------------------------------------------------ starting
    def start(self, engine: Any, spec: Any, advertiser: str | None = None, fmt: str = "parquet",
              hash_salt: str | None = None, *, first_party_only: bool = False) -> dict[str, Any]:
        """Validate and queue an export; returns the job (state ``queued``).

        ``first_party_only``: the caller is an advertiser (see the module docstring);
        then ``advertiser`` is required.
        """
        if fmt not in FORMATS:
            raise TargetingError(f"format is parquet or csv, not {fmt!r}", path="format", code="invalid")
        if hash_salt is not None and not isinstance(hash_salt, str):
            raise TargetingError("hash_salt is a string", path="hash_salt", code="invalid")
        parsed = engine.parse_spec(spec, advertiser)
        first_party = first_party_problem(parsed) is None and advertiser is not None
        if first_party_only:
            why = first_party_problem(parsed)
            if why is not None:
                self.stats["refused_platform_data"] += 1
                raise PlatformData(why)
            if advertiser is None:
                raise TargetingError("an advertiser export names its advertiser", path="advertiser")
        elif getattr(engine, "audience", None) is None and not first_party:
            raise Unavailable("no profiles loaded: start with --profiles PATH to export audiences",
                              path="profiles")
        owner = advertiser or ""
        now = self.clock()
        self.sweep(now)
        self._check_storage()
        job_id = uuid.uuid4().hex[:16]
        ext = "parquet" if fmt == "parquet" and (self.scheduler is None or first_party) else (
            "parquet.d" if fmt == "parquet" else "csv" if self.scheduler is None or first_party else "csv.d")
        job = {
            "id": job_id, "state": "queued", "advertiser": advertiser, "format": fmt,
            "hashed": hash_salt is not None, "first_party": first_party, "progress": 0.0, "rows": 0,
            "total": None, "path": str(self.directory / f"{job_id}.{ext}"), "error": None,
            "created": now, "started": None, "finished": None, "expires": None, "bytes": 0,
        }
        with self._lock:  # the quota check and the insert together: no race between two starts
            mine = [j for j in self._jobs.values() if (j["advertiser"] or "") == owner]
            busy = sum(j["state"] in ("queued", "running") for j in mine)
            today = sum(j["created"] > now - DAY for j in mine)
            if busy >= self.limits.max_concurrent:
                self.stats["refused_concurrent"] += 1
                raise QuotaExceeded(f"{busy} export jobs are already queued or running for this advertiser "
                                    f"(at most {self.limits.max_concurrent}); wait for one to finish")
            if today >= self.limits.max_daily:
                self.stats["refused_daily"] += 1
                raise QuotaExceeded(f"{today} export jobs were started for this advertiser in the last 24 "
                                    f"hours (at most {self.limits.max_daily}); try again later")
            self._jobs[job_id] = job
        self.stats["started"] += 1
        self._pool.submit(self._run, job_id, engine, parsed, advertiser, fmt, hash_salt, first_party)
        return dict(job)

    def _check_storage(self) -> None:
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError:
            free = None
        if free is not None and free < self.limits.min_free_bytes:
            self.stats["refused_storage"] += 1
            raise StorageFull(f"the export disk has {free >> 20} MB free (needs {self.limits.min_free_bytes >> 20} "
                              f"MB); try again when older exports have expired")
        if self.limits.max_bytes is not None and self.stored_bytes() >= self.limits.max_bytes:
            self.stats["refused_storage"] += 1
            raise StorageFull(f"export files take {self.stored_bytes() >> 20} MB, the limit; try again when "
                              f"older exports have expired")

    def stored_bytes(self) -> int:
        with self._lock:
            return sum(j["bytes"] for j in self._jobs.values() if j["state"] == "done")

    # ------------------------------------------------------------- running
    def _update(self, job_id: str, **fields: Any) -> None:
        with self._lock:
            self._jobs[job_id].update(fields)

    def _run(self, job_id: str, engine: Any, spec: Any, advertiser: str | None, fmt: str,
             hash_salt: str | None, first_party: bool) -> None:
        self._update(job_id, state="running", started=self.clock())
        path = self._jobs[job_id]["path"]

        def progress(done: int, total: int) -> None:
            self._update(job_id, rows=done, total=total, progress=round(done / total, 4) if total else 1.0)

        try:
            if first_party:
                assert advertiser is not None
                rows = export_first_party(spec, engine.taxonomy, engine.store, advertiser, path,
                                          now=engine.clock(), fmt=fmt, hash_salt=hash_salt, on_progress=progress)
            else:
                rows = engine.export(spec, path, advertiser, fmt=fmt, hash_salt=hash_salt,
                                     scheduler=self.scheduler, on_progress=progress)
        except TargetingError as e:
            self._fail(job_id, e.to_dict())
        except OSError as e:
            if e.errno in DISK_FULL:
                self.stats["disk_full"] += 1
                log.error("export job %s: the export disk is full (%s)", job_id, self.directory)
                self._fail(job_id, {"code": "disk_full", "message": "the export disk filled up; nothing was "
                                    "kept. Try again when older exports have expired"})
            else:
                log.exception("export job %s failed", job_id)
                self._fail(job_id, {"code": "internal", "message": f"{type(e).__name__}: {e}"})
        except Exception as e:  # a job must end in a state, whatever went wrong
            log.exception("export job %s failed", job_id)
            self._fail(job_id, {"code": "internal", "message": f"{type(e).__name__}: {e}"})
        else:
            done = self.clock()
            self.stats["done"] += 1
            self._update(job_id, state="done", rows=rows, total=rows, progress=1.0, finished=done,
                         expires=done + self.limits.ttl_s, bytes=_size(Path(path)))

    def _fail(self, job_id: str, error: dict[str, Any]) -> None:
        self.stats["failed"] += 1
        self._update(job_id, state="failed", error=error, finished=self.clock())

    # ------------------------------------------------------------ expiring
    def sweep(self, now: float | None = None) -> int:
        """Delete expired files (their jobs become ``expired``), files of earlier runs
        older than the TTL and temporary files older than an hour; returns files deleted."""
        now = self.clock() if now is None else now
        with self._lock:
            expired = [j for j in self._jobs.values() if j["state"] == "done" and j["expires"] <= now]
            for j in expired:
                j.update(state="expired", bytes=0)
            known = {Path(j["path"]).name for j in self._jobs.values() if j["state"] != "expired"}
        deleted = 0
        for j in expired:
            deleted += _remove(Path(j["path"]))
        self.stats["expired"] += len(expired)
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            entries = []
        for p in entries:
            tmp = p.name.startswith(".") and ".tmp-" in p.name
            if p.name in known and not tmp:
                continue
            try:
                age = now - p.stat().st_mtime
            except OSError:
                continue
            if age > (3600.0 if tmp else self.limits.ttl_s):
                deleted += _remove(p)
        return deleted

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.limits.sweep_every_s):
            try:
                self.sweep()
            except Exception:  # never let the sweeper die
                log.exception("export sweep failed")

    # ------------------------------------------------------------- reading
    def get(self, job_id: str, advertiser: str | None = None) -> dict[str, Any]:
        """The job's current state (a copy). Unknown, or another advertiser's: NotFound."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or (advertiser is not None and job["advertiser"] != advertiser):
                raise NotFound(f"no export job {job_id!r}", path="job")
            return dict(job)

    def path(self, job_id: str, advertiser: str | None = None) -> Path:
        """The finished file (or directory, with a scheduler); Unavailable until done, Gone once expired."""
        job = self.get(job_id, advertiser)
        if job["state"] == "expired":
            raise Gone(f"export job {job_id} expired and its file was deleted; start a new export")
        if job["state"] != "done":
            raise Unavailable(f"export job {job_id} is {job['state']}", path="job")
        return Path(job["path"])

    def wait(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Block until the job is done or failed (tests and the CLI)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["state"] in ("done", "failed", "expired") or time.monotonic() > deadline:
                return job
            time.sleep(0.01)

    def metrics(self) -> dict[str, Any]:
        """Counters and gauges for /metrics: ``stats`` plus ``stored_bytes`` and ``running``."""
        with self._lock:
            running = sum(j["state"] in ("queued", "running") for j in self._jobs.values())
        return {**self.stats, "stored_bytes": self.stored_bytes(), "active": running}

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True)


def _size(p: Path) -> int:
    try:
        if p.is_dir():
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return p.stat().st_size
    except OSError:
        return 0


def _remove(p: Path) -> int:
    try:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
        return 1
    except FileNotFoundError:
        return 0
    except OSError as e:
        log.warning("could not delete expired export %s: %s", p, e)
        return 0
