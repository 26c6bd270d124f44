"""Reach in worker processes answers exactly what reach on a thread answers (issue 19):
the same counts, the same advertiser noise (one secret), the same errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from svc import REPO, TestClient, bearer

from service.auth import KeyRing
from targeting import Engine

population = pytest.importorskip("targeting.population")

SECRET = b"s" * 32
BODY = {"targeting": {"gender": "female", "any_of": [{"age": [[20, 30]]}, {"tags": {"any": ["investor"]}}]},
        "breakdown": ["province", "gender"], "funnel": True, "overlap": {"geo": {"include": ["广东"]}}}


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from targeting.taxonomy import Taxonomy

    tx = Taxonomy.load(REPO / "rules" / "taxonomy")
    out = tmp_path_factory.mktemp("pop") / "profiles.parquet"
    return population.generate_population(out, 4000, taxonomy=tx, seed=3, progress=False)


def test_process_and_thread_pools_agree(make_client: Callable[..., TestClient], rules_dir: Path, profiles: Path,
                                        keyring: KeyRing) -> None:
    eng = Engine.load(rules_dir, profiles=profiles)
    procs = make_client(engine=eng, auth=keyring, privacy_secret=SECRET, audience_pool="process",
                        audience_workers=1)
    threads = make_client(engine=eng, auth=keyring, privacy_secret=SECRET, audience_pool="thread")
    assert procs.app.state.targeting.pool._procs is not None  # type: ignore[attr-defined]
    for who in ("admin", "acme"):
        a = procs.post("/v1/reach", json=BODY, headers=bearer(who))
        b = threads.post("/v1/reach", json=BODY, headers=bearer(who))
        assert a.status_code == b.status_code == 200, a.text
        assert a.json() == b.json()
    assert procs.post("/v1/reach", json=BODY, headers=bearer("admin")).json()["users"] == eng.reach(
        BODY["targeting"])["users"]
    bad = {"targeting": {"geo": ["atlantis"]}}
    a = procs.post("/v1/reach", json=bad, headers=bearer("acme"))
    b = threads.post("/v1/reach", json=bad, headers=bearer("acme"))
    assert a.status_code == b.status_code == 400 and a.json() == b.json()
    assert a.json()["error"]["path"] == "targeting.geo[0]"
    # retargeting reads the in-process store: it runs on a thread, and still answers
    rt = {"targeting": {"retargeting": {"any": [{"event": "visit", "within_days": 7}]}}}
    assert procs.post("/v1/reach", json=rt, headers=bearer("acme")).status_code == 200


def test_a_dead_worker_process_is_replaced(make_client: Callable[..., TestClient], rules_dir: Path,
                                           profiles: Path) -> None:
    import os
    import signal

    eng = Engine.load(rules_dir, profiles=profiles)
    c = make_client(engine=eng, audience_pool="process", audience_workers=1)
    assert c.post("/v1/reach", json=BODY).status_code == 200
    pool = c.app.state.targeting.pool  # type: ignore[attr-defined]
    for pid in list(pool._procs._processes):
        os.kill(pid, signal.SIGKILL)
    r = c.post("/v1/reach", json=BODY)
    assert r.status_code in (200, 429), r.text  # 429 + Retry-After while the pool restarts
    assert c.post("/v1/reach", json=BODY).status_code == 200
