"""Local wall-clock minutes: the one conversion from an instant to a zone's local time.

Every zone's UTC offset is a multiple of 15 minutes and changes at a quarter-hour, so the
offset is looked up once per (zone, UTC quarter-hour) and memoized: a decision's minute, a
batch's few hundred distinct quarter-hours, the click model's hour and weekday all read it.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()
MINUTES_PER_DAY = 1440
_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=1 << 16)
def quarter_offset(name: str, quarter: int) -> int:
    """Minutes to add to UTC in zone ``name`` during the UTC quarter-hour ``quarter`` (since the epoch)."""
    off = _UTC_EPOCH.__add__(dt.timedelta(minutes=15 * quarter)).astimezone(zone(name)).utcoffset()
    return 0 if off is None else int(off.total_seconds()) // 60


def local_minute(name: str, minute: int) -> int:
    """Local wall-clock minutes since 1970-01-01 00:00 in zone ``name`` of the UTC ``minute``."""
    return minute + quarter_offset(name, minute // 15)


def local_minutes(ts: np.ndarray, name: str) -> np.ndarray:
    """int64[B]: :func:`local_minute` of each (minute-floored) epoch second of ``ts`` (float64[B]),
    converting each distinct UTC quarter-hour once (a batch's block spans a few hundred)."""
    minute = np.floor_divide(ts, 60).astype(np.int64)
    quarter = minute // 15
    if quarter.size == 0:
        return minute
    lo = int(quarter.min())
    span = int(quarter.max()) - lo + 1
    if span > quarter.size:  # spread too thin for a table (no sort either way when it is not)
        first, inv = np.unique(quarter, return_inverse=True)
        inv = inv.reshape(-1)
    else:
        present = np.zeros(span, dtype=bool)
        present[quarter - lo] = True
        first = np.flatnonzero(present) + lo
        number = np.zeros(span, dtype=np.int64)
        number[first - lo] = np.arange(first.size)
        inv = number[quarter - lo]
    offset = np.array([quarter_offset(name, q) for q in first.tolist()], dtype=np.int64)
    return minute + offset[inv]


def local_datetime(local_min: int) -> dt.datetime:
    """The naive local datetime of a :func:`local_minute`."""
    return dt.datetime(1970, 1, 1) + dt.timedelta(minutes=local_min)


__all__ = ["EPOCH_ORDINAL", "MINUTES_PER_DAY", "local_datetime", "local_minute", "local_minutes",
           "quarter_offset", "zone"]
