"""Every contract route through the TestClient: happy paths and what they change."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import RecordingAudience, RecordingJobs
from svc import TestClient

from service.app import INLINE_BATCH
from targeting import Engine
from targeting.stores import StoreUnavailable

CONTRACT_PATHS = [
    "/v1/decide", "/v1/decide/batch", "/v1/reach", "/v1/audiences/export", "/v1/audiences/export/{job}",
    "/v1/events", "/v1/impressions", "/v1/campaigns", "/v1/campaigns/reload", "/healthz", "/metrics",
]


def decide(client: TestClient, **req: Any) -> dict[str, Any]:
    r = client.post("/v1/decide", json={"user_id": "u1", **req})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


def test_decide_ranks_by_ecpm_and_explains(client: TestClient) -> None:
    a = decide(client, request_id="r1", geo={"city": "深圳"}, gender="female", age=30, explain=True)
    assert a["request_id"] == "r1"
    assert [d["campaign_id"] for d in a["decisions"]] == ["acme-spring", "bobco-cpc"]
    assert a["decisions"][0] == {"campaign_id": "acme-spring", "advertiser": "acme", "ecpm": 12.5,
                                 "pctr": pytest.approx(0.004), "bid": {"cpm": 12.5}}
    assert a["eligible"] == 2 and a["degraded"] == []
    assert a["explain"]["eligible"] == ["acme-spring", "bobco-cpc"]
    # no visit on record; 10:00 is outside 0-5 h
    assert a["explain"]["rejected"] == {"acme-retarget": "retargeting", "bobco-night": "time"}


def test_decide_limit_and_floor(client: TestClient) -> None:
    a = decide(client, geo={"city": 440300}, gender="female", age=30, limit=1)
    assert [d["campaign_id"] for d in a["decisions"]] == ["acme-spring"]
    b = decide(client, geo={"city": 440300}, gender="female", age=30, floor_cpm=10)
    assert [d["campaign_id"] for d in b["decisions"]] == ["acme-spring"] and b["eligible"] == 1


def test_batch_answers_in_order_with_errors_in_place(client: TestClient) -> None:
    reqs = [{"request_id": "a", "user_id": "u1", "age": 30}, {"request_id": "b", "user_id": "u2", "age": -3},
            {"request_id": "c", "user_id": "u3", "gender": "female", "geo": {"province": "广东"}}]
    r = client.post("/v1/decide/batch", json={"requests": reqs})
    assert r.status_code == 200
    out = r.json()["responses"]
    assert [x["request_id"] for x in out] == ["a", "b", "c"]
    assert [d["campaign_id"] for d in out[0]["decisions"]] == ["bobco-cpc"]
    assert out[1]["error"]["path"] == "requests[1].age"
    assert [d["campaign_id"] for d in out[2]["decisions"]] == ["acme-spring"]


@pytest.mark.parametrize("n", [INLINE_BATCH, INLINE_BATCH + 1, 1000])
def test_batches_inline_and_offloaded_answer_the_same(client: TestClient, n: int) -> None:
    """Up to INLINE_BATCH requests a batch runs on the event loop, beyond it in the threadpool:
    same answers either way, each equal to a single decide of the same request."""
    reqs = [{"request_id": f"r{i}", "user_id": f"u{i}", "age": 20 + i % 40,
             "gender": ["male", "female"][i % 2]} for i in range(n)]
    out = client.post("/v1/decide/batch", json={"requests": reqs}).json()["responses"]
    assert [x["request_id"] for x in out] == [r["request_id"] for r in reqs]
    for i in (0, n // 2, n - 1):
        assert out[i] == client.post("/v1/decide", json=reqs[i]).json()


def test_impressions_count_toward_frequency_caps(client: TestClient) -> None:
    assert [d["campaign_id"] for d in decide(client, age=30)["decisions"]] == ["bobco-cpc"]
    r = client.post("/v1/impressions", json={"impressions": [
        {"user_id": "u1", "campaign_id": "bobco-cpc", "ts": "2026-11-24T09:59:00+08:00", "price": 2.0}]})
    assert r.status_code == 200 and r.json() == {"accepted": 1, "errors": []}
    after = decide(client, age=30, explain=True)
    assert after["decisions"] == [] and after["explain"]["rejected"]["bobco-cpc"] == "frequency_cap"
    assert decide(client, user_id="u2", age=30)["decisions"][0]["campaign_id"] == "bobco-cpc"  # per user


def test_impressions_partial_and_all_bad(client: TestClient) -> None:
    r = client.post("/v1/impressions", json={"impressions": [
        {"user_id": "u1", "campaign_id": "acme-spring"}, {"user_id": "u1", "campaign_id": "nope"}]})
    assert r.status_code == 200
    assert r.json()["accepted"] == 1 and r.json()["errors"][0]["path"] == "impressions[1].campaign_id"
    r = client.post("/v1/impressions", json={"impressions": [{"user_id": "u1", "campaign_id": "nope"}]})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "unknown_campaign" and err["path"] == "impressions[0].campaign_id"
    assert len(err["errors"]) == 1


def test_events_enable_retargeting(client: TestClient) -> None:
    pytest.importorskip("targeting.events")
    r = client.post("/v1/events", json={"events": [
        {"user_id": "u9", "advertiser": "acme", "event": "visit", "ts": "2026-11-20T12:00:00+08:00"}]})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert "acme-retarget" in [d["campaign_id"] for d in decide(client, user_id="u9")["decisions"]]


def test_campaigns_lists_the_index(client: TestClient, engine: Engine) -> None:
    body = client.get("/v1/campaigns").json()
    assert body["index_version"] == engine.index.version and body["count"] == 4
    by_id = {c["id"]: c for c in body["campaigns"]}
    assert by_id["bobco-cpc"]["frequency_cap"] == {"impressions": 1, "per": "day"}
    assert by_id["acme-spring"]["bid"] == {"cpm": 12.5}


def test_healthz(client: TestClient, engine: Engine) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "index_version": engine.index.version}


def test_reach_and_export_refuse_without_profiles(client: TestClient) -> None:
    for path in ("/v1/reach", "/v1/audiences/export"):
        r = client.post(path, json={"targeting": {"gender": "female"}})
        assert r.status_code == 409, path
        assert r.json()["error"]["code"] == "unavailable" and r.json()["error"]["path"] == "profiles"


def test_reach_operator_view_for_admin(make_client: Callable[..., TestClient], engine: Engine,
                                       keyring: Any) -> None:
    engine.audience = aud = RecordingAudience(users=1234)
    c = make_client(auth=keyring)
    r = c.post("/v1/reach", json={"targeting": {"gender": "female"}, "breakdown": ["province"]},
               headers={"Authorization": "Bearer admin-key-0123456789abcdef"})
    assert r.status_code == 200, r.text
    assert r.json()["users"] == 1234  # exact, not rounded
    assert aud.calls[0]["breakdown"] == ["province"] and aud.calls[0]["advertiser"] is None
    assert aud.calls[0]["spec"].gender == frozenset({"female"})


@pytest.mark.parametrize("mode", ["open", "advertiser"])
def test_reach_advertiser_view(make_client: Callable[..., TestClient], engine: Engine, keyring: Any,
                               mode: str) -> None:
    pytest.importorskip("targeting.audience.privacy")
    engine.audience = RecordingAudience(users=1234)
    c = make_client(auth=keyring if mode == "advertiser" else None)
    headers = {"Authorization": "Bearer acme-key-0123456789abcdef"} if mode == "advertiser" else {}
    r = c.post("/v1/reach", json={"targeting": {"gender": "female"}}, headers=headers)
    assert r.status_code == 200, r.text
    # contract §4: advertiser-facing counts are rounded to 2 significant digits (after noise)
    users = r.json()["users"]
    assert users % 100 == 0 and 1100 <= users <= 1400 and r.json()["below_threshold"] is False


def test_reach_retargeting_needs_an_advertiser(make_client: Callable[..., TestClient], engine: Engine) -> None:
    engine.audience = aud = RecordingAudience()
    c = make_client()
    spec = {"retargeting": {"any": [{"event": "visit", "within_days": 7}]}}
    r = c.post("/v1/reach", json={"targeting": spec})
    assert r.status_code == 400 and r.json()["error"]["path"] == "advertiser"
    assert not aud.calls


def test_export_job_lifecycle(make_client: Callable[..., TestClient], engine: Engine, tmp_path: Path) -> None:
    engine.audience = RecordingAudience()
    jobs = RecordingJobs(tmp_path)
    c = make_client(jobs=jobs)
    r = c.post("/v1/audiences/export", json={"targeting": {"tags": {"any": ["investor"]}}, "format": "csv",
                                             "advertiser": "acme", "hash_salt": "s"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert "path" not in job  # no server paths leak
    assert jobs.started[0] == ({"tags": {"any": ["investor"]}}, "acme", "csv", "s")
    state = c.get(f"/v1/audiences/export/{job['id']}").json()
    assert state["state"] == "done" and state["download"] == f"/v1/audiences/export/{job['id']}/file"
    for url in (f"/v1/audiences/export/{job['id']}?download=1", f"/v1/audiences/export/{job['id']}/file"):
        f = c.get(url)
        assert f.status_code == 200 and f.text == "user_id\nu1\nu2\n"
        assert f.headers["content-type"].startswith("text/csv")
        assert f"audience-{job['id']}.csv" in f.headers["content-disposition"]
    assert c.get("/v1/audiences/export/job-99").status_code == 404


def test_reload_keeps_the_version_of_unchanged_rules(client: TestClient, engine: Engine) -> None:
    r = client.post("/v1/campaigns/reload")
    assert r.status_code == 200
    assert r.json() == {"index_version": engine.index.version, "previous_version": engine.index.version,
                        "campaigns": 4}


class DownStore:
    """A store that is always down (what a dead Redis looks like to the engine)."""

    def fetch(self, queries: Sequence[Any]) -> list[Any]:
        raise StoreUnavailable("down")

    def add_events(self, events: Sequence[Any], ttl: int) -> None:
        raise StoreUnavailable("down")

    def add_counters(self, counters: Sequence[Any]) -> None:
        raise StoreUnavailable("down")


def test_metrics(make_client: Callable[..., TestClient], rules_dir: Path) -> None:
    eng = Engine.load(rules_dir, store=DownStore())
    c = make_client(engine=eng, offload=False)
    a = decide(c, age=30)
    assert a["degraded"] == ["store_unavailable"] and a["decisions"] == []  # the capped campaign is skipped
    decide(c, age=50)  # acme-retarget (no other constraint) needs the store here too
    assert c.post("/v1/decide", json={"user_id": "u", "age": "old"}).status_code == 400
    text = c.get("/metrics").text
    lines = set(text.splitlines())
    assert 'targeting_http_requests_total{route="/v1/decide",method="POST",status="200"} 2' in lines
    assert 'targeting_http_requests_total{route="/v1/decide",method="POST",status="400"} 1' in lines
    assert 'targeting_http_request_duration_seconds_count{route="/v1/decide"} 3' in lines
    assert 'targeting_http_request_duration_seconds_bucket{route="/v1/decide",le="+Inf"} 3' in lines
    assert 'targeting_decisions_degraded_total{reason="store_unavailable"} 2' in lines
    assert "targeting_decisions_total 2" in lines and "targeting_decide_invalid_total 1" in lines
    assert f'targeting_index_info{{version="{eng.index.version}"}} 1' in lines
    assert "targeting_campaigns 4" in lines
    assert c.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")


def test_metrics_show_the_store_breaker(make_client: Callable[..., TestClient], engine: Engine) -> None:
    class Breakered(DownStore):
        breaker_state = "open"
        failures = 3
        short_circuits = 7

    engine.store = Breakered()
    text = make_client(offload=False).get("/metrics").text
    assert 'targeting_store_breaker_state{state="open"} 1' in text
    assert 'targeting_store_breaker_state{state="closed"} 0' in text
    assert "targeting_store_short_circuits_total 7" in text


def test_openapi_documents_every_contract_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(CONTRACT_PATHS) <= set(spec["paths"])
    assert "requestBody" in spec["paths"]["/v1/decide"]["post"]
    assert "/v1/noop" not in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_noop_route_only_for_benchmarks(make_client: Callable[..., TestClient]) -> None:
    assert make_client().post("/v1/noop", json={"user_id": "u"}).status_code == 404
    r = make_client(bench=True).post("/v1/noop", json={"request_id": "x", "user_id": "u"})
    assert r.status_code == 200 and r.json() == {"request_id": "x", "decisions": []}


def test_root_serves_the_ui_or_the_docs(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<html>ui</html>")
    (static / "app.js").write_text("console.log(1)")
    c = make_client(static_dir=static)
    assert c.get("/").text == "<html>ui</html>"
    assert c.get("/static/app.js").text == "console.log(1)"
    r = make_client(static_dir=tmp_path / "none").get("/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/docs"


def test_decide_offloaded_to_the_threadpool_answers_the_same(make_client: Callable[..., TestClient]) -> None:
    req = {"user_id": "u1", "geo": {"city": 440300}, "gender": "female", "age": 30, "explain": True}
    inline = make_client(offload=False).post("/v1/decide", json=req).json()
    pooled = make_client(offload=True).post("/v1/decide", json=req).json()
    assert inline == pooled


def test_unexpected_errors_are_a_logged_500(engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    from service import Settings, create_app

    def boom(request: Any) -> dict[str, Any]:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(engine, "decide", boom)
    with TestClient(create_app(engine, Settings()), raise_server_exceptions=False) as c:
        r = c.post("/v1/decide", json={"user_id": "u"})
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal", "message": "internal error; it has been logged", "path": None}}
    assert "kaboom" not in r.text
    assert any("unexpected error on POST /v1/decide" in rec.message and rec.exc_info for rec in caplog.records)


def test_lifespan_closes_what_it_owns(engine: Engine, tmp_path: Path) -> None:
    from service import Settings, create_app

    closed: list[str] = []

    class Jobs(RecordingJobs):
        def close(self) -> None:
            closed.append("jobs")

    class Store(DownStore):
        def close(self) -> None:
            closed.append("store")

    engine.store = Store()
    with TestClient(create_app(engine, Settings(jobs=Jobs(tmp_path), close_engine=True))) as c:
        assert c.get("/healthz").status_code == 200
        assert closed == []
    assert closed == ["jobs", "store"]
