"""Issue 19, the export side: advertisers download only first-party audiences, written
from their own events; export storage is bounded (quotas, TTL, disk full)."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from targeting.audience.export import export_first_party, first_party_users
from targeting.audience.jobs import (
    ExportJobs,
    ExportLimits,
    Gone,
    PlatformData,
    QuotaExceeded,
    StorageFull,
)
from targeting.audience.privacy import first_party_problem
from targeting.errors import TargetingError
from targeting.spec import parse_spec
from targeting.stores import Event, MemoryStore

NOW = 1_800_000_000.0
DAY = 86400.0
VISIT7 = {"event": "visit", "within_days": 7}
CART30 = {"event": "add_to_cart", "within_days": 30}
BUY7 = {"event": "purchase", "within_days": 7}


@pytest.mark.parametrize("raw,problem", [
    ({"retargeting": {"any": [VISIT7]}}, None),
    ({"retargeting": {"any": [VISIT7], "none": [BUY7]}}, None),
    ({"retargeting": {"any": [VISIT7]}, "any_of": [{"retargeting": {"none": [BUY7]}}, {}]}, None),
    ({"any_of": [{"retargeting": {"any": [VISIT7]}}, {"retargeting": {"any": [CART30]}}]}, None),
    ({}, "retargeting 'any'"),  # everyone: the platform's users
    ({"retargeting": {"none": [BUY7]}}, "retargeting 'any'"),  # everyone but buyers
    ({"any_of": [{"retargeting": {"any": [VISIT7]}}, {"retargeting": {"none": [BUY7]}}]}, "retargeting 'any'"),
    ({"gender": "female"}, "gender is platform data"),
    ({"retargeting": {"any": [VISIT7]}, "geo": {"exclude": [460300]}}, "geo is platform data"),
    ({"retargeting": {"any": [VISIT7]}, "any_of": [{"age": [[20, 30]]}]}, "age is platform data"),
    ({"retargeting": {"any": [VISIT7]}, "tags": {"none": ["it_fan"]}}, "tags is platform data"),
    ({"retargeting": {"any": [VISIT7]}, "time": {"hours": [9]}}, "time constrains impressions"),
    ({"retargeting": {"any": [VISIT7]}, "scene": {"include": ["home"]}}, "scene constrains impressions"),
], ids=["any", "any-none", "any-beside-any-of", "any-of-of-any", "everyone", "none-only", "one-alt-none-only",
        "gender", "geo-exclude", "nested-age", "tags-none", "time", "scene"])
def test_what_an_advertiser_may_download(tx: Any, raw: dict[str, Any], problem: str | None) -> None:
    why = first_party_problem(parse_spec(raw, tx, advertiser="acme"))
    assert (why is None) if problem is None else (why is not None and problem in why), why


def _events() -> list[Event]:
    """acme's users, by what they did and when; bobco's events must never count."""
    return [
        Event("v-recent", "acme", "visit", NOW - 1 * DAY),
        Event("v-old", "acme", "visit", NOW - 20 * DAY),
        Event("cart", "acme", "add_to_cart", NOW - 10 * DAY),
        Event("v-buyer", "acme", "visit", NOW - 2 * DAY),
        Event("v-buyer", "acme", "purchase", NOW - 1 * DAY),
        Event("not-a-platform-user", "acme", "visit", NOW - 3 * DAY),
        Event("bobco-visitor", "bobco", "visit", NOW - 1 * DAY),
    ]


@pytest.mark.parametrize("raw,want", [
    ({"retargeting": {"any": [VISIT7]}}, {"v-recent", "v-buyer", "not-a-platform-user"}),
    ({"retargeting": {"any": [VISIT7], "none": [BUY7]}}, {"v-recent", "not-a-platform-user"}),
    ({"retargeting": {"any": [VISIT7, CART30]}}, {"v-recent", "v-buyer", "not-a-platform-user", "cart"}),
    ({"any_of": [{"retargeting": {"any": [CART30]}}, {"retargeting": {"any": [{"event": "visit",
                                                                                 "within_days": 30}]}}]},
     {"v-recent", "v-old", "v-buyer", "not-a-platform-user", "cart"}),
    ({"retargeting": {"any": [VISIT7]}, "any_of": [{"retargeting": {"any": [BUY7]}}]}, {"v-buyer"}),
], ids=["visit-7d", "minus-buyers", "visit-or-cart", "any-of", "visit-and-buy"])
def test_first_party_audiences_come_from_the_advertisers_events(tx: Any, raw: dict[str, Any],
                                                                want: set[str], tmp_path: Path) -> None:
    store = MemoryStore(clock=lambda: NOW)
    store.add_events(_events(), ttl=400 * 86400)
    spec = parse_spec(raw, tx, advertiser="acme")
    assert set(first_party_users(spec, tx, store, "acme", NOW)) == want
    n = export_first_party(spec, tx, store, "acme", tmp_path / "a.parquet", now=NOW)
    ids = pq.read_table(tmp_path / "a.parquet").column("user_id").to_pylist()
    assert n == len(ids) and ids == sorted(want)  # whether or not the platform knows the user


class FakeEngine:
    """Enough of an Engine for ExportJobs: a real taxonomy and store, an export that can be held."""

    def __init__(self, tx: Any, store: Any = None, fail: BaseException | None = None) -> None:
        self.taxonomy = tx
        self.store = store or MemoryStore(clock=lambda: NOW)
        self.audience = object()
        self.release = threading.Event()
        self.release.set()
        self.fail = fail

    def clock(self) -> float:
        return NOW

    def parse_spec(self, raw: Any, advertiser: str | None = None) -> Any:
        return parse_spec(raw, self.taxonomy, advertiser=advertiser, path="targeting")

    def export(self, spec: Any, path: str, advertiser: str | None = None, **options: Any) -> int:
        self.release.wait(10)
        if self.fail is not None:
            raise self.fail
        Path(path).write_bytes(b"x" * 1000)
        return 7


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_jobs(tmp_path: Path, clock: Clock, **limits: Any) -> ExportJobs:
    return ExportJobs(tmp_path / "exports", limits=ExportLimits(min_free_bytes=0, **limits), clock=clock)


def test_concurrent_and_daily_quotas(tx: Any, tmp_path: Path, clock: Clock) -> None:
    jobs = make_jobs(tmp_path, clock, max_concurrent=2, max_daily=3)
    eng = FakeEngine(tx)
    eng.release.clear()  # jobs stay queued or running
    try:
        a = jobs.start(eng, {}, "acme")
        jobs.start(eng, {}, "acme")
        with pytest.raises(QuotaExceeded) as e:
            jobs.start(eng, {}, "acme")
        assert e.value.status == 429 and "at most 2" in e.value.message
        jobs.start(eng, {}, "bobco")  # another advertiser has its own quota
        eng.release.set()
        assert jobs.wait(a["id"])["state"] == "done"
        for j in list(jobs._jobs):
            jobs.wait(j)
        jobs.start(eng, {}, "acme")  # the third today
        with pytest.raises(QuotaExceeded) as e:
            jobs.start(eng, {}, "acme")
        assert "last 24 hours" in e.value.message
        clock.now += DAY + 1  # a day later the window has moved on
        jobs.start(eng, {}, "acme")
        assert jobs.stats["refused_concurrent"] == 1 and jobs.stats["refused_daily"] == 1
    finally:
        eng.release.set()
        jobs.close()


def test_files_expire_and_are_deleted(tx: Any, tmp_path: Path, clock: Clock) -> None:
    jobs = make_jobs(tmp_path, clock, ttl_s=3600)
    try:
        job = jobs.wait(jobs.start(FakeEngine(tx), {}, "acme")["id"])
        path = jobs.path(job["id"])
        assert path.exists() and job["expires"] == NOW + 3600 and jobs.metrics()["stored_bytes"] == 1000
        clock.now += 3599
        assert jobs.sweep() == 0 and path.exists()
        clock.now += 2
        assert jobs.sweep() == 1 and not path.exists()
        assert jobs.get(job["id"])["state"] == "expired"
        with pytest.raises(Gone) as e:
            jobs.path(job["id"])
        assert e.value.status == 410
        assert jobs.metrics()["expired"] == 1 and jobs.metrics()["stored_bytes"] == 0
    finally:
        jobs.close()


def test_leftovers_of_earlier_runs_are_cleaned_up(tx: Any, tmp_path: Path, clock: Clock) -> None:
    d = tmp_path / "exports"
    d.mkdir()
    old, fresh, tmp = d / "0123abcd.parquet", d / "4567cdef.parquet", d / ".x.parquet.tmp-1-2"
    for p in (old, fresh, tmp):
        p.write_bytes(b"x")
    os.utime(old, (NOW - 2 * 3600, NOW - 2 * 3600))
    os.utime(tmp, (NOW - 2 * 3600, NOW - 2 * 3600))
    os.utime(fresh, (NOW - 60, NOW - 60))
    jobs = make_jobs(tmp_path, clock, ttl_s=3600)  # sweeps when it starts
    try:
        assert not old.exists() and not tmp.exists() and fresh.exists()
    finally:
        jobs.close()


def test_a_full_disk_is_a_clear_error(tx: Any, tmp_path: Path, clock: Clock) -> None:
    jobs = make_jobs(tmp_path, clock)
    try:
        full = FakeEngine(tx, fail=OSError(errno.ENOSPC, "No space left on device"))
        job = jobs.wait(jobs.start(full, {}, "acme")["id"])
        assert job["state"] == "failed" and job["error"]["code"] == "disk_full"
        assert "disk filled up" in job["error"]["message"] and jobs.metrics()["disk_full"] == 1
        assert list((tmp_path / "exports").iterdir()) == []
    finally:
        jobs.close()
    little = ExportJobs(tmp_path / "e2", limits=ExportLimits(min_free_bytes=1 << 62), clock=clock)
    try:
        with pytest.raises(StorageFull) as e:  # less free space than the floor: refused up front
            little.start(FakeEngine(tx), {}, "acme")
        assert e.value.status == 507 and e.value.code == "disk_full"
    finally:
        little.close()
    capped = make_jobs(tmp_path / "e3", clock, max_bytes=1500)
    try:
        capped.wait(capped.start(FakeEngine(tx), {}, "acme")["id"])
        capped.wait(capped.start(FakeEngine(tx), {}, "bobco")["id"])  # 2,000 bytes stored now
        with pytest.raises(StorageFull):
            capped.start(FakeEngine(tx), {}, "carol")
        assert capped.metrics()["refused_storage"] == 1
    finally:
        capped.close()


def test_first_party_exports_need_no_profiles(tx: Any, tmp_path: Path, clock: Clock) -> None:
    eng = FakeEngine(tx)
    eng.audience = None  # type: ignore[assignment]
    eng.store.add_events(_events(), ttl=400 * 86400)
    jobs = make_jobs(tmp_path, clock)
    try:
        job = jobs.wait(jobs.start(eng, {"retargeting": {"any": [VISIT7]}}, "acme", first_party_only=True)["id"])
        assert job["state"] == "done" and job["first_party"] and job["rows"] == 3
        with pytest.raises(PlatformData):
            jobs.start(eng, {"gender": "female"}, "acme", first_party_only=True)
        with pytest.raises(TargetingError) as e:  # an operator asking for platform data needs profiles
            jobs.start(eng, {"gender": "female"}, "acme")
        assert e.value.code == "unavailable"
    finally:
        jobs.close()


def test_the_sweeper_thread_runs(tx: Any, tmp_path: Path) -> None:
    clock = Clock()
    jobs = ExportJobs(tmp_path / "exports", clock=clock,
                      limits=ExportLimits(min_free_bytes=0, ttl_s=10, sweep_every_s=0.02))
    try:
        job = jobs.wait(jobs.start(FakeEngine(tx), {}, "acme")["id"])
        clock.now += 11
        deadline = time.monotonic() + 10
        while jobs.get(job["id"])["state"] != "expired":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        jobs.close()
