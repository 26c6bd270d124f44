"""Fixtures of the delivery tests: an engine with a delivery (ids + log) on a settable clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deliv import CAMPAIGNS, KEYS, Clock, TestClient, write_rules

from service import Settings, create_app
from service.auth import KeyRing
from targeting import Engine
from targeting.delivery import attach
from targeting.stores import MemoryStore

KEY = b"k" * 32


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    return write_rules(tmp_path / "rules", CAMPAIGNS)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


@pytest.fixture
def make_engine(rules_dir: Path, log_dir: Path, clock: Clock) -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make(store: Any = None, log: Path | None = log_dir, **options: Any) -> Engine:
        e = Engine.load(rules_dir, store=store if store is not None else MemoryStore(clock=clock), clock=clock)
        attach(e, log_dir=log, key=KEY, **{"flush_seconds": 0.05, **options})
        engines.append(e)
        return e

    yield make
    for e in engines:
        e.delivery.close()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.from_entries([
        {"key": KEYS["ad_server"], "role": "ad_server"},
        {"key": KEYS["admin"], "role": "admin"},
        {"key": KEYS["acme"], "role": "advertiser:acme"},
        {"key": KEYS["bobco"], "role": "advertiser:bobco"},
    ])


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
def client(make_client: Callable[..., TestClient], keyring: KeyRing) -> TestClient:
    return make_client(auth=keyring)
