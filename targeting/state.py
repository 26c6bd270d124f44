"""Pure rules for per-user and per-campaign state: counter keys, windows, pacing.

The engine turns campaigns and instants into store keys here, so every store
backend counts the same things. Windows are calendar windows in the
campaign's time zone (hour, day, ISO week), which is what advertisers read in
their reports.
"""

from __future__ import annotations

import datetime as dt
from typing import TypeVar, cast

import numpy as np

HOUR, DAY, WEEK = 3600, 86400, 7 * 86400
WINDOWS = ("hour", "day", "week")  # the windows of frequency caps (and "day" of spend)
WINDOW_SECONDS = dict(zip(WINDOWS, (HOUR, DAY, WEEK)))
PACING_SLACK = 0.05  # share of the daily budget a campaign may run ahead of an even schedule


def window_bucket(per: str, local: dt.datetime) -> str:
    """Label of the calendar window containing ``local`` (a local wall-clock time)."""
    if per == "hour":
        return local.strftime("h%Y%m%d%H")
    if per == "day":
        return local.strftime("d%Y%m%d")
    if per == "week":
        y, w, _ = local.isocalendar()
        return f"w{y}{w:02d}"
    raise ValueError(f"unknown window {per!r}")


def cap_key(campaign_id: str, window: str) -> str:
    """Frequency-cap counter key of a user for ``campaign_id`` in the window labelled
    ``window`` (:func:`window_bucket`); ``window=""`` gives the prefix, for bulk builders."""
    return f"cap:{campaign_id}:{window}"


def spend_key(campaign_id: str, day: str) -> str:
    """Per-campaign spend counter for the local day labelled ``day`` (``window_bucket("day", …)``);
    ``day=""`` gives the prefix."""
    return f"spend:{campaign_id}:{day}"


F = TypeVar("F", float, np.ndarray)


def capped(count: F, cap: F) -> F:
    """Whether a user who has seen a campaign ``count`` times in its cap window may not see it
    again (``cap``: impressions allowed per window, ``inf`` for no cap)."""
    return cast(F, count >= cap)


def pacing(spent: np.ndarray, budget: np.ndarray, day_fraction: np.ndarray) -> np.ndarray:
    """int8[...]: ``MAY_SPEND``, ``OVER_BUDGET`` (spent reached the daily budget) or
    ``AHEAD_OF_PACE`` (spent reached the budget × (share of the local day elapsed + slack):
    even pacing) per campaign; a ``nan`` budget (none) may always spend."""
    over = spent >= budget
    ahead = ~over & (spent >= budget * np.minimum(1.0, day_fraction + PACING_SLACK))
    return np.where(over, OVER_BUDGET, np.where(ahead, AHEAD_OF_PACE, MAY_SPEND)).astype(np.int8)


MAY_SPEND, OVER_BUDGET, AHEAD_OF_PACE = 0, 1, 2


def counter_ttl(per: str) -> int:
    """Keep a window's counter one extra window so late reports still land, then expire."""
    return 2 * WINDOW_SECONDS[per]


def impression_cost(price: float | None, bid_type: str, bid: float, pctr: float) -> float:
    """Spend of one impression in currency units.

    ``price`` is the clearing price as CPM (OpenRTB convention). Without it, a
    CPM campaign pays its bid / 1000 and a CPC campaign its expected cost per
    impression, ``cpc × pCTR``.
    """
    if price is not None:
        return price / 1000.0
    return bid / 1000.0 if bid_type == "cpm" else bid * pctr


__all__ = ["AHEAD_OF_PACE", "DAY", "HOUR", "MAY_SPEND", "OVER_BUDGET", "PACING_SLACK", "WEEK", "WINDOWS",
           "WINDOW_SECONDS", "cap_key", "capped", "counter_ttl", "impression_cost", "pacing", "spend_key",
           "window_bucket"]
