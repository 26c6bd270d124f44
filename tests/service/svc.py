"""Shared pieces of the service tests (a module with a unique name, so test files
can import it whatever other conftest modules are loaded): campaigns, keys, helpers."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

import yaml

with warnings.catch_warnings():
    # starlette >= 1.x nudges towards httpx2; the TestClient itself is unchanged
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

__all__ = ["CAMPAIGNS", "KEYS", "NOW", "REPO", "TestClient", "bearer", "write_rules"]

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()  # a Tuesday

CAMPAIGNS: list[dict[str, Any]] = [
    {"id": "acme-spring", "advertiser": "acme", "bid": {"cpm": 12.5}, "category": "auto",
     "targeting": {"geo": {"include": ["广东"]}, "gender": "female"}},
    {"id": "acme-retarget", "advertiser": "acme", "bid": {"cpm": 20}, "category": "retail",
     "targeting": {"retargeting": {"any": [{"event": "visit", "within_days": 30}]}}},
    {"id": "bobco-cpc", "advertiser": "bobco", "bid": {"cpc": 0.8}, "category": "finance",
     "frequency_cap": {"impressions": 1, "per": "day"}, "targeting": {"age": [[20, 40]]}},
    {"id": "bobco-night", "advertiser": "bobco", "bid": {"cpm": 5}, "category": "finance",
     "targeting": {"time": {"hours": ["0-5"]}, "tags": {"any": ["investor"]}}},
]

KEYS = {
    "ad_server": "adserver-key-0123456789",
    "admin": "admin-key-0123456789abcdef",
    "acme": "acme-key-0123456789abcdef",
    "bobco": "bobco-key-0123456789abcdef",
}


def write_rules(root: Path, campaigns: list[dict[str, Any]] | str) -> Path:
    """A rules dir: the real taxonomy (symlinked) plus ``campaigns`` in one YAML file."""
    root.mkdir(parents=True, exist_ok=True)
    tax = root / "taxonomy"
    if not tax.exists():
        tax.symlink_to(REPO / "rules" / "taxonomy")
    cdir = root / "campaigns"
    cdir.mkdir(exist_ok=True)
    text = campaigns if isinstance(campaigns, str) else yaml.safe_dump(campaigns, allow_unicode=True)
    (cdir / "test.yaml").write_text(text, encoding="utf-8")
    return root


def bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}
