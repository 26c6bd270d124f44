"""Event rows in: per-row errors by index, good rows kept; Parquet and JSONL loading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from targeting.events import load_events_file, parse_events
from targeting.stores import Event

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC).timestamp()
ADVERTISERS = {"acme", "globex"}


def row(**overrides: Any) -> dict[str, Any]:
    base = {"user_id": "u1", "advertiser": "acme", "event": "visit", "ts": "2026-11-24T11:00:00Z"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-11-24T11:00:00Z", NOW - 3600),  # UTC with Z
        ("2026-11-24T19:00:00+08:00", NOW - 3600),  # Beijing offset
        ("2026-11-24 19:00:00.5+08:00", NOW - 3599.5),  # space separator, fraction
        (NOW - 60, NOW - 60),  # epoch seconds, float
        (int(NOW) - 60, NOW - 60),  # epoch seconds, int
        (datetime(2026, 11, 24, 11, tzinfo=UTC), NOW - 3600),  # Parquet timestamp[tz]
        ("2026-11-24T12:04:59Z", NOW + 299),  # within the 5-minute skew allowance
    ],
    ids=["zulu", "offset", "space-fraction", "epoch-float", "epoch-int", "aware-datetime", "skew"],
)
def test_good_timestamps(ts: Any, expected: float) -> None:
    events, errors = parse_events([row(ts=ts)], ADVERTISERS, NOW)
    assert errors == []
    assert events == [Event("u1", "acme", "visit", expected)]


@pytest.mark.parametrize(
    ("bad", "path", "code"),
    [
        (row(user_id=...), "user_id", "required"),  # missing
        (row(user_id="  "), "user_id", "required"),  # blank
        (row(user_id=42), "user_id", "invalid_type"),  # not a string
        (row(advertiser="initech"), "advertiser", "unknown_advertiser"),
        (row(advertiser=...), "advertiser", "required"),
        (row(event="view"), "event", "unknown_event"),
        (row(event="Visit"), "event", "unknown_event"),  # event types are exact
        (row(ts=...), "ts", "invalid_ts"),  # missing
        (row(ts="2026-11-24T11:00:00"), "ts", "ts_no_zone"),  # naive ISO
        (row(ts=datetime(2026, 11, 24, 11)), "ts", "ts_no_zone"),  # naive datetime
        (row(ts="yesterday"), "ts", "invalid_ts"),
        (row(ts=True), "ts", "invalid_ts"),  # bools are not numbers here
        (row(ts=float("nan")), "ts", "invalid_ts"),
        (row(ts=NOW + 301), "ts", "ts_in_future"),
        (row(ts=NOW * 1000), "ts", "ts_in_future"),  # milliseconds by mistake
        (row(ts=NOW - 366 * 86_400), "ts", "ts_too_old"),
    ],
    ids=[
        "user-missing",
        "user-blank",
        "user-int",
        "advertiser-unknown",
        "advertiser-missing",
        "event-unknown",
        "event-case",
        "ts-missing",
        "ts-naive",
        "ts-naive-datetime",
        "ts-garbage",
        "ts-bool",
        "ts-nan",
        "ts-future",
        "ts-millis",
        "ts-too-old",
    ],
)
def test_bad_rows_are_reported_by_index_and_field(
    bad: dict[str, Any], path: str, code: str
) -> None:
    events, errors = parse_events([row(), bad, row(user_id="u2")], ADVERTISERS, NOW)
    assert [e.user_id for e in events] == ["u1", "u2"]  # nothing good lost
    assert len(errors) == 1
    assert errors[0]["index"] == 1
    assert errors[0]["path"] == f"events[1].{path}"
    assert errors[0]["code"] == code
    assert errors[0]["message"]


def test_every_bad_field_of_a_row_is_reported() -> None:
    _, errors = parse_events([row(user_id="", event="view", ts="nope")], ADVERTISERS, NOW)
    assert [e["path"] for e in errors] == ["events[0].user_id", "events[0].event", "events[0].ts"]


def test_any_advertiser_when_none_are_known() -> None:
    events, errors = parse_events([row(advertiser="initech")], None, NOW)
    assert errors == [] and events[0].advertiser == "initech"


def test_non_object_rows() -> None:
    _, errors = parse_events([["u1"], None], ADVERTISERS, NOW)  # type: ignore[list-item]
    assert [(e["index"], e["path"], e["code"]) for e in errors] == [
        (0, "events[0]", "invalid_row"),
        (1, "events[1]", "invalid_row"),
    ]


def test_empty_batch() -> None:
    assert parse_events([], ADVERTISERS, NOW) == ([], [])


def test_load_jsonl_in_chunks_with_a_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    p.write_text(
        '{"user_id": "u1", "advertiser": "acme", "event": "visit", "ts": 1795000000}\n'
        "\n"  # blank lines are skipped
        "{not json\n"
        "[1, 2]\n"
        '{"user_id": "u2", "advertiser": "acme", "event": "click", "ts": 1795000001}\n'
    )
    chunks = list(load_events_file(p, chunk_size=3))
    assert [len(c) for c in chunks] == [3, 1]
    rows = [r for c in chunks for r in c]
    assert rows[0]["user_id"] == "u1" and rows[3]["user_id"] == "u2"
    _, errors = parse_events(rows, None, NOW)
    assert [(e["index"], e["code"]) for e in errors] == [(1, "invalid_row"), (2, "invalid_row")]
    assert "line 3" in errors[0]["message"] and "line 4" in errors[1]["message"]


def test_load_parquet_in_batches(tmp_path: Path) -> None:
    p = tmp_path / "events.parquet"
    start = datetime(2026, 11, 24, tzinfo=UTC)
    table = pa.table(
        {
            "user_id": [f"u{i}" for i in range(5)],
            "advertiser": ["acme"] * 5,
            "event": ["visit", "click", "add_to_cart", "purchase", "visit"],
            "ts": pa.array(
                [start + timedelta(minutes=i) for i in range(5)], pa.timestamp("ms", tz="UTC")
            ),
        }
    )
    pq.write_table(table, p)
    chunks = list(load_events_file(p, chunk_size=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    events, errors = parse_events([r for c in chunks for r in c], ADVERTISERS, NOW)
    assert errors == []
    assert [e.ts for e in events] == [start.timestamp() + 60 * i for i in range(5)]
