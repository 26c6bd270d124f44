"""Retargeting events in: validate rows (pure) and read event files in chunks.

``parse_events`` keeps every good row and reports every bad one by index, so a
batch with a few bad rows still stores the rest (``POST /v1/events``,
``targeting events load``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from targeting.request import id_problem
from targeting.stores.base import Event

EVENT_TYPES = ("visit", "click", "add_to_cart", "purchase")
MAX_FUTURE_S = 300  # clock skew we tolerate from event senders
MAX_AGE_S = 365 * 86_400  # no retargeting window is longer
INVALID_LINE = "_invalid"  # key of the placeholder row for an unreadable JSONL line


def _error(i: int, field: str, code: str, message: str) -> dict[str, Any]:
    return {"index": i, "path": f"events[{i}].{field}", "code": code, "message": message}


def _required_str(row: dict[str, Any], field: str) -> tuple[str | None, tuple[str, str] | None]:
    value = row.get(field)
    if value is None:
        return None, ("required", f"{field} is missing or empty")
    if not isinstance(value, str):
        return None, ("invalid_type", f"{field} must be a string, not {type(value).__name__}")
    why = id_problem(value, field)  # the same id rule as decide and impressions
    if why is not None:
        return None, ("required" if not value.strip() else "invalid_id", why)
    return value, None


def parse_ts(value: Any) -> float:
    """Epoch seconds from an ISO 8601 string with a zone, an aware ``datetime`` or an
    epoch-seconds number. Raises ``ValueError`` whose first arg is the error code."""
    if isinstance(value, bool) or value is None:
        raise ValueError(
            "invalid_ts", "ts is missing" if value is None else "ts must not be a bool"
        )
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("invalid_ts", f"ts {value!r} is not a finite number")
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                "invalid_ts", f"ts {value!r} is neither ISO 8601 nor epoch seconds"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("ts_no_zone", "ts has no time zone; add Z or +08:00")
        return value.timestamp()
    raise ValueError("invalid_ts", f"ts must be a string or a number, not {type(value).__name__}")


def parse_events(
    rows: list[dict[str, Any]], known_advertisers: AbstractSet[str] | None, now: float
) -> tuple[list[Event], list[dict[str, Any]]]:
    """Validate ``rows`` (``user_id``, ``advertiser``, ``event``, ``ts``).

    Returns the good events (in row order) and one error dict per bad field,
    ``{"index", "path": "events[i].field", "code", "message"}``; a row with any
    error yields no event. ``known_advertisers=None`` accepts any advertiser.
    """
    events: list[Event] = []
    errors: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or INVALID_LINE in row:
            why = row.get(INVALID_LINE) if isinstance(row, dict) else "not an object"
            errors.append(
                {"index": i, "path": f"events[{i}]", "code": "invalid_row", "message": str(why)}
            )
            continue
        row_errors = []
        user_id, err = _required_str(row, "user_id")
        if err:
            row_errors.append(_error(i, "user_id", *err))
        advertiser, err = _required_str(row, "advertiser")
        if err:
            row_errors.append(_error(i, "advertiser", *err))
        elif known_advertisers is not None and advertiser not in known_advertisers:
            row_errors.append(
                _error(i, "advertiser", "unknown_advertiser", f"unknown advertiser {advertiser!r}")
            )
        event, err = _required_str(row, "event")
        if err:
            row_errors.append(_error(i, "event", *err))
        elif event not in EVENT_TYPES:
            row_errors.append(
                _error(
                    i,
                    "event",
                    "unknown_event",
                    f"unknown event {event!r}; expected one of {', '.join(EVENT_TYPES)}",
                )
            )
        ts = math.nan
        try:
            ts = parse_ts(row.get("ts"))
        except ValueError as e:
            code, message = e.args
            row_errors.append(_error(i, "ts", code, message))
        else:
            if ts > now + MAX_FUTURE_S:
                row_errors.append(
                    _error(i, "ts", "ts_in_future", f"ts is {ts - now:.0f} s in the future")
                )
            elif ts < now - MAX_AGE_S:
                row_errors.append(_error(i, "ts", "ts_too_old", "ts is more than 365 days old"))
        if row_errors:
            errors.extend(row_errors)
        else:
            assert user_id is not None and advertiser is not None and event is not None
            events.append(Event(user_id=user_id, advertiser=advertiser, event=event, ts=ts))
    return events, errors


def load_events_file(path: str | Path, chunk_size: int = 50_000) -> Iterator[list[dict[str, Any]]]:
    """Rows of a Parquet (``.parquet``, ``.pq``) or JSON Lines file, ``chunk_size`` at a time.

    An unreadable JSONL line becomes ``{"_invalid": "line N: …"}`` so that
    :func:`parse_events` reports it by index and the rest still loads.
    """
    path = Path(path)
    if path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as f:
            for batch in f.iter_batches(batch_size=chunk_size):
                yield batch.to_pylist()
        return
    chunk: list[dict[str, Any]] = []
    with path.open("rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                row = {INVALID_LINE: f"line {n}: invalid JSON ({e})"}
            if not isinstance(row, dict):
                row = {INVALID_LINE: f"line {n}: expected a JSON object"}
            chunk.append(row)
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk
