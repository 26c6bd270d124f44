"""Delivery reports over the Parquet log with DuckDB (embedded: no server).

:func:`report` answers ``GET /v1/reports`` and ``targeting report``: impressions,
clicks, CTR, spend and eCPM per period (``hour``, ``day`` or ``total``) and per
breakdown dimension, for one advertiser or campaign or all. Periods are read in
``tz`` (default ``Asia/Shanghai``); ``from``/``to`` are dates in it, inclusive.

* Clicks count in the period (and breakdown cell) of *their impression*, so CTR is
  the share of a period's impressions that were clicked.
* ``tag`` breaks down by each of the user's tags: an impression of a user with
  three tags counts in three rows (tag rows do not add up to the total).
* ``pacing`` (``by=hour`` with a ``campaign`` that has a daily budget): each row
  also has ``spend_to_date`` (the day's spend up to the end of that hour) and
  ``pacing`` (the even-pacing line: the daily budget times the share of the day
  elapsed at the end of the hour).
* Privacy (``private=True``, advertiser callers): a row broken down by a user
  attribute (province, city, gender, age_band, tag, scene) that covers fewer than
  :data:`targeting.audience.privacy.THRESHOLD` distinct users shows no counts
  (``null``) and ``below_threshold: true``, as reach does.
* Files that cannot be read are left out with a warning (``skipped`` in the answer).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import TargetingError

log = logging.getLogger("targeting.delivery")

BY = ("hour", "day", "total")
MAX_DAYS = 366
# dimension -> SQL over the union of impression and click rows
DIMS: dict[str, str] = {
    "campaign": "campaign_id",
    "advertiser": "advertiser",
    "province": "CAST(province AS VARCHAR)",
    "city": "CAST(city AS VARCHAR)",
    "gender": "coalesce(gender, 'unknown')",
    "age_band": ("CASE WHEN age IS NULL THEN 'unknown' WHEN age < 18 THEN '<18' WHEN age < 25 THEN '18-24' "
                 "WHEN age < 35 THEN '25-34' WHEN age < 45 THEN '35-44' WHEN age < 55 THEN '45-54' "
                 "WHEN age < 65 THEN '55-64' ELSE '65+' END"),
    "tag": "tag",
    "scene": "coalesce(scene, 'unknown')",
    "slot": "coalesce(slot, 'unknown')",
    "hour": "hour",
    "weekday": "weekday",
}
USER_DIMS = frozenset({"province", "city", "gender", "age_band", "tag", "scene"})
COLUMNS = ("impressions", "clicks", "ctr", "spend", "ecpm")


def parse_query(params: dict[str, Any], today: dt.date | None = None) -> dict[str, Any]:
    """Validate report parameters (strings, as from a URL) → keyword arguments of :func:`report`.
    Every problem is a TargetingError naming the parameter."""
    tz_name = params.get("tz") or "Asia/Shanghai"
    try:
        tz = ZoneInfo(str(tz_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise TargetingError(f"unknown time zone {tz_name!r}", path="tz") from None
    today = today or dt.datetime.now(tz).date()

    def day(name: str, default: dt.date) -> dt.date:
        raw = params.get(name)
        if raw in (None, ""):
            return default
        try:
            return dt.date.fromisoformat(str(raw)[:10]) if len(str(raw)) >= 10 else dt.date.fromisoformat(str(raw))
        except ValueError:
            raise TargetingError(f"{name} is a date YYYY-MM-DD, not {raw!r}", path=name) from None

    end = day("to", today)
    start = day("from", end)
    if start > end:
        raise TargetingError(f"from ({start}) is after to ({end})", path="from", code="reversed_range")
    if (end - start).days + 1 > MAX_DAYS:
        raise TargetingError(f"a report covers at most {MAX_DAYS} days; {start}..{end} is "
                             f"{(end - start).days + 1}", path="to", code="range_too_long")
    by = params.get("by") or "day"
    if by not in BY:
        raise TargetingError(f"by is hour, day or total, not {by!r}", path="by")
    raw_dims = params.get("dims") or []
    dims = [d.strip() for d in raw_dims.split(",")] if isinstance(raw_dims, str) else list(raw_dims)
    dims = [d for d in dims if d]
    for d in dims:
        if d not in DIMS:
            raise TargetingError(f"unknown dimension {d!r}; known: {', '.join(DIMS)}", path="dims",
                                 code="unknown_dimension")
    if len(set(dims)) != len(dims):
        raise TargetingError("a dimension is listed twice", path="dims")
    out: dict[str, Any] = {"start": start, "end": end, "by": by, "dims": dims, "tz": str(tz_name)}
    for name in ("advertiser", "campaign"):
        v = params.get(name)
        if v not in (None, ""):
            if not isinstance(v, str) or len(v) > 200:
                raise TargetingError(f"{name} is an id", path=name)
            out[name] = v
    return out


class _Files:
    """Readable ``*.parquet`` files of the log, checked once each (footer read), by path,
    size and mtime; unreadable ones are skipped with one warning."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int, float], bool] = {}
        self._lock = threading.Lock()

    def good(self, paths: list[Path]) -> tuple[list[str], list[str]]:
        import pyarrow.parquet as pq

        good: list[str] = []
        bad: list[str] = []
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                continue
            key = (str(p), st.st_size, st.st_mtime)
            with self._lock:
                ok = self._seen.get(key)
            if ok is None:
                try:
                    pq.read_metadata(p)
                    ok = True
                except Exception as e:  # noqa: BLE001 - any failure to read: skip the file
                    log.warning("delivery log: skipping unreadable file %s: %s", p, e)
                    ok = False
                with self._lock:
                    self._seen[key] = ok
            (good if ok else bad).append(str(p))
        return good, bad

    def mark_bad(self, path: str) -> None:
        try:
            st = Path(path).stat()
        except OSError:
            return
        with self._lock:
            self._seen[(path, st.st_size, st.st_mtime)] = False


