"""``matcher.moment`` caches per UTC quarter-hour; it must equal the direct local-time
computation in every zone, including half- and quarter-hour offsets and DST changes."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

from targeting.matcher import moment
from targeting.state import window_bucket

ZONES = ("Asia/Shanghai", "Asia/Kolkata", "Asia/Kathmandu", "Europe/London", "America/New_York",
         "Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns")


def direct(ts: float, zone: str) -> tuple[int, int, float, dict[str, str]]:
    t = dt.datetime.fromtimestamp(ts, ZoneInfo(zone))
    return (t.weekday() * 48 + t.hour * 2 + t.minute // 30, t.date().toordinal(), (t.hour * 60 + t.minute) / 1440,
            {w: window_bucket(w, t) for w in ("hour", "day", "week")})


def test_moment_equals_the_direct_local_time_in_every_zone() -> None:
    rng = random.Random(5)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    instants = [start + rng.randrange(2 * 365 * 86400) for _ in range(3000)]
    for z in ZONES:  # every minute of the two hours around each offset change of 2026 and 2027
        info = ZoneInfo(z)
        t = start
        while t < start + 2 * 365 * 86400:
            if info.utcoffset(dt.datetime.fromtimestamp(t, dt.UTC)) != \
                    info.utcoffset(dt.datetime.fromtimestamp(t + 86400, dt.UTC)):
                day = t
                while info.utcoffset(dt.datetime.fromtimestamp(day, dt.UTC)) == \
                        info.utcoffset(dt.datetime.fromtimestamp(t, dt.UTC)):
                    day += 60
                instants.extend(day + k * 60 + s for k in range(-60, 60) for s in (0, 59))
            t += 86400
    assert len(instants) > 3000 + 10 * 240
    for ts in instants:
        m = moment(ZONES, ts)
        for k, z in enumerate(ZONES):
            assert (m.slots[k], m.days[k], m.day_fraction[k], m.labels[k]) == direct(ts, z), (z, ts)
            assert m.day_labels[k] == m.labels[k]["day"]
