"""Impressions and clicks by impression id over HTTP: per-row refusals, each counted once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from deliv import NOW, Clock, TestClient, bearer

from targeting import Engine
from targeting.stores.base import StateQuery

REQ = {"user_id": "u1", "geo": {"city": "深圳"}, "gender": "female", "age": 30, "tags": ["investor"],
       "scene": "office", "slot": "feed", "limit": 3}


def decide(client: TestClient, **extra: Any) -> list[dict[str, Any]]:
    r = client.post("/v1/decide", json={**REQ, **extra}, headers=bearer("ad_server"))
    assert r.status_code == 200, r.text
    return r.json()["decisions"]


def impressions(client: TestClient, rows: list[dict[str, Any]]) -> Any:
    return client.post("/v1/impressions", json={"impressions": rows}, headers=bearer("ad_server"))


def clicks(client: TestClient, rows: list[dict[str, Any]]) -> Any:
    return client.post("/v1/clicks", json={"clicks": rows}, headers=bearer("ad_server"))


def logged(engine: Engine, kind: str) -> list[dict[str, Any]]:
    engine.delivery.writer.flush()
    files = sorted(Path(engine.delivery.writer.directory).glob(f"{kind}/date=*/*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def test_every_decision_carries_a_verifiable_id(client: TestClient, engine: Engine) -> None:
    ds = decide(client)
    assert [d["campaign_id"] for d in ds] == ["acme-spring", "acme-fashion", "bobco-cpc"]
    for d in ds:
        imp = engine.delivery.signer.verify(d["impression_id"])
        assert (imp.user_id, imp.campaign_id, imp.city, imp.gender, imp.age, imp.tags, imp.scene, imp.slot) == \
            ("u1", d["campaign_id"], 440300, "female", 30, ("investor",), "office", "feed")
    assert len({d["impression_id"] for d in ds}) == 3


def test_impression_by_id_is_counted_once_and_logged_with_the_request(client: TestClient, engine: Engine) -> None:
    d = decide(client)[0]
    r = impressions(client, [{"impression_id": d["impression_id"]}])
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0, "errors": []}
    r = impressions(client, [{"impression_id": d["impression_id"]}, {"impression_id": d["impression_id"]}])
    assert r.status_code == 200 and r.json() == {"accepted": 0, "duplicates": 2, "errors": []}
    spend = engine.store.fetch([StateQuery("u1", (), (), ("spend:acme-spring:d20261124",))])[0].shared_counters
    assert spend == (12.5 / 1000,)  # counted toward the budget once
    (row,) = logged(engine, "impressions")
    assert {k: row[k] for k in ("user_id", "campaign_id", "advertiser", "price", "province", "city", "gender", "age",
                                "tags", "scene", "slot", "hour", "weekday")} == {
        "user_id": "u1", "campaign_id": "acme-spring", "advertiser": "acme", "price": 12.5, "province": 440000,
        "city": 440300, "gender": "female", "age": 30, "tags": ["investor"], "scene": "office", "slot": "feed",
        "hour": 10, "weekday": 1}  # 10:00 on a Tuesday in Asia/Shanghai


def test_bad_rows_are_refused_one_by_one(client: TestClient, engine: Engine, clock: Clock) -> None:
    ds = decide(client)
    forged = ds[0]["impression_id"][:-3] + ("AAA" if not ds[0]["impression_id"].endswith("AAA") else "BBB")
    r = impressions(client, [
        {"impression_id": forged},
        {"impression_id": ds[1]["impression_id"], "campaign_id": "bobco-cpc"},  # contradicts the id
        {"impression_id": ds[2]["impression_id"], "price": 2.5},
        {"user_id": "u9", "campaign_id": "nope"},
        {"impression_id": ds[1]["impression_id"], "ts": "yesterday"},
    ])
    body = r.json()
    assert r.status_code == 200 and body["accepted"] == 1
    assert [(e["index"], e["code"], e["path"]) for e in body["errors"]] == [
        (0, "bad_impression_id", "impressions[0].impression_id"),
        (1, "invalid", "impressions[1].campaign_id"),
        (3, "unknown_campaign", "impressions[3].campaign_id"),
        (4, "invalid", "impressions[4].ts"),
    ]
    assert [r["price"] for r in logged(engine, "impressions")] == [2.5]
    clock.now += 3601  # the id of a decision an hour old no longer records an impression
    r = impressions(client, [{"impression_id": ds[0]["impression_id"]}])
    assert r.status_code == 400 and r.json()["error"]["code"] == "expired"


def test_a_rejected_row_does_not_use_up_its_id(client: TestClient) -> None:
    d = decide(client)[0]
    assert impressions(client, [{"impression_id": d["impression_id"], "price": -1}]).status_code == 400
    assert impressions(client, [{"impression_id": d["impression_id"]}]).json()["accepted"] == 1


def test_clicks(client: TestClient, engine: Engine, clock: Clock) -> None:
    ds = decide(client)
    a, b, c = (d["impression_id"] for d in ds)
    r = clicks(client, [{"impression_id": a}])  # no impression reported yet
    assert r.status_code == 400 and r.json()["error"]["errors"][0]["code"] == "unknown_impression"
    impressions(client, [{"impression_id": a, "ts": NOW + 1}, {"impression_id": b, "ts": NOW + 1},
                         {"impression_id": c, "ts": NOW + 1}])
    clock.now += 60
    r = clicks(client, [
        {"impression_id": a},
        {"impression_id": a},  # the same click twice in one call
        {"impression_id": b, "ts": NOW},  # before its impression
        {"impression_id": c, "ts": NOW + 2 * 86400},  # in the future
        {"impression_id": "forged" * 10},
        {"impression_id": c, "extra": 1},
    ])
    body = r.json()
    assert r.status_code == 200 and (body["accepted"], body["duplicates"]) == (1, 1)
    assert [(e["index"], e["code"]) for e in body["errors"]] == [
        (2, "before_impression"), (3, "invalid"), (4, "bad_impression_id"), (5, "invalid")]
    assert clicks(client, [{"impression_id": a}]).json() == {"accepted": 0, "duplicates": 1, "errors": []}
    clock.now = NOW + 1 + 86400 + 10
    r = clicks(client, [{"impression_id": b}])
    assert r.status_code == 400 and r.json()["error"]["errors"][0]["code"] == "too_late"
    (row,) = logged(engine, "clicks")
    assert (row["campaign_id"], row["advertiser"], row["user_id"], row["city"]) == ("acme-spring", "acme", "u1", 440300)
    assert row["impression_ts"].timestamp() == NOW + 1 and row["ts"].timestamp() == NOW + 60
    # the click is the user's retargeting "click" event for the advertiser
    (state,) = engine.store.fetch([StateQuery("u1", ("acme",))])
    assert state.events[("acme", "click")] == NOW + 60


def test_clicks_need_the_ad_server_role(client: TestClient) -> None:
    r = client.post("/v1/clicks", json={"clicks": []}, headers=bearer("acme"))
    assert r.status_code == 403
    r = client.post("/v1/clicks", json={"click": []}, headers=bearer("ad_server"))
    assert r.status_code == 400 and r.json()["error"]["path"] == "click"


def test_without_a_log_ids_and_clicks_still_work(make_engine: Callable[..., Engine],
                                                 make_client: Callable[..., TestClient], keyring: Any) -> None:
    e = make_engine(log=None)
    c = make_client(engine=e, auth=keyring)
    d = decide(c)[0]
    assert impressions(c, [{"impression_id": d["impression_id"]}]).json()["accepted"] == 1
    assert clicks(c, [{"impression_id": d["impression_id"]}]).json()["accepted"] == 1
    assert c.get("/healthz").json()["log"] == "off"


@pytest.mark.redis
def test_counted_once_across_processes_sharing_redis(make_engine: Callable[..., Engine], fresh_redis: str) -> None:
    """Two engines (two servers) on one Redis: a repeat reaching the other one is still a repeat."""
    from targeting.stores.redis import RedisStore

    one = make_engine(store=RedisStore.from_url(fresh_redis, timeout_ms=1000))
    two = make_engine(store=RedisStore.from_url(fresh_redis, timeout_ms=1000), log=None)
    (d,) = one.decide({**REQ, "limit": 1})["decisions"]
    row = [{"impression_id": d["impression_id"]}]
    assert one.record_impressions(row)["accepted"] == 1
    assert two.record_impressions(row) == {"accepted": 0, "duplicates": 1, "errors": []}
    assert two.delivery.record_clicks(two, row)["accepted"] == 1  # the impression is known everywhere
    assert one.delivery.record_clicks(one, row) == {"accepted": 0, "duplicates": 1, "errors": []}
    spend = one.store.fetch([StateQuery("u1", (), (), ("spend:acme-spring:d20261124",))])[0].shared_counters
    assert spend == (pytest.approx(12.5 / 1000),)
