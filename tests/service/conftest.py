"""Fixtures for the HTTP service: a small rules dir over the real taxonomy, an
engine on a fixed clock, TestClients in open and keyed modes."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service import Settings, create_app
from service.auth import KeyRing
from targeting import Engine
from targeting.stores import MemoryStore

with warnings.catch_warnings():
    # starlette >= 1.x nudges towards httpx2; the TestClient itself is unchanged
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

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


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    return write_rules(tmp_path / "rules", CAMPAIGNS)


@pytest.fixture
def engine(rules_dir: Path) -> Engine:
    clock = lambda: NOW
    return Engine.load(rules_dir, store=MemoryStore(clock=clock), clock=clock)


@pytest.fixture
def make_client(engine: Engine) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        c = TestClient(create_app(settings.pop("engine", engine), Settings(**settings)))
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.from_entries([
        {"key": KEYS["ad_server"], "role": "ad_server"},
        {"key": KEYS["admin"], "role": "admin"},
        {"key": KEYS["acme"], "role": "advertiser:acme"},
        {"key": KEYS["bobco"], "role": "advertiser:bobco"},
    ])


@pytest.fixture
def keyed(make_client: Callable[..., TestClient], keyring: KeyRing) -> TestClient:
    return make_client(auth=keyring)
