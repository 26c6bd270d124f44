"""Background audience exports: ``queued → running → done | failed``, with progress.

The spec is validated and the minimum audience size checked when the job is
started, so a bad request is a 4xx at once rather than a failed job later. Jobs run
one at a time (an export already uses the machine's cores and disk); each writes
``<directory>/<job id>.<ext>``. A job is visible only to the advertiser who started
it (``get(job_id, advertiser=...)``); operators (``advertiser=None``) see all.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import NotFound, TargetingError, Unavailable
from .export import FORMATS

log = logging.getLogger("targeting.audience")
MIN_ADVERTISER_EXPORT = 1000  # advertiser exports below this size are refused


class ExportJobs:
    def __init__(self, directory: str | Path | None = None, *, min_advertiser_size: int = MIN_ADVERTISER_EXPORT,
                 scheduler: Any = None) -> None:
        self.directory = Path(directory) if directory is not None else Path(
            tempfile.mkdtemp(prefix="targeting-exports-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.min_advertiser_size = min_advertiser_size
        self.scheduler = scheduler
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export")

    def start(self, engine: Any, spec: Any, advertiser: str | None = None, fmt: str = "parquet",
              hash_salt: str | None = None) -> dict[str, Any]:
        """Validate and queue an export; returns the job (state ``queued``)."""
        if fmt not in FORMATS:
            raise TargetingError(f"format is parquet or csv, not {fmt!r}", path="format", code="invalid")
        if hash_salt is not None and not isinstance(hash_salt, str):
            raise TargetingError("hash_salt is a string", path="hash_salt", code="invalid")
        parsed = engine.parse_spec(spec, advertiser)
        min_size = self.min_advertiser_size if advertiser is not None else 0
        if min_size:
            users = engine.reach(parsed, advertiser=advertiser, audience_key=False)["users"]
            if users < min_size:
                raise TargetingError(f"the audience is too small to export (advertiser exports need at least "
                                     f"{min_size} users)", path="targeting", code="audience_too_small")
        job_id = uuid.uuid4().hex[:16]
        ext = "parquet" if fmt == "parquet" and self.scheduler is None else (
            "parquet.d" if fmt == "parquet" else "csv" if self.scheduler is None else "csv.d")
        job = {
            "id": job_id, "state": "queued", "advertiser": advertiser, "format": fmt,
            "hashed": hash_salt is not None, "progress": 0.0, "rows": 0, "total": None,
            "path": str(self.directory / f"{job_id}.{ext}"), "error": None,
            "created": time.time(), "started": None, "finished": None,
        }
        with self._lock:
            self._jobs[job_id] = job
        self._pool.submit(self._run, job_id, engine, parsed, advertiser, fmt, hash_salt, min_size)
        return dict(job)

    def _update(self, job_id: str, **fields: Any) -> None:
        with self._lock:
            self._jobs[job_id].update(fields)

    def _run(self, job_id: str, engine: Any, spec: Any, advertiser: str | None, fmt: str,
             hash_salt: str | None, min_size: int) -> None:
        self._update(job_id, state="running", started=time.time())
        path = self._jobs[job_id]["path"]

        def progress(done: int, total: int) -> None:
            self._update(job_id, rows=done, total=total, progress=round(done / total, 4) if total else 1.0)

        try:
            rows = engine.export(spec, path, advertiser, fmt=fmt, hash_salt=hash_salt, min_size=min_size,
                                 scheduler=self.scheduler, on_progress=progress)
        except TargetingError as e:
            self._update(job_id, state="failed", error=e.to_dict(), finished=time.time())
        except Exception as e:  # a job must end in a state, whatever went wrong
            log.exception("export job %s failed", job_id)
            self._update(job_id, state="failed", finished=time.time(),
                         error={"code": "internal", "message": f"{type(e).__name__}: {e}"})
        else:
            self._update(job_id, state="done", rows=rows, progress=1.0, finished=time.time())

    def get(self, job_id: str, advertiser: str | None = None) -> dict[str, Any]:
        """The job's current state (a copy). Unknown, or another advertiser's: NotFound."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or (advertiser is not None and job["advertiser"] != advertiser):
                raise NotFound(f"no export job {job_id!r}", path="job")
            return dict(job)

    def path(self, job_id: str, advertiser: str | None = None) -> Path:
        """The finished file (or directory, with a scheduler); Unavailable until done."""
        job = self.get(job_id, advertiser)
        if job["state"] != "done":
            raise Unavailable(f"export job {job_id} is {job['state']}", path="job")
        return Path(job["path"])

    def wait(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Block until the job is done or failed (tests and the CLI)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["state"] in ("done", "failed") or time.monotonic() > deadline:
                return job
            time.sleep(0.01)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
