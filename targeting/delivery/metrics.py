"""The delivery log's Prometheus families, rendered on scrape (text exposition lines).

Kept apart from service/metrics.py so that it moves as one call whatever renders
the rest of /metrics: ``out.extend(log_metrics(engine))``.

=======================================  =======  ==========================================
``targeting_clicks_recorded_total``      counter  clicks accepted (repeats not counted)
``targeting_log_rows_written_total``     counter  rows in the log, by ``kind``
``targeting_log_rows_dropped_total``     counter  rows lost, by ``reason`` (queue_full, write_error)
``targeting_log_queue_rows``             gauge    rows waiting for the writer
``targeting_log_queue_capacity_rows``    gauge    the queue's bound
``targeting_log_files_total``            counter  finished Parquet files
``targeting_log_degraded``               gauge    1 while writes fail or the queue is over half full
``targeting_log_last_write_timestamp``   gauge    epoch seconds of the last successful write
=======================================  =======  ==========================================
"""

from __future__ import annotations

from typing import Any

from .log import KINDS

NAMES = ("targeting_clicks_recorded_total", "targeting_log_rows_written_total", "targeting_log_rows_dropped_total",
         "targeting_log_queue_rows", "targeting_log_queue_capacity_rows", "targeting_log_files_total",
         "targeting_log_degraded", "targeting_log_last_write_timestamp")


def log_metrics(engine: Any) -> list[str]:
    """Text exposition lines of the families above (zeros when no log is attached)."""
    out: list[str] = []

    def family(name: str, kind: str, help_: str, *samples: tuple[str, Any]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            out.append(f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}")

    d = getattr(engine, "delivery", None)
    w = d.writer if d is not None else None
    st: dict[str, Any] = w.status() if w is not None else {"state": "off", "queued": 0, "written": dict.fromkeys(KINDS, 0),
                                           "dropped": {"queue_full": 0, "write_error": 0}, "files": 0}
    family("targeting_clicks_recorded_total", "counter", "Clicks accepted (repeats are counted once).",
           ("", engine.stats.get("clicks", 0)))
    family("targeting_log_rows_written_total", "counter", "Rows written to the delivery log, by kind.",
           *((f'{{kind="{k}"}}', n) for k, n in sorted(st["written"].items())))
    family("targeting_log_rows_dropped_total", "counter",
           "Rows the delivery log lost, by reason (queue_full, write_error).",
           *((f'{{reason="{k}"}}', n) for k, n in sorted(st["dropped"].items())))
    family("targeting_log_queue_rows", "gauge", "Rows waiting for the delivery log writer.", ("", st["queued"]))
    family("targeting_log_queue_capacity_rows", "gauge", "Bound of the delivery log queue (rows).",
           ("", w.queue_rows if w is not None else 0))
    family("targeting_log_files_total", "counter", "Finished delivery log files.", ("", st["files"]))
    family("targeting_log_degraded", "gauge", "1 while the delivery log cannot keep up or cannot write.",
           ("", int(st["state"] == "degraded")))
    family("targeting_log_last_write_timestamp", "gauge", "Epoch seconds of the last successful log write.",
           ("", float(w.last_write) if w is not None else 0.0))
    return out