FILES = _Files()


def log_files(log_dir: str | Path, kind: str, first: dt.date, last: dt.date) -> list[Path]:
    """The finished files of ``kind`` in the UTC date partitions ``first``..``last``."""
    root = Path(log_dir) / kind
    out: list[Path] = []
    d = first
    while d <= last:
        part = root / f"date={d.isoformat()}"
        if part.is_dir():
            out.extend(sorted(part.glob("*.parquet")))
        d += dt.timedelta(days=1)
    return out


def report(log_dir: str | Path, *, start: dt.date, end: dt.date, by: str = "day", dims: Sequence[str] = (),
           advertiser: str | None = None, campaign: str | None = None, tz: str = "Asia/Shanghai",
           private: bool = False, daily_budget: float | None = None) -> dict[str, Any]:
    """The report rows (see the module doc): ``{"rows": [...], "skipped": [files]}``; rows are
    ordered by period then dimensions. ``daily_budget``: the campaign's, for pacing."""
    import duckdb

    zone = ZoneInfo(tz)
    lo = dt.datetime.combine(start, dt.time(), zone)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone)
    first = lo.astimezone(dt.UTC).date()
    last = (hi - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
    imp_files, bad_i = FILES.good(log_files(log_dir, "impressions", first, last))
    clk_files, bad_c = FILES.good(log_files(log_dir, "clicks", first, last))
    skipped = bad_i + bad_c
    for _ in range(3):  # a file whose footer reads but whose data does not: find it, drop it, retry
        try:
            rows = _query(duckdb, imp_files, clk_files, lo, hi, by, list(dims), advertiser, campaign, tz, private)
            break
        except duckdb.Error:
            culprit = _find_bad(imp_files + clk_files)
            if culprit is None:
                raise  # not a file's fault
            log.warning("delivery log: skipping unreadable file %s", culprit)
            FILES.mark_bad(culprit)
            skipped.append(culprit)
            imp_files = [f for f in imp_files if f != culprit]
            clk_files = [f for f in clk_files if f != culprit]
    else:
        raise TargetingError("the delivery log could not be read", path="log")
    if by == "hour" and campaign is not None and daily_budget:
        _pacing(rows, daily_budget, dims)
    return {"rows": rows, "skipped": skipped}


def _find_bad(files: list[str]) -> str | None:
    import pyarrow.parquet as pq

    for f in files:
        try:
            pq.read_table(f)
        except Exception:  # noqa: BLE001
            return f
    return None


def _query(duckdb: Any, imp_files: list[str], clk_files: list[str], lo: dt.datetime, hi: dt.datetime, by: str,
           dims: list[str], advertiser: str | None, campaign: str | None, tz: str,
           private: bool) -> list[dict[str, Any]]:
    if not imp_files:
        return []
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        where = ["ts >= $lo", "ts < $hi"]
        params: dict[str, Any] = {"lo": lo, "hi": hi}
        if by != "total":
            params["tz"] = tz
        if advertiser is not None:
            where.append("advertiser = $advertiser")
            params["advertiser"] = advertiser
        if campaign is not None:
            where.append("campaign_id = $campaign")
            params["campaign"] = campaign
        cols = "ts, user_id, campaign_id, advertiser, province, city, gender, age, tags, scene, slot, hour, weekday"
        imp = f"SELECT 1 AS i, 0 AS c, cost, {cols} FROM read_parquet({_list(imp_files)}) WHERE {' AND '.join(where)}"
        parts = [imp]
        if clk_files:
            ccols = cols.replace("ts,", "impression_ts AS ts,", 1)
            cwhere = " AND ".join(w.replace("ts ", "impression_ts ", 1) if w.startswith("ts ") else w for w in where)
            parts.append(f"SELECT 0 AS i, 1 AS c, 0.0 AS cost, {ccols} FROM read_parquet({_list(clk_files)}) "
                         f"WHERE {cwhere}")
        base = " UNION ALL ".join(parts)
        if "tag" in dims:
            base = f"SELECT *, unnest(CASE WHEN len(tags) > 0 THEN tags ELSE ['none'] END) AS tag FROM ({base})"
        period = {"hour": "strftime(timezone($tz, ts), '%Y-%m-%dT%H:00')",
                  "day": "strftime(timezone($tz, ts), '%Y-%m-%d')", "total": "'total'"}[by]
        keys = [f"{period} AS period"] + [f"{DIMS[d]} AS \"{d}\"" for d in dims]
        users = ", count(DISTINCT user_id) FILTER (WHERE i = 1) AS users" if private and USER_DIMS & set(dims) else ""
        sql = (f"SELECT {', '.join(keys)}, sum(i) AS impressions, sum(c) AS clicks, sum(cost) AS spend{users} "
               f"FROM ({base}) GROUP BY ALL HAVING count(*) > 0 ORDER BY ALL")
        cur = con.execute(sql, params)
        names = [d[0] for d in cur.description]
        out = []
        for values in cur.fetchall():
            r = dict(zip(names, values))
            imps, clicks, spend = int(r["impressions"] or 0), int(r["clicks"] or 0), float(r["spend"] or 0.0)
            row: dict[str, Any] = {"period": r["period"], **{d: _plain(r[d]) for d in dims},
                                   "impressions": imps, "clicks": clicks,
                                   "ctr": round(clicks / imps, 6) if imps else None,
                                   "spend": round(spend, 6), "ecpm": round(spend / imps * 1000, 6) if imps else None}
            if users:
                from ..audience.privacy import THRESHOLD

                hidden = int(r["users"] or 0) < THRESHOLD
                row["below_threshold"] = hidden
                if hidden:
                    row.update(dict.fromkeys(COLUMNS))
            out.append(row)
        return out
    finally:
        con.close()


def _list(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def _plain(v: Any) -> Any:
    return v


def _pacing(rows: list[dict[str, Any]], budget: float, dims: Sequence[str]) -> None:
    """Add ``spend_to_date`` and ``pacing`` (cumulative within each day) to hourly rows."""
    if dims:
        return
    day, acc = None, 0.0
    for r in rows:
        d, hour = r["period"][:10], int(r["period"][11:13])
        if d != day:
            day, acc = d, 0.0
        acc += r["spend"] or 0.0
        r["spend_to_date"] = round(acc, 6)
        r["pacing"] = round(budget * (hour + 1) / 24, 6)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV (header from the first row's keys; empty string for null)."""
    import csv
    import io

    if not rows:
        return "period," + ",".join(COLUMNS) + "\r\n"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
