"""One advertiser key must not stall the ad server (issue 19): hostile specs are refused
cheaply, audience work is admitted per caller, ids follow one rule on every route,
advertisers see no server paths, and the isolation counters are in /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from fakes import RecordingAudience
from svc import NOW, TestClient, bearer

from service.auth import KeyRing
from service.offload import AudiencePool, Busy
from targeting import Engine
from targeting.spec import SpecError, parse_spec

# the issue's body: 15,000 alternatives, 778 KB
ISSUE_SPEC = {"any_of": [{"any_of": [{"gender": "female"}, {"age": [[i % 100, 100]]}]} for i in range(15000)]}


def fastest(fn: Callable[[], Any], runs: int = 5) -> float:
    """The best of ``runs`` wall times: a busy shared machine slows some runs, not all of them."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_the_issue_body_is_refused_in_under_50_ms(make_client: Callable[..., TestClient], engine: Engine,
                                                   keyring: KeyRing) -> None:
    """Explicitly asked for by the issue, so this one test asserts a timing: the best of
    five runs (robust to a noisy machine) with a margin of ~10x over what it takes here."""
    engine.audience = aud = RecordingAudience()
    c = make_client(auth=keyring)

    raw = orjson.dumps({"targeting": ISSUE_SPEC})  # encoded once: the client's time is not the server's
    assert len(raw) > 750_000

    def over_http() -> None:
        r = c.post("/v1/reach", content=raw, headers={**bearer("acme"), "content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"  # the body limit

    def parse() -> None:  # and the parser alone, were the body limit raised
        with pytest.raises(SpecError) as e:
            parse_spec(ISSUE_SPEC, engine.taxonomy, path="targeting")
        assert e.value.problems == [("targeting.any_of", "any_of has 15000 alternatives; at most 64")]

    assert fastest(over_http) < 0.050
    assert fastest(parse) < 0.050
    assert not aud.calls


@pytest.mark.parametrize("spec,path,reason", [
    # each alternative is one more clause: stop at the 65th, whatever follows
    ({"any_of": [{"any_of": [{"gender": "female"}, {"age": [[i, 100]]}]} for i in range(40)]},
     "targeting.any_of", "more than 64 alternatives"),
    ({"any_of": [{"gender": "male"}] * 2000}, "targeting.any_of", "2000 alternatives"),
    ({"geo": {"include": [440300] * 5000}}, "targeting.geo.include", "more than 4096 values"),
    ({"tags": {"any": ["x" * 1000]}}, "targeting.tags.any[0]", "at most 64 characters"),
    ({"any_of": [{"any_of": [{"any_of": [{"any_of": [{"any_of": [{"any_of": [{"any_of": [{"any_of": [
        {"any_of": [{"gender": "male"}]}]}]}]}]}]}]}]}]}, "targeting.any_of[0]", "nested more than 8"),
], ids=["nested-alternatives", "flat-alternatives", "values", "long-name", "deep-any-of"])
def test_parse_limits_within_the_body_limit(make_client: Callable[..., TestClient], engine: Engine,
                                            spec: dict[str, Any], path: str, reason: str) -> None:
    engine.audience = RecordingAudience()
    r = make_client().post("/v1/reach", json={"targeting": spec})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_spec" and err["path"].startswith(path) and reason in err["message"]


def test_many_unknown_names_stop_after_a_few_problems(engine: Engine) -> None:
    with pytest.raises(SpecError) as e:  # each unknown name costs a fuzzy search: stop early
        parse_spec({"geo": [f"nowhere-{i}" for i in range(3000)]}, engine.taxonomy)
    assert len(e.value.problems) == 10


def test_reach_is_admitted_per_caller(make_client: Callable[..., TestClient], engine: Engine,
                                      keyring: KeyRing) -> None:
    engine.audience = RecordingAudience()
    c = make_client(auth=keyring)
    pool: AudiencePool = c.app.state.targeting.pool  # type: ignore[attr-defined]
    body = {"targeting": {"gender": "female"}}
    with pool.slot("advertiser:acme"), pool.slot("advertiser:acme"):  # acme's two requests in flight
        r = c.post("/v1/reach", json=body, headers=bearer("acme"))
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_requests"
        assert r.headers["retry-after"] == "1"
        busy = c.post("/v1/audiences/export", json=body, headers=bearer("acme"))
        assert busy.status_code == 429
        assert c.post("/v1/reach", json=body, headers=bearer("bobco")).status_code == 200  # others go on
    assert c.post("/v1/reach", json=body, headers=bearer("acme")).status_code == 200
    assert pool.metrics()["refused_advertiser"] == 2 and pool.metrics()["in_flight"] == 0
    text = c.get("/metrics", headers=bearer("admin")).text
    assert 'targeting_audience_refused_total{reason="advertiser_busy"} 2' in text


def test_the_pool_bounds_all_callers_together(engine: Engine) -> None:
    pool = AudiencePool(engine, workers=1, per_advertiser=10)
    slots = [pool.slot(f"advertiser:a{i}") for i in range(pool.max_in_flight)]
    for s in slots:
        s.__enter__()
    with pytest.raises(Busy), pool.slot("advertiser:late"):
        pass
    for s in slots:
        s.__exit__(None, None, None)
    with pool.slot("advertiser:late"):
        assert pool.metrics()["in_flight"] == 1


# ------------------------------------------------------------------ ids
BAD_IDS = [
    (" ", "blank"),
    ("x" * 257, "at most 256 bytes"),
    ("深" * 86, "at most 256 bytes"),  # 258 bytes of UTF-8 in 86 characters
    ("a\nb", "printable"),
    ("a\x00b", "printable"),
    ("x" * (1 << 20), "at most 256 bytes"),  # the issue's 1 MB id
]
ROUTES = {
    "decide": ("/v1/decide", lambda uid: {"user_id": uid}, "user_id"),
    "events": ("/v1/events", lambda uid: {"events": [{"user_id": uid, "advertiser": "acme", "event": "visit",
                                                      "ts": NOW}]}, "events[0].user_id"),
    "impressions": ("/v1/impressions", lambda uid: {"impressions": [{"user_id": uid,
                                                                     "campaign_id": "acme-spring"}]},
                    "impressions[0].user_id"),
}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("uid,reason", BAD_IDS, ids=["blank", "257-bytes", "258-utf8-bytes", "newline", "nul",
                                                    "1-MB"])
def test_one_id_rule_on_every_route(make_client: Callable[..., TestClient], route: str, uid: str,
                                    reason: str) -> None:
    url, body, path = ROUTES[route]
    r = make_client(max_body_bytes=2 << 20).post(url, json=body(uid))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    first = (err.get("errors") or [err])[0]
    assert first["path"] == path and reason in first["message"], err


@pytest.mark.parametrize("route", list(ROUTES))
def test_ids_up_to_256_bytes_are_accepted(client: TestClient, route: str) -> None:
    url, body, _ = ROUTES[route]
    for uid in ("u" * 256, "深" * 85 + "x", "user with spaces"):  # 256, 256 and 16 bytes
        r = client.post(url, json=body(uid))
        assert r.status_code == 200, r.text


def test_request_id_and_slot_follow_the_id_rule(client: TestClient) -> None:
    for field in ("request_id", "slot"):
        r = client.post("/v1/decide", json={"user_id": "u1", field: "a\tb"})
        assert r.status_code == 400 and r.json()["error"]["path"] == field


# ------------------------------------------------------- campaigns, metrics
def test_advertisers_see_campaign_file_names_not_paths(keyed: TestClient, rules_dir: Path) -> None:
    mine = keyed.get("/v1/campaigns", headers=bearer("acme")).json()["campaigns"]
    assert mine and {c["source"] for c in mine} == {"test.yaml"}
    assert all(str(rules_dir) not in str(c) for c in mine)
    ops = keyed.get("/v1/campaigns", headers=bearer("admin")).json()["campaigns"]
    assert {Path(c["source"]).name for c in ops} == {"test.yaml"}


def test_isolation_metrics_are_exposed(client: TestClient) -> None:
    text = client.get("/metrics").text
    for name in ("targeting_audience_refused_total", "targeting_audience_in_flight",
                 "targeting_export_jobs_started_total", "targeting_export_jobs_finished_total",
                 "targeting_export_jobs_refused_total", "targeting_export_disk_full_total",
                 "targeting_export_files_expired_total", "targeting_export_storage_bytes",
                 "targeting_export_jobs_active", "targeting_memory_store_users",
                 "targeting_memory_store_evicted_users_total"):
        assert f"# TYPE {name} " in text, name
