"""``GET /v1/taxonomy``, the vocabulary the reach page is built from (no browser needed)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI

from service.taxonomy_route import router, taxonomy_json
from targeting.taxonomy import Taxonomy

with warnings.catch_warnings():
    # starlette >= 1.x nudges towards httpx2; the TestClient itself is unchanged
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tx() -> Taxonomy:
    return Taxonomy.load(REPO / "rules" / "taxonomy")


@pytest.fixture(scope="module")
def client(tx: Taxonomy) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.engine = SimpleNamespace(taxonomy=tx)
    app.include_router(router)
    with TestClient(app) as c:
        yield c


def test_every_province_carries_its_cities_names_and_pinyin(tx: Taxonomy) -> None:
    body = taxonomy_json(tx)
    assert [p["adcode"] for p in body["provinces"]] == tx.provinces
    for p in body["provinces"]:
        place = tx.places[p["adcode"]]
        assert (p["name"], p["short_name"], p["pinyin"]) == (
            place.name,
            place.short_name,
            place.pinyin,
        )
        assert p["pinyin"] and p["iso"].startswith("CN-")
        assert [c["adcode"] for c in p["cities"]] == tx.cities_of(p["adcode"])
        for c in p["cities"]:
            assert c["pinyin"] and tx.places[c["adcode"]].province == p["adcode"]
    guangdong = next(p for p in body["provinces"] if p["adcode"] == 440000)
    assert {
        "adcode": 440300,
        "name": "深圳市",
        "short_name": "深圳",
        "pinyin": "shenzhen",
    } in guangdong["cities"]


def test_tags_scenes_and_vocabularies_in_taxonomy_order(tx: Taxonomy) -> None:
    body = taxonomy_json(tx)
    assert [(t["id"], t["label"]) for t in body["tags"]] == list(tx.tags.items())
    assert {"id": "white_collar_women", "label": "白领丽人", "group": "lifestyle"} in body["tags"]
    assert [s["id"] for s in body["scenes"]] == [
        "home",
        "office",
        "internet_cafe",
        "campus",
        "on_the_go",
    ]
    assert body["genders"] == ["male", "female"]
    assert body["weekdays"][0] == "mon" and len(body["weekdays"]) == 7
    assert body["events"] == ["visit", "click", "add_to_cart", "purchase"]


def test_served_as_utf8_json_with_a_validator(client: TestClient, tx: Taxonomy) -> None:
    first = client.get("/v1/taxonomy")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/json")
    assert first.json() == taxonomy_json(tx)
    assert "广东省".encode() in first.content  # Chinese as UTF-8, not \\u escapes
    again = client.get("/v1/taxonomy", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
