"""The differencing attack of issue 19, played by a hostile advertiser over HTTP.

Reach hides "women in 三亚" (under the floor), and a direct export of it is refused;
the attack exports two (or three) larger audiences whose difference is that group.
Under the export policy (targeting/audience/privacy.py) every platform-derived export
is refused to an advertiser key, and what it may download is computed from its own
events alone. The test collects every file the attacker managed to download and
checks that no group it can carve out of them (every cell of their Venn diagram)
is smaller than the floor, and that each file is exactly what the attacker's own
events determine, so none of them carries anything about the platform's users.
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from svc import NOW, REPO, TestClient, bearer

from service.auth import KeyRing
from targeting import Engine
from targeting.audience.privacy import THRESHOLD
from targeting.stores import MemoryStore

population = pytest.importorskip("targeting.population")

SANYA = 460300
TARGET = {"gender": "female", "geo": {"include": [SANYA]}}
VISIT = {"event": "visit", "within_days": 30}
BUY = {"event": "purchase", "within_days": 30}
ATTEMPTS: list[tuple[str, dict[str, Any]]] = [
    ("direct", TARGET),
    # the issue's two exports
    ("all-women", {"gender": "female"}),
    ("women-outside-sanya", {"gender": "female", "geo": {"exclude": [SANYA]}}),
    # three-export variants: Hainan women, minus Hainan women outside Sanya, or via Sanya itself
    ("hainan-women", {"gender": "female", "geo": {"include": [460000]}}),
    ("hainan-women-outside-sanya", {"gender": "female", "geo": {"include": [460000], "exclude": [SANYA]}}),
    ("sanya", {"geo": {"include": [SANYA]}}),
    ("women-or-sanya", {"any_of": [{"gender": "female"}, {"geo": {"include": [SANYA]}}]}),
    # the same, laundered through the attacker's own retargeting pool
    ("visitors-women", {"retargeting": {"any": [VISIT]}, "gender": "female"}),
    ("visitors-outside-sanya", {"retargeting": {"any": [VISIT]}, "geo": {"exclude": [SANYA]}}),
    ("visitors-any-of", {"retargeting": {"any": [VISIT]},
                         "any_of": [{"gender": "male"}, {"geo": {"exclude": [SANYA]}}]}),
    ("everyone-but-buyers", {"retargeting": {"none": [BUY]}}),
    ("everyone", {}),
]
OWN = [("visitors", {"retargeting": {"any": [VISIT]}}),
       ("visitors-not-buyers", {"retargeting": {"any": [VISIT], "none": [BUY]}}),
       ("buyers", {"retargeting": {"any": [BUY]}})]


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from targeting.taxonomy import Taxonomy

    tx = Taxonomy.load(REPO / "rules" / "taxonomy")
    out = tmp_path_factory.mktemp("pop") / "profiles.parquet"
    return population.generate_population(out, 30000, taxonomy=tx, seed=1, progress=False)


@pytest.fixture
def attack(make_client: Callable[..., TestClient], rules_dir: Path, profiles: Path, keyring: KeyRing,
           tmp_path: Path) -> tuple[TestClient, Engine, list[str]]:
    clock = lambda: NOW
    eng = Engine.load(rules_dir, profiles=profiles, store=MemoryStore(clock=clock), clock=clock)
    c = make_client(engine=eng, auth=keyring, export_dir=tmp_path / "exports", audience_pool="thread")
    return c, eng, pq.read_table(profiles, columns=["user_id"]).column("user_id").to_pylist()


def download(c: TestClient, body: dict[str, Any], who: str = "acme") -> set[str] | int:
    """The ids of a finished export, or the refusal's status code."""
    r = c.post("/v1/audiences/export", json=body, headers=bearer(who))
    if r.status_code != 202:
        return r.status_code
    job = r.json()
    deadline = time.monotonic() + 30
    while job["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
        job = c.get(f"/v1/audiences/export/{job['id']}", headers=bearer(who)).json()
    assert job["state"] == "done", job
    f = c.get(job["download"], headers=bearer(who))
    return set(pq.read_table(io.BytesIO(f.content)).column("user_id").to_pylist())


def cells(files: list[set[str]]) -> list[set[str]]:
    """Every non-empty cell of the Venn diagram of ``files``: what differencing can isolate."""
    union = set().union(*files)
    out = []
    for inside in itertools.product((True, False), repeat=len(files)):
        cell = set(union)
        for f, keep in zip(files, inside):
            cell = cell & f if keep else cell - f
        if cell:
            out.append(cell)
    return out


def test_the_differencing_attack_recovers_nothing(attack: tuple[TestClient, Engine, list[str]]) -> None:
    c, eng, users = attack
    victims = eng.reach(TARGET)["users"]
    assert 0 < victims < THRESHOLD  # the group the floor protects
    shown = c.post("/v1/reach", json={"targeting": TARGET}, headers=bearer("acme")).json()
    assert shown["users"] is None and shown["below_threshold"] is True

    # the attacker reports visits for every user it can name (here: all of them, and ids
    # the platform does not know), purchases for a third, to launder platform data through
    names = users + [f"not-a-user-{i}" for i in range(500)]
    events = [{"user_id": u, "advertiser": "acme", "event": "visit", "ts": NOW - 3600} for u in names]
    events += [{"user_id": u, "advertiser": "acme", "event": "purchase", "ts": NOW - 60} for u in names[::3]]
    for lo in range(0, len(events), 5000):
        assert c.post("/v1/events", json={"events": events[lo: lo + 5000]}, headers=bearer("acme")).json()[
            "accepted"] == len(events[lo: lo + 5000])

    for name, spec in ATTEMPTS:
        got = download(c, {"targeting": spec})
        assert got == 403, f"{name}: an advertiser downloaded a platform-derived audience"
        r = c.post("/v1/audiences/export", json={"targeting": spec}, headers=bearer("acme"))
        assert r.json()["error"]["code"] == "platform_data", name

    files = []
    for name, spec in OWN:  # what the attacker may download: its own audiences
        got = download(c, {"targeting": spec})
        assert isinstance(got, set), (name, got)
        files.append(got)
    # each file is what the attacker's own events say, platform user or not
    buyers = set(names[::3])
    assert files == [set(names), set(names) - buyers, buyers]
    # and no cell of any two or three of them is a group under the floor
    for k in (2, 3):
        for combo in itertools.combinations(files, k):
            assert all(len(cell) >= THRESHOLD for cell in cells(list(combo)))


def test_job_status_shows_advertisers_rounded_counts(attack: tuple[TestClient, Engine, list[str]]) -> None:
    c, _, _ = attack
    names = [f"u{i:07d}" for i in range(1234)]
    c.post("/v1/events", json={"events": [{"user_id": u, "advertiser": "acme", "event": "visit",
                                           "ts": NOW - 60} for u in names]}, headers=bearer("acme"))
    r = c.post("/v1/audiences/export", json={"targeting": {"retargeting": {"any": [VISIT]}}},
               headers=bearer("acme"))
    job_id = r.json()["id"]
    deadline = time.monotonic() + 30
    while (job := c.get(f"/v1/audiences/export/{job_id}", headers=bearer("acme")).json())["state"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert job["rows"] == 1200 and job["total"] == 1200
    assert c.get(f"/v1/audiences/export/{job_id}", headers=bearer("admin")).json()["rows"] == 1234
    assert len(download(c, {"targeting": {"retargeting": {"any": [VISIT]}}})) == 1234  # type: ignore[arg-type]


def test_operators_export_platform_audiences(attack: tuple[TestClient, Engine, list[str]]) -> None:
    c, eng, _ = attack
    got = download(c, {"targeting": {"gender": "female"}}, who="admin")
    assert isinstance(got, set) and len(got) == eng.reach({"gender": "female"})["users"]
