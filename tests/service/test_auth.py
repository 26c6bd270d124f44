"""API keys and roles (contract §4 Access; issue 4 item 6): who may call what,
and advertiser A's key used with advertiser B's audiences, jobs and ids."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakes import RecordingAudience, RecordingJobs
from svc import KEYS, TestClient, bearer

from service.auth import KeyRing
from targeting import Engine, TargetingError

DECIDE = {"user_id": "u1", "age": 30}
# advertisers get the privacy view; until targeting.audience.privacy lands that is a clear 409
ADVERTISER_REACH: Any = "ok" if importlib.util.find_spec("targeting.audience.privacy") else 409
RT = {"retargeting": {"any": [{"event": "visit", "within_days": 7}]}}


@pytest.fixture
def world(make_client: Callable[..., TestClient], engine: Engine, keyring: KeyRing,
          tmp_path: Path) -> tuple[TestClient, str]:
    """A keyed app with a (recording) audience and one export job that belongs to bobco."""
    engine.audience = RecordingAudience()
    c = make_client(auth=keyring, jobs=RecordingJobs(tmp_path))
    r = c.post("/v1/audiences/export", json={"targeting": {}}, headers=bearer("bobco"))
    assert r.status_code == 202, r.text
    return c, r.json()["id"]


# (method, path, body, {role: expected status}); "ok" = any 2xx
ROLE_TABLE = [
    ("POST", "/v1/decide", DECIDE, {"ad_server": "ok", "admin": "ok", "acme": 403}),
    ("POST", "/v1/decide/batch", {"requests": [DECIDE]}, {"ad_server": "ok", "admin": "ok", "acme": 403}),
    ("POST", "/v1/impressions", {"impressions": [{"user_id": "u1", "campaign_id": "bobco-cpc"}]},
     {"ad_server": "ok", "admin": "ok", "acme": 403}),
    ("POST", "/v1/reach", {"targeting": {}}, {"ad_server": 403, "admin": "ok", "acme": ADVERTISER_REACH}),
    ("POST", "/v1/audiences/export", {"targeting": {}}, {"ad_server": 403, "admin": 202, "acme": 202}),
    ("GET", "/v1/campaigns", None, {"ad_server": "ok", "admin": "ok", "acme": "ok"}),
    ("POST", "/v1/campaigns/reload", None, {"ad_server": 403, "admin": "ok", "acme": 403}),
    ("GET", "/metrics", None, {"ad_server": 403, "admin": "ok", "acme": 403}),
    ("GET", "/v1/taxonomy", None, {"ad_server": "ok", "admin": "ok", "acme": "ok"}),
]


def call(c: TestClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return c.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("method,path,body,expect", ROLE_TABLE, ids=[f"{m} {p}" for m, p, _, _ in ROLE_TABLE])
def test_roles(world: tuple[TestClient, str], method: str, path: str, body: Any, expect: dict) -> None:
    c, _ = world
    for who, status in expect.items():
        r = call(c, method, path, body, bearer(who))
        if status == "ok":
            assert 200 <= r.status_code < 300, (who, r.text)
        else:
            assert r.status_code == status, (who, r.text)
            if status == 403:
                assert r.json()["error"]["code"] == "forbidden"
    # no key, a wrong key, another scheme: 401 with the error shape
    for headers in ({}, {"Authorization": "Bearer not-a-key-at-all-000"}, {"Authorization": f"Basic {KEYS['admin']}"}):
        r = call(c, method, path, body, headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"


def test_healthz_and_docs_need_no_key(keyed: TestClient) -> None:
    assert keyed.get("/healthz").status_code == 200
    assert keyed.get("/openapi.json").status_code == 200


# advertiser acme's key used with bobco's audiences, jobs and ids
CROSS_TENANT = [
    ("reach for bobco", "POST", "/v1/reach", {"targeting": {}, "advertiser": "bobco"}, 403),
    ("reach on bobco's events", "POST", "/v1/reach", {"targeting": {"any_of": [{"retargeting": {
        "any": [{"event": "visit", "within_days": 7, "advertiser": "bobco"}]}}]}}, 403),
    ("export for bobco", "POST", "/v1/audiences/export", {"targeting": RT, "advertiser": "bobco"}, 403),
    ("export on bobco's events", "POST", "/v1/audiences/export", {"targeting": {"retargeting": {
        "none": [{"event": "purchase", "within_days": 7, "advertiser": "bobco"}]}}}, 403),
    ("bobco's job", "GET", "/v1/audiences/export/{job}", None, 404),
    ("bobco's job file", "GET", "/v1/audiences/export/{job}/file", None, 404),
    ("bobco's job download", "GET", "/v1/audiences/export/{job}?download=1", None, 404),
    ("events as bobco", "POST", "/v1/events", {"events": [
        {"user_id": "u1", "advertiser": "acme", "event": "visit"},
        {"user_id": "u1", "advertiser": "bobco", "event": "visit"}]}, 403),
    ("decide", "POST", "/v1/decide", DECIDE, 403),
    ("impressions of bobco's campaign", "POST", "/v1/impressions",
     {"impressions": [{"user_id": "u1", "campaign_id": "bobco-cpc"}]}, 403),
    ("reload", "POST", "/v1/campaigns/reload", None, 403),
]


@pytest.mark.parametrize("name,method,path,body,status", CROSS_TENANT, ids=[c[0] for c in CROSS_TENANT])
def test_advertiser_cannot_reach_another_advertiser(world: tuple[TestClient, str], name: str, method: str,
                                                    path: str, body: Any, status: int) -> None:
    c, job = world
    r = call(c, method, path.format(job=job), body, bearer("acme"))
    assert r.status_code == status, r.text
    # the owner (or an admin) gets through the same door
    if "job" in path:
        assert call(c, method, path.format(job=job), body, bearer("bobco")).status_code == 200
        assert call(c, method, path.format(job=job), body, bearer("admin")).status_code == 200


def test_advertiser_reach_acts_for_itself(world: tuple[TestClient, str], engine: Engine) -> None:
    c, _ = world
    r = c.post("/v1/reach", json={"targeting": RT}, headers=bearer("acme"))
    assert r.status_code in (200, 409), r.text  # 409 until the privacy module lands
    assert engine.audience.calls[-1]["advertiser"] == "acme"  # type: ignore[union-attr]
    r = c.post("/v1/reach", json={"targeting": RT, "advertiser": "acme"}, headers=bearer("acme"))
    assert r.status_code in (200, 409)


def test_advertiser_sees_only_its_campaigns(world: tuple[TestClient, str]) -> None:
    c, _ = world
    mine = c.get("/v1/campaigns", headers=bearer("acme")).json()
    assert {x["id"] for x in mine["campaigns"]} == {"acme-spring", "acme-retarget"}
    assert mine["count"] == 2
    assert c.get("/v1/campaigns", headers=bearer("admin")).json()["count"] == 4


def test_advertiser_events_for_itself(world: tuple[TestClient, str]) -> None:
    pytest.importorskip("targeting.events")
    c, _ = world
    event = {"user_id": "u1", "advertiser": "acme", "event": "visit", "ts": "2026-11-24T09:00:00+08:00"}
    r = c.post("/v1/events", json={"events": [event]}, headers=bearer("acme"))
    assert r.status_code == 200 and r.json()["accepted"] == 1


# ---------------------------------------------------------------- key files
def test_key_file_yaml_and_json(tmp_path: Path) -> None:
    y = tmp_path / "keys.yaml"
    y.write_text("- {key: aaaaaaaaaaaaaaaa1, role: admin}\n- {key: bbbbbbbbbbbbbbbb2, role: 'advertiser:acme'}\n")
    ring = KeyRing.load(y)
    assert ring.authenticate("Bearer bbbbbbbbbbbbbbbb2").advertiser == "acme"
    j = tmp_path / "keys.json"
    j.write_text('{"keys": [{"key": "cccccccccccccccc3", "role": "ad_server"}]}')
    assert KeyRing.load(j).authenticate("bearer cccccccccccccccc3").role == "ad_server"


def test_keys_are_kept_hashed(keyring: KeyRing) -> None:
    held = repr(vars(keyring))
    assert not any(k in held for k in KEYS.values())


@pytest.mark.parametrize("entries,path", [
    ([{"key": "short", "role": "admin"}], "keys[0].key"),  # too short to be a secret
    ([{"key": "k" * 20, "role": "root"}], "keys[0].role"),  # unknown role
    ([{"key": "k" * 20, "role": "advertiser:"}], "keys[0].role"),  # no advertiser id
    ([{"key": "k" * 20, "role": "admin"}, {"key": "k" * 20, "role": "admin"}], "keys[1].key"),  # duplicate
    ([{"key": "k" * 20, "role": "admin", "extra": 1}], "keys[0]"),  # unknown field
    ({"nope": []}, "keys"),  # not a list
    ([], "keys"),  # no keys at all
], ids=["short", "role", "no-advertiser", "duplicate", "extra-field", "not-a-list", "empty"])
def test_bad_key_files(entries: Any, path: str) -> None:
    with pytest.raises(TargetingError) as e:
        KeyRing.from_entries(entries)
    assert e.value.path == path
