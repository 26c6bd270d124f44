"""Test doubles for the audience side, implementing the agreed interfaces
(``AudienceIndex.reach/export/lookup``, ``ExportJobs.start/get/path``), so the
HTTP translation and the tenant checks can be tested on their own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from targeting.errors import NotFound


class RecordingAudience:
    """Answers every reach with fixed exact counts and remembers the calls."""

    def __init__(self, users: int = 1234) -> None:
        self.users = users
        self.calls: list[dict[str, Any]] = []

    def lookup(self, user_id: str) -> dict[str, Any] | None:
        return None

    def reach(self, spec: Any, *, breakdown: list[str], advertiser: str | None, store: Any, now: float,
              **options: Any) -> dict[str, Any]:
        self.calls.append({"spec": spec, "breakdown": breakdown, "advertiser": advertiser})
        return {"users": self.users, "below_threshold": False, "est_daily_impressions": 3.5 * self.users,
                "breakdown": {d: {"x": self.users} for d in breakdown}, "population": 200_000}


class RecordingJobs:
    """Finishes every export at once by writing a small file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs: dict[str, dict[str, Any]] = {}
        self.started: list[tuple[Any, str | None, str, str | None]] = []

    def start(self, engine: Any, spec: Any, advertiser: str | None, fmt: str, hash_salt: str | None,
              **options: Any) -> dict:
        job_id = f"job-{len(self.jobs) + 1}"
        self.options = options  # first_party_only=True for advertiser keys
        self.started.append((spec, advertiser, fmt, hash_salt))
        (self.root / f"{job_id}.{fmt}").write_text("user_id\nu1\nu2\n")
        self.jobs[job_id] = {"id": job_id, "state": "done", "advertiser": advertiser, "format": fmt, "rows": 2,
                             "path": str(self.root / f"{job_id}.{fmt}")}
        return dict(self.jobs[job_id])

    def get(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise NotFound(f"no export job {job_id!r}", path="job")
        return dict(self.jobs[job_id])

    def path(self, job_id: str) -> Path:
        job = self.get(job_id)
        return self.root / f"{job_id}.{job['format']}"
