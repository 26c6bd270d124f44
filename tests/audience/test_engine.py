"""The audience index behind ``Engine.load(profiles=...)``: decide lookups, reach, export."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from targeting.engine import Engine
from targeting.errors import TargetingError, Unavailable


@pytest.fixture(scope="module")
def engine(population, tmp_path_factory) -> Engine:
    src = tmp_path_factory.mktemp("eng") / "profiles"
    shutil.copytree(population, src)
    return Engine.load("rules/", profiles=src)


def test_the_index_serves_decide_lookups(engine, rows):
    assert engine.profiles is engine.audience  # one structure, one truth
    r = next(r for r in rows if r["gender"] == "female" and r["age"] and r["city"])
    got = engine.profiles.lookup(r["user_id"])
    assert (got["province"], got["city"], got["gender"], got["age"]) == (r["province"], r["city"], "female", r["age"])
    assert engine.decide({"user_id": r["user_id"]})["index_version"]
    assert engine.profiles.lookup("not-a-user") is None


def test_reach_and_export_through_the_engine(engine, rows, tmp_path):
    got = engine.reach({"gender": "female", "age": [[25, 34]]}, breakdown=["age"], funnel=True)
    want = sum(1 for r in rows if r["gender"] == "female" and r["age"] is not None and 25 <= r["age"] <= 34)
    assert got["users"] == want and got["breakdown"]["age"]["25-34"] == want
    assert [s["step"] for s in got["funnel"]] == ["population", "gender", "age"]
    n = engine.export({"gender": "female", "age": [[25, 34]]}, tmp_path / "a.parquet")
    assert n == want == pq.read_table(tmp_path / "a.parquet").num_rows


def test_reach_options_and_specs_are_validated(engine):
    with pytest.raises(TargetingError) as e:
        engine.reach({"gender": "robot"})
    assert e.value.path == "targeting.gender"
    with pytest.raises(TargetingError) as e:
        engine.reach({}, breakdown=["shoe_size"])
    assert e.value.path == "breakdown[0]"
    with pytest.raises(TargetingError) as e:
        engine.reach({}, frobnicate=True)
    assert e.value.code == "unknown_option"


def test_without_profiles_reach_is_unavailable():
    eng = Engine.load("rules/")
    with pytest.raises(Unavailable):
        eng.reach({})
