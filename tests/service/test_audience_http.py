"""Reach and export over HTTP with the real audience index on a small generated
population: operators see exact counts, advertisers and the open demo the
privacy view; an export job runs to a downloadable file."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from svc import TestClient, bearer

from service.auth import KeyRing
from targeting import Engine
from targeting.audience.privacy import round_sig

pytest.importorskip("targeting.audience.jobs")
population = pytest.importorskip("targeting.population")

SPEC = {"gender": "female", "age": [[20, 60]]}


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from svc import REPO

    from targeting.taxonomy import Taxonomy

    tx = Taxonomy.load(REPO / "rules" / "taxonomy")
    out = tmp_path_factory.mktemp("pop") / "profiles.parquet"
    return population.generate_population(out, 5000, taxonomy=tx, seed=1, progress=False)


@pytest.fixture
def aud_engine(rules_dir: Path, profiles: Path) -> Engine:
    return Engine.load(rules_dir, profiles=profiles)


def test_reach_views(make_client: Callable[..., TestClient], aud_engine: Engine, keyring: KeyRing) -> None:
    exact = aud_engine.reach(SPEC, breakdown=["gender"])
    assert exact["users"] > 1000
    keyed = make_client(engine=aud_engine, auth=keyring)
    admin = keyed.post("/v1/reach", json={"targeting": SPEC, "breakdown": ["gender"]}, headers=bearer("admin"))
    assert admin.status_code == 200 and admin.json()["users"] == exact["users"]
    for c, headers in ((keyed, bearer("acme")), (make_client(engine=aud_engine), {})):
        r = c.post("/v1/reach", json={"targeting": SPEC, "breakdown": ["gender"]}, headers=headers)
        assert r.status_code == 200, r.text
        shown = r.json()["users"]
        digits = str(shown).rstrip("0")
        assert len(digits) <= 2 and abs(shown - exact["users"]) <= 0.1 * exact["users"]
        again = c.post("/v1/reach", json={"targeting": SPEC, "breakdown": ["gender"]}, headers=headers).json()
        assert again == r.json()  # the same query gets the same noise: nothing to average away


def test_small_audiences_are_hidden_from_advertisers(make_client: Callable[..., TestClient],
                                                     aud_engine: Engine) -> None:
    spec = {"geo": {"include": [110000]}, "age": [[30, 30]], "gender": "male"}
    assert aud_engine.reach(spec)["users"] < 100
    r = make_client(engine=aud_engine).post("/v1/reach", json={"targeting": spec})
    assert r.json()["users"] is None and r.json()["below_threshold"] is True


def test_export_job_to_file(make_client: Callable[..., TestClient], aud_engine: Engine, keyring: KeyRing,
                            tmp_path: Path) -> None:
    """A platform-derived audience is an operator's export (issue 19): the advertiser's own
    key is refused, an admin exports it for the advertiser, who then sees rounded counts."""
    c = make_client(engine=aud_engine, auth=keyring, export_dir=tmp_path / "exports")
    refused = c.post("/v1/audiences/export", json={"targeting": SPEC}, headers=bearer("acme"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "platform_data"
    r = c.post("/v1/audiences/export", json={"targeting": SPEC, "advertiser": "acme"}, headers=bearer("admin"))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["advertiser"] == "acme" and "path" not in job
    deadline = time.monotonic() + 30
    while job["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
        job = c.get(f"/v1/audiences/export/{job['id']}", headers=bearer("acme")).json()
    assert job["state"] == "done", job
    exact = aud_engine.reach(SPEC)["users"]
    assert job["rows"] == round_sig(exact)  # the advertiser sees 2 significant digits
    assert c.get(f"/v1/audiences/export/{job['id']}", headers=bearer("admin")).json()["rows"] == exact
    f = c.get(job["download"], headers=bearer("acme"))
    assert f.status_code == 200
    table = pq.read_table(io.BytesIO(f.content))
    assert table.num_rows == exact
    # bobco cannot see or fetch it
    assert c.get(f"/v1/audiences/export/{job['id']}", headers=bearer("bobco")).status_code == 404
    assert c.get(job["download"], headers=bearer("bobco")).status_code == 404


def test_cli_reach_prints_exact_counts(profiles: Path, rules_dir: Path, aud_engine: Engine,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from targeting.cli import main

    assert main(["reach", "--rules", str(rules_dir), "--profiles", str(profiles), json.dumps(SPEC),
                 "--breakdown", "gender"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["users"] == aud_engine.reach(SPEC)["users"]
    assert sum(v for v in out["breakdown"]["gender"].values() if v) == out["users"]


def test_reach_funnel_and_overlap_over_http(make_client: Callable[..., TestClient], aud_engine: Engine) -> None:
    """The reach page asks for the funnel; overlap compares two specs. In the advertiser
    view every count is thresholded and rounded."""
    c = make_client(engine=aud_engine)
    body = {"targeting": {"gender": "female", "age": [[18, 60]]}, "funnel": True,
            "overlap": {"tags": {"any": ["investor"]}}}
    r = c.post("/v1/reach", json=body)
    assert r.status_code == 200, r.text
    a = r.json()
    exact = aud_engine.reach(body["targeting"], funnel=True, overlap=body["overlap"])
    assert [s["step"] for s in a["funnel"]] == [s["step"] for s in exact["funnel"]]
    assert set(a["overlap"]) == {"users", "both", "either"}
    both = exact["overlap"]["both"]
    # noise (Laplace, scale max(10, 1%)) plus rounding to 2 significant digits
    assert both < 100 or abs(a["overlap"]["both"] - both) <= 0.06 * both + 150
    assert c.post("/v1/reach", json={**body, "funnel": "yes"}).json()["error"]["path"] == "funnel"
    bad = c.post("/v1/reach", json={**body, "overlap": {"tags": ["no-such-tag"]}})
    assert bad.status_code == 400 and bad.json()["error"]["path"].startswith("overlap")
