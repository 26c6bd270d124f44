"""POST /v1/campaigns/reload is atomic: a bad rules dir is refused with every
problem and the old index keeps serving; a good one swaps in a new version."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from svc import CAMPAIGNS, TestClient, bearer, write_rules

from targeting import Engine

NEW = [{"id": "zed-new", "advertiser": "zed", "bid": {"cpm": 3}, "category": "food", "targeting": {}}]
BAD = [
    {"id": "ok-one", "advertiser": "zed", "bid": {"cpm": 3}, "category": "food", "targeting": {}},
    {"id": "bad-tag", "advertiser": "zed", "bid": {"cpm": 3}, "category": "food",
     "targeting": {"tags": {"any": ["white_colar_women"]}}},
    {"id": "bad-bid", "advertiser": "zed", "bid": {"cpm": -1}, "category": "food"},
]


def ids(c: TestClient) -> list[str]:
    r = c.post("/v1/decide", json={"user_id": "u1", "age": 30, "limit": 100}, headers=bearer("ad_server"))
    assert r.status_code == 200
    return sorted(d["campaign_id"] for d in r.json()["decisions"])


def test_bad_reload_keeps_serving_then_good_reload_swaps(keyed: TestClient, rules_dir: Path) -> None:
    admin = bearer("admin")
    v1 = keyed.get("/healthz").json()["index_version"]
    before = ids(keyed)
    assert before == ["bobco-cpc"]

    write_rules(rules_dir, BAD)
    (rules_dir / "campaigns" / "broken.yaml").write_text("- id: [unclosed\n")
    r = keyed.post("/v1/campaigns/reload", headers=admin)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_rules"
    where = {(Path(p["file"]).name if p["file"] else None, p["campaign"], p["path"]) for p in err["problems"]}
    assert ("test.yaml", "bad-tag", "targeting.tags.any[0]") in where
    assert ("test.yaml", "bad-bid", "bid.cpm") in where
    assert any(f == "broken.yaml" for f, _, _ in where)
    assert any("white_collar_women" in p["reason"] for p in err["problems"])  # the close match
    # nothing half-applied: same version, same answers (ok-one was valid but is not loaded)
    assert keyed.get("/healthz").json()["index_version"] == v1
    assert ids(keyed) == before

    (rules_dir / "campaigns" / "broken.yaml").unlink()
    write_rules(rules_dir, CAMPAIGNS + NEW)
    r = keyed.post("/v1/campaigns/reload", headers=admin, json={})
    assert r.status_code == 200, r.text
    v2 = r.json()["index_version"]
    assert v2 != v1 and r.json()["previous_version"] == v1 and r.json()["campaigns"] == 5
    assert keyed.get("/healthz").json()["index_version"] == v2
    assert ids(keyed) == ["bobco-cpc", "zed-new"]

    metrics = keyed.get("/metrics", headers=admin).text
    assert 'targeting_reloads_total{result="ok"} 1' in metrics
    assert 'targeting_reloads_total{result="failed"} 1' in metrics
    assert f'targeting_index_info{{version="{v2}"}} 1' in metrics


def wait_for(check: Callable[[], bool], seconds: float = 6.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_reload_reaches_every_worker(make_client: Callable[..., TestClient], rules_dir: Path,
                                     tmp_path: Path) -> None:
    """Two workers (two engines over one rules dir) sharing a reload signal file."""
    signal = tmp_path / "reload"
    a = make_client(engine=Engine.load(rules_dir), reload_signal=signal)
    b = make_client(engine=Engine.load(rules_dir), reload_signal=signal)
    v1 = b.get("/healthz").json()["index_version"]
    write_rules(rules_dir, CAMPAIGNS + NEW)
    v2 = a.post("/v1/campaigns/reload").json()["index_version"]
    assert v2 != v1
    assert wait_for(lambda: b.get("/healthz").json()["index_version"] == v2)
    write_rules(rules_dir, BAD)  # refused by a, never announced: b keeps serving v2
    assert a.post("/v1/campaigns/reload").status_code == 422
    time.sleep(1.5)
    assert b.get("/healthz").json()["index_version"] == v2
