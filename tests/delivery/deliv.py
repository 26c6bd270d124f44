"""Shared pieces of the delivery tests (a module with a unique name): rules, a clock, keys."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

import yaml

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

__all__ = ["CAMPAIGNS", "KEYS", "NOW", "Clock", "TestClient", "bearer", "write_rules"]

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()  # a Tuesday

CAMPAIGNS: list[dict[str, Any]] = [
    {"id": "acme-spring", "advertiser": "acme", "bid": {"cpm": 12.5}, "category": "auto",
     "daily_budget": 1000, "targeting": {"geo": {"include": ["广东"]}}},
    {"id": "acme-fashion", "advertiser": "acme", "bid": {"cpm": 8}, "category": "fashion",
     "targeting": {"gender": "female"}},
    {"id": "bobco-cpc", "advertiser": "bobco", "bid": {"cpc": 0.8}, "category": "finance",
     "targeting": {"age": [[20, 60]]}},
]

KEYS = {
    "ad_server": "adserver-key-0123456789",
    "admin": "admin-key-0123456789abcdef",
    "acme": "acme-key-0123456789abcdef",
    "bobco": "bobco-key-0123456789abcdef",
}


class Clock:
    """A settable clock (epoch seconds)."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_rules(root: Path, campaigns: list[dict[str, Any]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "taxonomy").symlink_to(REPO / "rules" / "taxonomy")
    (root / "campaigns").mkdir()
    (root / "campaigns" / "test.yaml").write_text(yaml.safe_dump(campaigns, allow_unicode=True), encoding="utf-8")
    return root


def bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}
