"""GET /v1/reports and `targeting report` against what was served, logged and clicked."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from deliv import Clock, TestClient, bearer

from targeting import Engine

DAY = "2026-11-24"


def serve(client: TestClient, clock: Clock, users: list[dict[str, Any]], click_every: int = 2) -> None:
    """Decide for each user (limit 1), report the impression, click every ``click_every``-th one."""
    clicked = []
    for n, user in enumerate(users):
        r = client.post("/v1/decide", json={**user, "limit": 1}, headers=bearer("ad_server"))
        (d,) = r.json()["decisions"]
        client.post("/v1/impressions", json={"impressions": [{"impression_id": d["impression_id"]}]},
                    headers=bearer("ad_server"))
        if n % click_every == 0:
            clicked.append({"impression_id": d["impression_id"]})
    clock.now += 30
    assert client.post("/v1/clicks", json={"clicks": clicked}, headers=bearer("ad_server")).json()["accepted"] == \
        len(clicked)


@pytest.fixture
def served(client: TestClient, engine: Engine, clock: Clock) -> TestClient:
    # 4 Shenzhen women (acme-spring, 12.5 CPM) at 10:00, then 2 Beijing women (acme-fashion, 8 CPM) at 11:00
    serve(client, clock, [{"user_id": f"sz{n}", "geo": {"city": "深圳"}, "gender": "female", "age": 30}
                          for n in range(4)])
    clock.now += 3600
    serve(client, clock, [{"user_id": f"bj{n}", "geo": {"city": "北京"}, "gender": "female", "age": 50}
                          for n in range(2)], click_every=3)
    engine.delivery.writer.flush()
    return client


def get(client: TestClient, who: str = "admin", **params: Any) -> Any:
    return client.get("/v1/reports", params=params, headers=bearer(who))


def test_totals_by_hour_and_by_day(served: TestClient) -> None:
    r = get(served, **{"from": DAY, "to": DAY, "by": "hour"})
    assert r.status_code == 200
    assert r.json()["rows"] == [
        {"period": "2026-11-24T10:00", "impressions": 4, "clicks": 2, "ctr": 0.5, "spend": 0.05, "ecpm": 12.5},
        {"period": "2026-11-24T11:00", "impressions": 2, "clicks": 1, "ctr": 0.5, "spend": 0.016, "ecpm": 8.0},
    ]
    (day,) = get(served, **{"from": DAY, "to": DAY}).json()["rows"]
    assert day == {"period": DAY, "impressions": 6, "clicks": 3, "ctr": 0.5, "spend": 0.066, "ecpm": 11.0}
    r = get(served, **{"from": "2026-11-01", "to": "2026-11-30", "by": "total"})
    assert r.status_code == 200, r.text
    (total,) = r.json()["rows"]
    assert total["period"] == "total" and total["impressions"] == 6


def test_breakdowns(served: TestClient) -> None:
    rows = get(served, **{"from": DAY, "by": "total", "dims": "campaign,age_band,province,city"}).json()["rows"]
    assert [(r["campaign"], r["age_band"], r["province"], r["city"], r["impressions"], r["clicks"]) for r in rows] == [
        ("acme-fashion", "45-54", "110000", None, 2, 1), ("acme-spring", "25-34", "440000", "440300", 4, 2)]


def test_an_advertiser_sees_its_own_campaigns_only(served: TestClient) -> None:
    (row,) = get(served, "acme", **{"from": DAY, "by": "total"}).json()["rows"]
    assert row["impressions"] == 6
    assert get(served, "bobco", **{"from": DAY, "by": "total"}).json()["rows"] == []
    r = get(served, "bobco", **{"from": DAY, "advertiser": "acme"})
    assert r.status_code == 403 and r.json()["error"]["path"] == "advertiser"
    r = get(served, "bobco", **{"from": DAY, "campaign": "acme-spring"})
    assert r.status_code == 403 and r.json()["error"]["path"] == "campaign"
    assert get(served, "ad_server", **{"from": DAY}).status_code == 200


def test_user_breakdowns_under_100_users_are_hidden_from_advertisers(served: TestClient) -> None:
    (row,) = get(served, "acme", **{"from": DAY, "by": "total", "dims": "gender"}).json()["rows"]
    assert row == {"period": "total", "gender": "female", "impressions": None, "clicks": None, "ctr": None,
                   "spend": None, "ecpm": None, "below_threshold": True}
    (row,) = get(served, "acme", **{"from": DAY, "by": "total", "dims": "slot"}).json()["rows"]
    assert row["impressions"] == 6  # not a user attribute
    (row,) = get(served, "admin", **{"from": DAY, "by": "total", "dims": "gender"}).json()["rows"]
    assert row["impressions"] == 6 and "below_threshold" not in row  # operators see exact counts


def test_pacing_of_a_campaigns_day(served: TestClient) -> None:
    rows = get(served, **{"from": DAY, "by": "hour", "campaign": "acme-spring"}).json()["rows"]
    assert rows == [{"period": "2026-11-24T10:00", "impressions": 4, "clicks": 2, "ctr": 0.5, "spend": 0.05,
                     "ecpm": 12.5, "spend_to_date": 0.05, "pacing": round(1000 * 11 / 24, 6)}]


def test_csv(served: TestClient) -> None:
    r = served.get("/v1/reports", params={"from": DAY, "by": "hour"},
                   headers={**bearer("admin"), "Accept": "text/csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["period"], x["impressions"], x["clicks"]) for x in rows] == [
        ("2026-11-24T10:00", "4", "2"), ("2026-11-24T11:00", "2", "1")]


@pytest.mark.parametrize(("params", "path"), [
    ({"from": "2026-11-25", "to": "2026-11-24"}, "from"),  # reversed
    ({"from": "2025-01-01", "to": "2026-11-24"}, "to"),  # over a year
    ({"from": "yesterday"}, "from"),
    ({"by": "week"}, "by"),
    ({"dims": "gender,shoe_size"}, "dims"),
    ({"dims": "gender,gender"}, "dims"),
    ({"tz": "Mars/Olympus"}, "tz"),
    ({"frm": DAY}, "frm"),  # unknown parameter
], ids=["reversed", "over-a-year", "not-a-date", "bad-by", "unknown-dim", "dim-twice", "bad-tz", "unknown-param"])
def test_bad_input_is_a_4xx_naming_the_field(served: TestClient, params: dict[str, str], path: str) -> None:
    r = get(served, **params)
    assert r.status_code == 400 and r.json()["error"]["path"] == path


def test_corrupted_files_are_skipped_with_a_warning(served: TestClient, log_dir: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    part = log_dir / "impressions" / f"date={DAY}"
    (part / "part-garbage.parquet").write_bytes(b"PAR1 this is not parquet")
    good = min(part.glob("part-2*.parquet"))
    body = good.read_bytes()
    (part / "part-zz-badpages.parquet").write_bytes(body[:4] + b"\0" * (len(body) // 2 - 4) + body[len(body) // 2:])
    r = get(served, **{"from": DAY, "by": "total"})
    assert r.status_code == 200
    assert any("part-garbage" in s for s in r.json()["skipped"])
    assert "skipping unreadable file" in caplog.text


def test_report_cli(served: TestClient, log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from targeting.cli import main

    assert main(["report", "--log-dir", str(log_dir), "--from", DAY, "--by", "hour", "--compact"]) == 0
    out = capsys.readouterr().out
    assert '"impressions":4' in out and '"impressions":2' in out
    assert main(["report", "--log-dir", str(log_dir), "--from", DAY, "--by", "total", "--csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("total,6,3,0.5,")
    assert main(["report", "--log-dir", str(log_dir), "--from", DAY, "--dims", "nope"]) == 2
    assert "dims" in capsys.readouterr().err
