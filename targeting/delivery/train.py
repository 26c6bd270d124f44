"""Train the click model from the delivery log (``targeting train --from-log DIR``).

Each logged impression becomes one row of a contract §5 click log: its
request attributes (``request_id`` = the impression id, ``user_id``, ``ts`` =
the impression's time, province, city, gender, age, tags, scene, slot),
``campaign_id`` and ``clicked`` = 1 when a click on that impression id was
logged within the **attribution window** (default 24 h, the same window
``/v1/clicks`` accepts clicks in) at or after the impression, else 0. An
impression reported twice counts once; several clicks on one impression are
one click. Impressions whose campaign is no longer in the rules are left out
(the trainer warns). The click log is written to a temporary Parquet file and
handed to :func:`targeting.model.train`, so the model directory has the same
format as one trained from a synthetic log.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from ..errors import TargetingError
from .recorder import CLICK_WINDOW
from .reports import FILES, log_files

EPOCH = dt.date(2000, 1, 1)


def click_log_from(log_dir: str | Path, out: str | Path, *, window: float = CLICK_WINDOW,
                   start: dt.date | None = None, end: dt.date | None = None) -> dict[str, int]:
    """Join the log's impressions with their clicks into a click log Parquet file at ``out``.
    ``start``/``end``: UTC dates of the impressions to use (default: all). Returns row and click counts."""
    import duckdb

    first = start or EPOCH
    last = end or dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    imp, bad = FILES.good(log_files(log_dir, "impressions", first, last))
    # clicks may come up to the window after the last impression day
    clk, bad_c = FILES.good(log_files(log_dir, "clicks", first, last + dt.timedelta(days=int(window // 86400) + 1)))
    if not imp:
        raise TargetingError(f"no readable impressions in the delivery log at {log_dir}", path="--from-log",
                             code="not_found")
    src = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in imp) + "]"
    clicks = ("SELECT DISTINCT impression_id, impression_ts FROM read_parquet(["
              + ", ".join("'" + f.replace("'", "''") + "'" for f in clk) + "]) "
              f"WHERE ts >= impression_ts AND ts <= impression_ts + to_seconds({float(window)})") if clk else \
        "SELECT NULL::VARCHAR AS impression_id, NULL::TIMESTAMPTZ AS impression_ts WHERE false"
    sql = f"""
        COPY (
          SELECT i.impression_id AS request_id, i.user_id, i.ts, i.province, i.city, i.gender, i.age, i.tags,
                 i.scene, i.slot, i.campaign_id,
                 CAST(c.impression_id IS NOT NULL AS TINYINT) AS clicked
          FROM (SELECT * FROM read_parquet({src})
                QUALIFY row_number() OVER (PARTITION BY impression_id ORDER BY ts) = 1) AS i
          LEFT JOIN ({clicks}) AS c ON c.impression_id = i.impression_id
          ORDER BY i.ts, i.user_id, i.campaign_id, i.impression_id  -- ids are random: last, for a stable order
        ) TO '{str(out).replace("'", "''")}' (FORMAT PARQUET)
    """
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(sql)
        rows, clicked = con.execute(f"SELECT count(*), coalesce(sum(clicked), 0) FROM read_parquet('{out}')"
                                    ).fetchone() or (0, 0)
    finally:
        con.close()
    return {"rows": int(rows), "clicks": int(clicked), "skipped_files": len(bad) + len(bad_c)}


def train_from_log(log_dir: str | Path, *, rules_dir: str | Path, out_dir: str | Path,
                   window: float = CLICK_WINDOW, progress: bool = True, **options: Any) -> dict[str, Any]:
    """Build the click log (:func:`click_log_from`) and train on it; returns the trainer's metrics
    plus ``from_log``: the joined row and click counts. ``options`` go to ``model.train``."""
    from ..model import train

    if not Path(log_dir).is_dir():
        raise TargetingError(f"no delivery log at {log_dir}", path="--from-log", code="not_found")
    with tempfile.TemporaryDirectory(prefix="targeting-train-") as tmp:
        path = Path(tmp) / "clicks.parquet"
        joined = click_log_from(log_dir, path, window=window)
        metrics = train(path, rules_dir=rules_dir, out_dir=out_dir, progress=progress, **options)
    metrics["from_log"] = joined
    return metrics
