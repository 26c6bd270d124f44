"""Reach against the plain-Python reference evaluator (``targeting.spec.matches``)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from reference import matches

from targeting.audience import AudienceIndex
from targeting.audience.reach import AGE_BANDS, TRAFFIC, slot_share
from targeting.errors import TargetingError, Unavailable
from targeting.spec import SpecError, parse_spec
from targeting.stores import MemoryStore
from targeting.stores.base import Event

from . import strategies
from .conftest import features

NOW = 1_790_000_000.0
TX = strategies.taxonomy()


def parsed(raw, tx, advertiser=None):
    try:
        return parse_spec(raw, tx, advertiser=advertiser)
    except SpecError:
        reject()


def reference(spec, rows, tx):
    return {r["user_id"] for r in rows if matches(spec, features(r), tx)}


@settings(deadline=None)
@given(raw=strategies.spec())
def test_reach_counts_equal_the_reference_evaluator(raw, index, rows):
    tx = TX
    spec = parsed(raw, tx)
    want = reference(spec, rows, tx)
    got = index.reach(spec, breakdown=["gender", "tag"])
    assert got["users"] == len(want)
    assert sum(got["breakdown"]["gender"].values()) == len(want)
    by_tag = {t: sum(1 for r in rows if r["user_id"] in want and t in (r["tags"] or ())) for t in tx.tag_ids}
    assert got["breakdown"]["tag"] == {t: n for t, n in by_tag.items() if n}


@settings(deadline=None)
@given(raw=strategies.spec())
def test_export_writes_exactly_the_matching_users(raw, index, rows, tmp_path_factory):
    import pyarrow.parquet as pq

    tx = TX
    spec = parsed(raw, tx)
    out = tmp_path_factory.mktemp("exp") / "a.parquet"
    n = index.export(spec, out)
    ids = pq.read_table(out).column("user_id").to_pylist()
    assert n == len(ids) == len(set(ids))
    assert set(ids) == reference(spec, rows, tx)


def test_breakdowns_match_the_reference(index, rows, tx):
    spec = parse_spec({"gender": "female", "tags": {"any": ["beauty", "foodie"]}}, tx)
    got = index.reach(spec, breakdown=["province", "city", "gender", "age"])["breakdown"]
    want = [r for r in rows if matches(spec, features(r), tx)]
    prov: dict[str, int] = {}
    city: dict[str, int] = {}
    for r in want:
        p = str(r["province"]) if r["province"] else "unknown"
        c = str(r["city"]) if r["city"] else "unknown"
        prov[p] = prov.get(p, 0) + 1
        city[c] = city.get(c, 0) + 1
    assert got["province"] == prov
    assert got["city"] == city
    assert got["gender"] == {"male": 0, "female": len(want), "unknown": 0}
    bands = {label: sum(1 for r in want if r["age"] is not None and lo <= r["age"] <= hi)
             for label, lo, hi in AGE_BANDS}
    bands["unknown"] = sum(1 for r in want if r["age"] is None)
    assert got["age"] == bands


def test_funnel_applies_dimensions_in_order(index, rows, tx):
    raw = {"geo": ["广东", "江苏"], "gender": "female", "age": [[25, 34]], "tags": {"none": ["gamer"]}}
    spec = parse_spec(raw, tx)
    funnel = index.reach(spec, funnel=True)["funnel"]
    assert [s["step"] for s in funnel] == ["population", "geo", "gender", "age", "tags"]
    partial: dict = {}
    prev = len(rows)
    for step, key in zip(funnel[1:], ["geo", "gender", "age", "tags"]):
        partial[key] = raw[key]
        n = len(reference(parse_spec(partial, tx), rows, tx))
        assert step["users"] == n
        assert step["removed"] == prev - n
        prev = n


def test_overlap_of_two_specs(index, rows, tx):
    a = parse_spec({"gender": "female"}, tx)
    b = {"tags": ["online_shopper"]}
    got = index.reach(a, overlap=b)["overlap"]
    ra, rb = reference(a, rows, tx), reference(parse_spec(b, tx), rows, tx)
    assert got == {"users": len(rb), "both": len(ra & rb), "either": len(ra | rb)}


def test_population_and_impressions_follow_the_time_slots(index, rows, tx):
    everyone = index.reach(parse_spec({}, tx))
    assert everyone["users"] == everyone["population"] == len(rows)
    evening = index.reach(parse_spec({"time": {"hours": ["20-21"]}}, tx))
    assert evening["users"] == len(rows)  # time does not remove users
    share = slot_share(frozenset(d * 48 + h for d in range(7) for h in range(40, 44)))
    assert evening["est_daily_impressions"] == pytest.approx(everyone["est_daily_impressions"] * share, abs=0.1)
    assert 0.1 < share < 0.3  # two evening hours carry far more than 2/24 of the traffic
    assert abs(TRAFFIC.sum() - 1.0) < 1e-9


def test_impressions_sum_daily_impressions_of_matched_users(index, rows, tx):
    spec = parse_spec({"gender": "male", "tags": ["car_lover"]}, tx)
    known = [r["daily_impressions"] for r in rows if r["daily_impressions"] is not None]
    mean = sum(known) / len(known)
    # each user's daily impressions count as a whole number (the index bit-slices them)
    want = sum(round(r["daily_impressions"] if r["daily_impressions"] is not None else mean)
               for r in rows if matches(spec, features(r), tx))
    assert index.reach(spec)["est_daily_impressions"] == pytest.approx(want, rel=1e-4)


def test_scene_is_ignored_for_users_and_noted(index, rows, tx):
    got = index.reach(parse_spec({"scene": {"include": ["office"]}, "gender": "male"}, tx))
    assert got["users"] == len(reference(parse_spec({"gender": "male"}, tx), rows, tx))
    assert any("scene" in n for n in got["notes"])


def test_unknown_breakdown_dimension_is_a_4xx(index, tx):
    with pytest.raises(TargetingError) as e:
        index.reach(parse_spec({}, tx), breakdown=["gender", "height"])
    assert e.value.path == "breakdown[1]"
    assert e.value.to_dict()["code"] == "unknown_dimension"


def test_retargeting_reach_uses_only_the_advertisers_recent_events(index, rows, tx):
    store = MemoryStore(clock=lambda: NOW)
    ids = [r["user_id"] for r in rows[:400]]
    store.add_events([Event(u, "acme", "visit", NOW - 86400 * (i % 20)) for i, u in enumerate(ids)], 86400 * 90)
    store.add_events([Event(u, "other", "visit", NOW) for u in ids[400:]], 86400 * 90)
    store.add_events([Event(u, "acme", "purchase", NOW - 3600) for u in ids[:50]], 86400 * 90)
    spec = parse_spec({"retargeting": {"any": [{"event": "visit", "within_days": 7}],
                                       "none": [{"event": "purchase", "within_days": 7}]}}, tx, advertiser="acme")
    got = index.reach(spec, advertiser="acme", store=store, now=NOW)
    want = {u for i, u in enumerate(ids) if i % 20 <= 7 and i >= 50}
    assert got["users"] == len(want)


def test_retargeting_needs_an_advertiser_and_a_capable_store(index, tx):
    spec = parse_spec({"retargeting": {"any": [{"event": "visit", "within_days": 7}]}}, tx)
    with pytest.raises(TargetingError) as e:
        index.reach(spec, advertiser=None, store=MemoryStore(), now=NOW)
    assert e.value.path == "advertiser"

    class NoListing:
        pass

    with pytest.raises(Unavailable):
        index.reach(spec, advertiser="acme", store=NoListing(), now=NOW)


@settings(deadline=None)
@given(i=st.sampled_from(range(6000)))
def test_lookup_returns_the_profile_row(i, index, rows):
    r = rows[i]
    got = index.lookup(r["user_id"])
    assert got is not None
    want_city = r["city"]
    assert (got["province"], got["city"]) == (r["province"], want_city)
    assert (got["gender"], got["age"]) == (r["gender"], r["age"])
    assert sorted(got["tags"]) == sorted(r["tags"] or [])


@pytest.mark.parametrize("uid", ["", "u9999999999", "nobody", "u000000000", "u00000000000"],
                         ids=["empty", "past-the-end", "before-all", "prefix", "longer"])
def test_lookup_of_unknown_users_is_none(uid, index):
    assert index.lookup(uid) is None


def test_saved_index_maps_back_with_identical_answers(index, tx, tmp_path):
    d = index.save(tmp_path / "idx")
    t0 = time.perf_counter()
    again = AudienceIndex.open(d, tx)
    assert time.perf_counter() - t0 >= 0  # opened without rebuilding (see the next assert)
    assert again.load_report == index.load_report and again.directory == d
    spec = parse_spec({"geo": ["广东"], "tags": {"any": ["foodie"], "none": ["gamer"]}}, tx)
    assert again.reach(spec, breakdown=["age", "tag"]) == index.reach(spec, breakdown=["age", "tag"])
    assert again.lookup("u0000000042") == index.lookup("u0000000042")


def test_parquet_open_caches_the_index_next_to_the_profiles(population, tx, tmp_path):
    import shutil

    src = tmp_path / "profiles"
    shutil.copytree(population, src)
    first = AudienceIndex.open(src, tx, shard_rows=2000)
    assert (tmp_path / "profiles.index" / "manifest.json").exists()
    second = AudienceIndex.open(src, tx, shard_rows=2000)
    assert second.directory == tmp_path / "profiles.index"
    assert second.population == first.population


def test_impressions_of_clauses_with_different_time_slots(index, rows, tx):
    """A user matched by several clauses counts the traffic of the union of their slots."""
    raw = {"any_of": [{"gender": "female", "time": {"hours": ["20-21"]}},
                      {"tags": ["car_lover"], "time": {"days": ["weekends"], "hours": ["8-21"]}}]}
    spec = parse_spec(raw, tx)
    clauses = [(parse_spec(sub, tx), parse_spec(sub, tx).slots) for sub in raw["any_of"]]
    known = [r["daily_impressions"] for r in rows if r["daily_impressions"] is not None]
    mean = sum(known) / len(known)
    want = 0.0
    for r in rows:
        slots: set[int] = set()
        for sub, s in clauses:
            if matches(sub, features(r), tx):
                slots |= s
        if slots:
            di = round(r["daily_impressions"] if r["daily_impressions"] is not None else mean)
            want += di * slot_share(frozenset(slots))
    got = index.reach(spec)
    assert got["est_daily_impressions"] == pytest.approx(want, abs=0.2)
    assert got["users"] == len(reference(spec, rows, tx))


def test_impressions_of_large_selections_come_from_the_sample(index, tx, monkeypatch):
    """Above EXACT_ROWS rows per shard the sum is estimated from a 1/8 row sample."""
    from targeting.audience import reach as reach_mod

    spec = parse_spec({"tags": {"any": ["online_shopper", "deal_seeker"]}}, tx)
    exact = index.reach(spec)["est_daily_impressions"]
    monkeypatch.setattr(reach_mod, "EXACT_ROWS", 10)
    sampled = index.reach(spec)["est_daily_impressions"]
    assert sampled != exact
    assert sampled == pytest.approx(exact, rel=0.15)  # ~2000 matched users, ~250 sampled
    assert all(abs(len(s.sample) * 8 - s.n) < 8 for s in index.shards)


def test_a_store_outage_is_unavailable_not_a_crash(index, tx):
    from targeting.stores import StoreUnavailable

    class Down:
        def users_with_events(self, advertiser, events, since):
            raise StoreUnavailable("timeout")

    spec = parse_spec({"retargeting": {"any": [{"event": "visit", "within_days": 7}]}}, tx, advertiser="acme")
    with pytest.raises(Unavailable, match="timeout"):
        index.reach(spec, advertiser="acme", store=Down(), now=NOW)
