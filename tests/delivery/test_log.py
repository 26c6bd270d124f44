"""The delivery log writer: partitions, rotation, a full queue, a broken directory, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from deliv import NOW, Clock, TestClient, bearer

from targeting import Engine
from targeting.delivery.log import SCHEMAS, LogWriter, table_of


def row(n: int, ts: float = NOW) -> tuple[Any, ...]:
    return (f"id{n}", ts, f"u{n}", "c1", "a1", 12.5, 0.0125, 440000, 440300, "female", 30, ["investor"],
            "office", "feed", 10, 1)


def finished(d: Path, kind: str = "impressions") -> list[Path]:
    return sorted(d.glob(f"{kind}/date=*/*.parquet"))


def ids_in(files: list[Path]) -> list[str]:
    return [i for f in files for i in pq.read_table(f, columns=["impression_id"]).column(0).to_pylist()]


def eventually(cond: Callable[[], Any], timeout: float = 20.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_table_of_matches_the_schema() -> None:
    t = table_of("impressions", [row(1), row(2, NOW + 0.1234)])
    assert t.schema == SCHEMAS["impressions"]
    assert t.column("ts").to_pylist()[1].timestamp() == pytest.approx(NOW + 0.123)


def test_rows_land_in_the_utc_date_partition(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, flush_seconds=0.05)
    w.append("impressions", [row(1, NOW), row(2, NOW + 86400)])  # 02:00 UTC on the 24th, then the 25th
    w.close()
    assert [f.parent.name for f in finished(tmp_path)] == ["date=2026-11-24", "date=2026-11-25"]
    assert ids_in(finished(tmp_path)) == ["id1", "id2"]
    assert not list(tmp_path.rglob("*.inprogress"))


def test_rotation_by_time_and_by_size(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    w = LogWriter(tmp_path / "t", flush_seconds=0.02, rotate_seconds=60, clock=clock)
    w.append("impressions", [row(1)])
    eventually(lambda: w.written["impressions"] == 1)
    assert finished(tmp_path / "t") == []  # still open
    clock.now += 61
    eventually(lambda: finished(tmp_path / "t"))
    w.close()
    s = LogWriter(tmp_path / "s", flush_seconds=0.02, rotate_bytes=1)
    for n in range(3):
        s.append("impressions", [row(n)])
        eventually(lambda n=n: len(finished(tmp_path / "s")) == n + 1)
    s.close()
    assert ids_in(finished(tmp_path / "s")) == ["id0", "id1", "id2"]


def test_a_full_queue_drops_the_new_rows_and_says_so(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, queue_rows=10, flush_seconds=3600)  # the thread sleeps: nothing drains
    assert w.append("impressions", [row(n) for n in range(8)]) == 8
    assert w.append("impressions", [row(n) for n in range(8, 13)]) == 0  # would pass 10: dropped, not blocked
    assert w.status()["dropped"]["queue_full"] == 5 and w.status()["state"] == "degraded"
    w.flush()
    assert w.status()["state"] == "ok" and ids_in(finished(tmp_path)) == [f"id{n}" for n in range(8)]
    w.close()
    assert w.append("impressions", [row(99)]) == 0  # closed: dropped and counted


def test_an_unwritable_directory_degrades_the_log_not_the_service(
        make_engine: Callable[..., Engine], make_client: Callable[..., TestClient], keyring: Any,
        tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "impressions").write_text("a file where the writer wants a directory")  # also fails as root
    e = make_engine(log=broken)
    c = make_client(engine=e, auth=keyring)
    r = c.post("/v1/decide", json={"user_id": "u1", "geo": {"city": "深圳"}, "limit": 1}, headers=bearer("ad_server"))
    assert r.status_code == 200
    (d,) = r.json()["decisions"]
    r = c.post("/v1/impressions", json={"impressions": [{"impression_id": d["impression_id"]}]},
               headers=bearer("ad_server"))
    assert r.status_code == 200 and r.json()["accepted"] == 1  # counted toward caps and budgets all the same
    e.delivery.writer.flush()
    assert c.get("/healthz").json()["log"] == "degraded"
    metrics = c.get("/metrics", headers=bearer("admin")).text
    assert "targeting_log_degraded 1" in metrics
    assert 'targeting_log_rows_dropped_total{reason="write_error"} 1' in metrics
    (broken / "impressions").unlink()  # the operator fixes the disk: the next write succeeds
    e.delivery.writer.append("impressions", [row(1)])
    e.delivery.writer.flush()
    assert c.get("/healthz").json()["log"] == "ok"
    assert ids_in(finished(broken)) == ["id1"]


CHILD = """
import sys, time
from targeting.delivery.log import LogWriter
sys.path.insert(0, {here!r})
from test_log import row
w = LogWriter({d!r}, rotate_seconds=0.5, flush_seconds=0.1)
w.append("impressions", [row(n, {now}) for n in range(100)])
time.sleep(2.0)  # longer than rotate_seconds + flush_seconds: these rows are in finished files
w.append("impressions", [row(n, {now}) for n in range(100, 200)])
print("appended", flush=True)
time.sleep(60)
"""


def test_kill_9_loses_at_most_the_documented_window(tmp_path: Path) -> None:
    code = CHILD.format(here=str(Path(__file__).parent), d=str(tmp_path), now=NOW)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "appended"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    got = ids_in(finished(tmp_path))
    assert set(got) >= {f"id{n}" for n in range(100)}  # everything older than the window survived
    assert len(got) == len(set(got))
    # a new writer sets aside what the dead one left open; nothing unreadable stays *.parquet
    LogWriter(tmp_path).close()
    assert not list(tmp_path.rglob("*.inprogress"))
    for f in finished(tmp_path):
        pq.read_metadata(f)


def test_shutdown_flushes_the_log(make_engine: Callable[..., Engine], keyring: Any, tmp_path: Path) -> None:
    from service import Settings, create_app

    e = make_engine(log=tmp_path / "log", flush_seconds=3600, rotate_seconds=3600)
    with TestClient(create_app(e, Settings(auth=keyring, close_engine=True))) as c:
        r = c.post("/v1/impressions", json={"impressions": [{"user_id": "u1", "campaign_id": "acme-spring"}]},
                   headers=bearer("ad_server"))
        assert r.json()["accepted"] == 1
        assert finished(tmp_path / "log") == []
    (f,) = finished(tmp_path / "log")  # the lifespan's shutdown finished the file
    (logged,) = pq.read_table(f).to_pylist()
    assert (logged["user_id"], logged["campaign_id"], logged["price"], logged["cost"]) == ("u1", "acme-spring", 12.5,
                                                                                          0.0125)
