"""One spec, one truth: export(spec) holds exactly the users decide finds eligible.

For random specs (over the real taxonomy, with retargeting) and random users of a
generated population, a user is in ``export(spec)`` iff ``engine.decide`` for that
user (attributes from the loaded profiles, no time, no scene) lists a campaign with
that spec as eligible. Both sides read the same MemoryStore at the same "now".
"""

from __future__ import annotations

import pyarrow.parquet as pq
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from targeting.compiler import compile_campaigns
from targeting.engine import Engine
from targeting.errors import RulesError
from targeting.rules import validate_campaigns
from targeting.spec import SpecError
from targeting.stores import MemoryStore
from targeting.stores.base import Event

from . import strategies
from .conftest import sample_ids

NOW = 1_790_000_000.0
DAY = 86400.0
TX = strategies.taxonomy()


def _store(rows) -> MemoryStore:
    """Events of advertiser ``acme`` (and some of ``rival``) for a third of the users, 0-40 days old."""
    store = MemoryStore(clock=lambda: NOW)
    events = []
    for i, r in enumerate(rows[::3]):
        kind = ("visit", "add_to_cart", "purchase")[i % 3]
        events.append(Event(r["user_id"], "acme", kind, NOW - DAY * (i % 41) - 60))
        if i % 4 == 0:
            events.append(Event(r["user_id"], "rival", "visit", NOW - 60))
    store.add_events(events, int(90 * DAY))
    return store


def _engine(raw_spec, index, store) -> Engine:
    campaign = {"id": "probe", "advertiser": "acme", "status": "active", "bid": {"cpm": 5},
                "category": "retail", "targeting": raw_spec}
    try:
        campaigns = validate_campaigns([("t.yaml", [campaign])], TX)
    except (RulesError, SpecError):
        reject()
    return Engine(TX, compile_campaigns(campaigns, TX, "v"), store=store, audience=index, profiles=index,
                  clock=lambda: NOW)


@settings(deadline=None, max_examples=40)
@given(raw=strategies.spec(with_retargeting=True), seed=st.integers(0, 10_000))
def test_export_equals_decide_eligibility(raw, seed, index, rows, tmp_path_factory):
    store = _store(rows)
    engine = _engine(raw, index, store)
    out = tmp_path_factory.mktemp("truth") / "a.parquet"
    engine.export(raw, out, advertiser="acme")
    exported = set(pq.read_table(out).column("user_id").to_pylist())
    users = sample_ids(rows, 60, seed) + sorted(exported)[:20]
    for u in users:
        answer = engine.decide({"user_id": u, "explain": True})
        eligible = "probe" in answer["explain"]["eligible"]
        assert eligible == (u in exported), (u, answer["explain"], index.lookup(u))
    assert engine.reach(raw, advertiser="acme")["users"] == len(exported)
