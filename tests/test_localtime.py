"""Local wall-clock minutes (``targeting.localtime``) against ``datetime`` itself."""

from __future__ import annotations

import numpy as np
import pytest

from targeting.localtime import local_minutes


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York", "Europe/London", "Asia/Kolkata",
                                  "Australia/Lord_Howe", "Asia/Kathmandu", "America/St_Johns"])
@pytest.mark.parametrize("spread_days", [2, 400])  # a few quarter-hours per request, or one each
def test_local_minutes_equal_datetime(zone: str, spread_days: int) -> None:
    """Local wall-clock minutes, one conversion per UTC quarter-hour, against ``datetime`` itself,
    around the 2026 DST changes (half-hour and 45-minute offsets, Lord Howe's 30-minute DST)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    rng = np.random.default_rng(spread_days)
    changes = [dt.datetime(2026, m, d, tzinfo=dt.UTC).timestamp() for m, d in [(3, 8), (3, 29), (4, 5), (10, 4), (11, 1)]]
    ts = np.concatenate([c + rng.uniform(-spread_days * 43200, spread_days * 43200, 300) for c in changes])
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    want = [(dt.datetime.fromtimestamp(t // 60 * 60, ZoneInfo(zone)).replace(tzinfo=dt.UTC) - epoch)
            // dt.timedelta(minutes=1) for t in ts.tolist()]
    assert local_minutes(ts, zone).tolist() == want
