"""An engine over generated campaigns whose store makes caps, budgets and retargeting bite."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from targeting.batchrequests import request_from_row
from targeting.clicklog import generate_requests
from targeting.compiler import compile_campaigns
from targeting.engine import Engine
from targeting.errors import RulesError
from targeting.rules import validate_campaigns
from targeting.stores.memory import MemoryStore
from targeting.taxonomy import Taxonomy

NOW = dt.datetime(2026, 11, 24, 20, 30, tzinfo=dt.UTC).timestamp()


@pytest.fixture(scope="session")
def tx() -> Taxonomy:
    return Taxonomy.load(Path(__file__).resolve().parents[2] / "rules" / "taxonomy")


def campaign_dicts(n: int, tx: Taxonomy, seed: int) -> list[dict[str, Any]]:
    """Random valid campaigns from ``targeting.gen``; tighter caps and budgets so the store matters."""
    from targeting.gen import generate_campaigns

    camps = generate_campaigns(n, tx, seed=seed)
    rng = random.Random(seed)
    for c in camps:
        if "frequency_cap" in c:
            c["frequency_cap"]["impressions"] = rng.choice((1, 2))
        if "daily_budget" in c:
            c["daily_budget"] = rng.choice((1, 5))
    return camps


def valid_campaigns(dicts: list[dict[str, Any]], tx: Taxonomy) -> tuple[Any, ...]:
    """The campaigns that validate on their own (the generator may emit a few the rules refuse)."""
    out = []
    for d in dicts:
        try:
            out.extend(validate_campaigns([("generated.yaml", [d])], tx))
        except RulesError:
            continue
    assert len(out) > 0.8 * len(dicts)
    return tuple(out)


def make_engine(tx: Taxonomy, n: int = 300, seed: int = 7, model: Any = None, profiles: Any = None) -> Engine:
    return make_engine_from(campaign_dicts(n, tx, seed), tx, model=model, profiles=profiles)


def make_engine_from(dicts: list[dict[str, Any]], tx: Taxonomy, model: Any = None, profiles: Any = None) -> Engine:
    camps = valid_campaigns(dicts, tx)
    index = compile_campaigns(camps, tx, "gen")
    store = MemoryStore(clock=lambda: NOW)
    return Engine(tx, index, store=store, model=model, profiles=profiles, clock=lambda: NOW)


def warm_store(engine: Engine, users: list[str], seed: int = 1, times: dict[str, list[float]] | None = None) -> None:
    """Impressions (caps and spend) and retargeting events for some users. With ``times`` (each
    user's request timestamps), half the impressions fall shortly before one of the user's
    requests, so that hourly and daily cap windows of those requests hold counts."""
    rng = random.Random(seed)
    idx = engine.index
    capped = [c.id for c in idx.campaigns if c.cap_impressions is not None or c.daily_budget is not None]

    def when(user: str) -> float:
        if times and times.get(user) and rng.random() < 0.5:
            return rng.choice(times[user]) - rng.randrange(0, 1200)
        return NOW - rng.randrange(0, 3600)

    rows = []
    for _ in range(3000 if capped else 0):
        u = rng.choice(users)
        rows.append({"user_id": u, "campaign_id": rng.choice(capped), "ts": when(u)})
    out = engine.record_impressions(rows)
    assert out["accepted"] == len(rows), out["errors"][:3]
    advertisers = sorted({c.advertiser for c in idx.campaigns if c.spec.uses_retargeting})
    events = [{"user_id": rng.choice(users), "advertiser": rng.choice(advertisers),
               "event": rng.choice(("visit", "add_to_cart", "purchase", "click")),
               "ts": NOW - rng.randrange(0, 20 * 86400)} for _ in range(3000 if advertisers else 0)]
    engine.record_events(events)


request_dict = request_from_row  # a contract §5 request row as the decide JSON form


class FetchOnly:
    """A store offering only the :class:`StateStore` protocol (as Redis does): the batch
    scorer must read it through ``fetch``, not the memory store's ``user_snapshots``."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def fetch(self, queries: Any) -> Any:
        return self._store.fetch(queries)

    def add_events(self, events: Any, ttl: int) -> None:
        self._store.add_events(events, ttl)

    def add_counters(self, counters: Any) -> None:
        self._store.add_counters(counters)


class Setting:
    """The taxonomy and 400 generated requests, shared by the examples (a short repr: Hypothesis
    prints the arguments of a failing example)."""

    def __init__(self, tx: Taxonomy, rows: pa.Table) -> None:
        self.tx, self.rows = tx, rows

    def __repr__(self) -> str:
        return f"Setting({self.rows.num_rows} requests)"


@pytest.fixture(scope="module")
def setting(tx: Taxonomy, tmp_path_factory: pytest.TempPathFactory) -> Setting:
    path = tmp_path_factory.mktemp("req") / "r.parquet"
    return Setting(tx, pq.read_table(generate_requests(path, 400, taxonomy=tx, seed=5, days=2, end=NOW,
                                                       progress=False)))

