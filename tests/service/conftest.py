"""Fixtures for the HTTP service: a small rules dir over the real taxonomy, an
engine on a fixed clock, TestClients in open and keyed modes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from svc import CAMPAIGNS, KEYS, NOW, TestClient, write_rules

from service import Settings, create_app
from service.auth import KeyRing
from targeting import Engine
from targeting.stores import MemoryStore


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
