"""Reach over HTTP carries breakdown_names like the library and the CLI, exact or privacy view."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from svc import REPO, TestClient, bearer

from service.auth import KeyRing
from targeting import Engine
from targeting.population import generate_population
from targeting.taxonomy import Taxonomy


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tx = Taxonomy.load(REPO / "rules" / "taxonomy")
    return generate_population(tmp_path_factory.mktemp("pop") / "p.parquet", 3000, taxonomy=tx, seed=2,
                               progress=False)


def test_breakdown_names_over_http(make_client: Callable[..., TestClient], rules_dir: Path, profiles: Path,
                                   keyring: KeyRing) -> None:
    engine = Engine.load(rules_dir, profiles=profiles)
    body = {"targeting": {}, "breakdown": ["province", "tag"]}
    want = engine.reach({}, breakdown=["province", "tag"])["breakdown_names"]
    assert want["province"]["440000"] == "广东省"
    keyed = make_client(engine=engine, auth=keyring)
    for headers in (bearer("admin"), bearer("acme")):  # the exact answer and the advertiser's view
        r = keyed.post("/v1/reach", json=body, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["breakdown_names"] == want
        assert {k for k in r.json()["breakdown"]["province"] if k != "unknown"} == set(want["province"])
