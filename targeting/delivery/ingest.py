"""Event files with clicks in them (``targeting events load``).

A row with an ``impression_id`` is a click (``{"impression_id", "ts"?}``, the
body rows of ``POST /v1/clicks``); every other row is a retargeting event. The
clicks are checked like the API's: signed with the deployment's key, their
impression reported to the same state store (so ``--store`` must be the
service's Redis), each counted once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

CLICK_FIELDS = ("impression_id", "ts")


def is_click(row: Any) -> bool:
    return isinstance(row, Mapping) and row.get("impression_id") is not None


def record_rows(engine: Any, rows: Sequence[Any], attach: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Store a chunk of mixed rows: ``{"accepted", "clicks", "duplicates", "errors"}``; errors
    carry the row's ``index`` in ``rows`` and a path ``events[i]....``. ``attach`` is called
    (once) to give the engine its delivery when the first click comes and it has none."""
    click_at = [i for i, r in enumerate(rows) if is_click(r)]
    event_at = [i for i, r in enumerate(rows) if not is_click(r)]
    errors: list[dict[str, Any]] = []
    accepted = clicks = duplicates = 0
    if event_at:
        result = engine.record_events([rows[i] for i in event_at])
        accepted += result["accepted"]
        errors += [_moved(e, event_at, "events") for e in result["errors"]]
    if click_at:
        if engine.delivery is None and attach is not None:
            attach()
        if engine.delivery is None:
            raise ValueError("clicks need targeting.delivery.attach(engine, ...) (the signing key)")
        only = [{k: rows[i][k] for k in CLICK_FIELDS if rows[i].get(k) is not None} for i in click_at]
        result = engine.delivery.record_clicks(engine, only)
        accepted += result["accepted"]
        clicks += result["accepted"]
        duplicates += result["duplicates"]
        errors += [_moved(e, click_at, "clicks") for e in result["errors"]]
    errors.sort(key=lambda e: e.get("index", 0))
    return {"accepted": accepted, "clicks": clicks, "duplicates": duplicates, "errors": errors}


def _moved(err: dict[str, Any], at: list[int], kind: str) -> dict[str, Any]:
    j = err.get("index")
    if not isinstance(j, int) or not 0 <= j < len(at):
        return err
    path = str(err.get("path") or "")
    return {**err, "index": at[j], "path": path.replace(f"{kind}[{j}]", f"events[{at[j]}]", 1)}
