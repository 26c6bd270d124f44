"""Decide requests: what parse_request accepts, how it normalises, and how it refuses."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from targeting.errors import TargetingError
from targeting.request import MAX_LIMIT, Request, parse_request, parse_ts
from targeting.taxonomy import Taxonomy

NOW = dt.datetime(2026, 11, 24, 11, 0, tzinfo=dt.UTC).timestamp()


@pytest.fixture(scope="module")
def tx() -> Taxonomy:
    return Taxonomy.load("rules/taxonomy")


def parse(tx: Taxonomy, **fields: Any) -> Request:
    return parse_request({"user_id": "u1", **fields}, tx, NOW)


# ------------------------------------------------------------------ accepted
def test_minimal_request_defaults(tx: Taxonomy) -> None:
    r = parse(tx)
    assert r == Request(user_id="u1", ts=NOW)
    assert (r.limit, r.floor_cpm, r.explain, r.tags) == (10, 0.0, False, None)  # None: tags unknown


@pytest.mark.parametrize(
    "geo, province, city",
    [
        ({"city": 440300}, 440000, 440300),  # a city implies its province
        ({"city": "深圳"}, 440000, 440300),  # by Chinese name
        ({"city": "shenzhen", "province": "广东"}, 440000, 440300),  # consistent pair, by names
        ({"province": 440000}, 440000, None),  # province only
        ({"city": 110000}, 110000, None),  # a municipality given as a city is the province
        ({"city": "北京"}, 110000, None),  # ... also by name
        ({"city": "吉林市"}, 220000, 220200),  # full name avoids the 吉林 ambiguity
        ({"city": None, "province": None}, None, None),  # explicit nulls mean unknown
    ],
    ids=["city", "city-zh", "pair", "province", "municipality", "municipality-zh", "jilin-city", "nulls"],
)
def test_geo_normalisation(tx: Taxonomy, geo: dict[str, Any], province: int | None, city: int | None) -> None:
    r = parse(tx, geo=geo)
    assert (r.province, r.city) == (province, city)


@pytest.mark.parametrize(
    "ts, expected",
    [
        ("2026-11-24T19:00:00+08:00", NOW),  # Beijing time
        ("2026-11-24T11:00:00Z", NOW),  # UTC with Z
        ("2026-11-24T11:00:00+00:00", NOW),  # UTC with offset
        (NOW, NOW),  # epoch seconds
        (int(NOW), NOW),  # epoch seconds, integer
        (None, NOW),  # missing: now
    ],
    ids=["cst", "z", "utc", "epoch", "epoch-int", "default-now"],
)
def test_ts(tx: Taxonomy, ts: Any, expected: float) -> None:
    assert parse(tx, ts=ts).ts == expected


def test_everything_given(tx: Taxonomy) -> None:
    r = parse_request(
        {"user_id": "u9", "request_id": 42, "ts": "2026-11-24T19:00:00+08:00", "geo": {"city": 310000},
         "gender": "female", "age": 0, "tags": ["investor", "白领丽人", "investor"], "scene": "office",
         "slot": 7, "limit": MAX_LIMIT, "floor_cpm": 0, "explain": True},
        tx, 0.0,
    )
    assert r == Request(
        user_id="u9", ts=NOW, request_id="42", province=310000, city=None, gender="female", age=0,
        tags=frozenset({"investor", "white_collar_women"}), scene="office", slot="7", limit=MAX_LIMIT,
        floor_cpm=0.0, explain=True,
    )


def test_profile_fills_only_what_is_missing(tx: Taxonomy) -> None:
    profile = {"province": 440000, "city": 440300, "gender": "male", "age": 41, "tags": ["car_lover"]}
    r = parse(tx, age=30, tags=[]).with_profile(profile)
    assert (r.province, r.city, r.gender, r.age, r.tags) == (440000, 440300, "male", 30, frozenset())
    r = parse(tx, geo={"province": 110000}).with_profile(profile)
    assert (r.province, r.city) == (110000, None)  # the request's geo wins as a whole
    assert parse(tx).with_profile(None) == parse(tx)


# ------------------------------------------------------------------ refused
@pytest.mark.parametrize(
    "fields, path, fragment",
    [
        ({"age": -3}, "age", "0..120"),  # negative age
        ({"age": "old"}, "age", "whole number"),  # not a number
        ({"age": 30.5}, "age", "whole number"),  # fractional
        ({"age": True}, "age", "whole number"),  # a bool is not an age
        ({"age": 121}, "age", "0..120"),  # beyond the domain
        ({"ts": "2026-11-24T19:00:00"}, "ts", "time zone"),  # ts without a zone
        ({"ts": "2026-11-24"}, "ts", "time zone"),  # a date only
        ({"ts": "yesterday"}, "ts", "ISO 8601"),  # not a timestamp
        ({"ts": [2026, 11, 24]}, "ts", "ISO 8601"),  # wrong type
        ({"ts": float("nan")}, "ts", "finite"),  # NaN epoch
        ({"geo": {"city": "atlantis"}}, "geo.city", "unknown place"),  # unknown city
        ({"geo": {"city": 440399}}, "geo.city", "unknown adcode"),  # unknown city adcode
        ({"geo": {"city": "shenzen"}}, "geo.city", "shenzhen"),  # misspelled: closest named
        ({"geo": {"city": "suzhou"}}, "geo.city", "341300"),  # ambiguous: candidates named
        ({"geo": {"city": 440300, "province": 110000}}, "geo.city", "not in province"),  # inconsistent
        ({"geo": {"province": 440300}}, "geo.province", "not a province"),  # a city as province
        ({"geo": {"country": "CN"}}, "geo.country", "unknown geo field"),  # unknown key
        ({"geo": "深圳"}, "geo", "city"),  # not an object
        ({"tags": ["car_lovr"]}, "tags[0]", "car_lover"),  # unknown tag with close match
        ({"tags": ["investor", 7]}, "tags[1]", "unknown tag"),  # not a tag id
        ({"tags": "investor"}, "tags", "list"),  # a string, not a list
        ({"gender": "M"}, "gender", "male or female"),  # unknown gender
        ({"scene": "cafe"}, "scene", "internet_cafe"),  # unknown scene lists the known
        ({"limit": 0}, "limit", f"1..{MAX_LIMIT}"),  # limit 0
        ({"limit": 1000}, "limit", f"1..{MAX_LIMIT}"),  # oversized limit
        ({"limit": "5"}, "limit", "whole number"),  # text
        ({"floor_cpm": -1}, "floor_cpm", "non-negative"),  # negative floor
        ({"floor_cpm": "1.5"}, "floor_cpm", "non-negative"),  # text
        ({"floor_cpm": float("inf")}, "floor_cpm", "non-negative"),  # infinite
        ({"explain": "yes"}, "explain", "true or false"),  # not a bool
        ({"slot": {"id": 1}}, "slot", "slot"),  # not an id
        ({"request_id": ["r"]}, "request_id", "string"),  # not an id
        ({"user_id": ""}, "user_id", "non-empty"),  # empty user id
        ({"user_id": 7}, "user_id", "string"),  # numeric user id
        ({"user": "u1"}, "user", "unknown field"),  # unknown field
        ({"city": 440300}, "city", "unknown field"),  # geo flattened by mistake
    ],
    ids=[
        "age-negative", "age-old", "age-fraction", "age-bool", "age-121", "ts-no-zone", "ts-date",
        "ts-text", "ts-list", "ts-nan", "city-unknown", "city-adcode", "city-misspelled",
        "city-ambiguous", "city-not-in-province", "province-is-city", "geo-unknown-key",
        "geo-not-object", "tag-unknown", "tag-number", "tags-string", "gender", "scene",
        "limit-0", "limit-1000", "limit-text", "floor-negative", "floor-text", "floor-inf",
        "explain", "slot", "request-id", "user-id-empty", "user-id-number", "unknown-field",
        "flat-city",
    ],
)
def test_bad_request(tx: Taxonomy, fields: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(TargetingError) as ei:
        parse(tx, **fields)
    err = ei.value
    assert err.path == path
    assert fragment in err.message
    assert err.status == 400 and err.to_dict()["path"] == path


def test_missing_user_id(tx: Taxonomy) -> None:
    with pytest.raises(TargetingError) as ei:
        parse_request({"age": 30}, tx, NOW)
    assert ei.value.path == "user_id"


@pytest.mark.parametrize("raw", [None, [], "u1", 5], ids=["null", "list", "string", "number"])
def test_not_an_object(tx: Taxonomy, raw: Any) -> None:
    with pytest.raises(TargetingError, match="JSON object"):
        parse_request(raw, tx, NOW)


def test_batch_paths_are_prefixed(tx: Taxonomy) -> None:
    with pytest.raises(TargetingError) as ei:
        parse_request({"user_id": "u", "geo": {"city": "atlantis"}}, tx, NOW, path="requests[3]")
    assert ei.value.path == "requests[3].geo.city"
    with pytest.raises(TargetingError) as ei:
        parse_request({"user_id": "u", "tags": ["x"]}, tx, NOW, path="requests[0]")
    assert ei.value.path == "requests[0].tags[0]"


def test_parse_ts_rejects_naive_datetime() -> None:
    with pytest.raises(TargetingError) as ei:
        parse_ts(dt.datetime(2026, 11, 24, 19), "requests.ts")
    assert (ei.value.path, ei.value.code) == ("requests.ts", "no_timezone")
    assert parse_ts(dt.datetime(2026, 11, 24, 11, tzinfo=dt.UTC)) == NOW


# ------------------------------------------------------------- known gaps
@pytest.mark.parametrize(
    "ts",
    [1e20, -1e12, 1e15, "0001-01-01T00:00:00+08:00"],
    ids=["epoch-1e20", "epoch-negative", "epoch-1e15", "year-1"],
)
def test_out_of_range_ts_is_refused(tx: Taxonomy, ts: Any) -> None:
    with pytest.raises(TargetingError) as ei:
        parse(tx, ts=ts)
    assert ei.value.path == "ts"
