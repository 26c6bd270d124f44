"""The batch scorer gives exactly ``Engine.decide``'s answers, streams, reports bad rows, sums up."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from strategies import click_model

from targeting.batch import score
from targeting.clicklog import generate_requests
from targeting.errors import TargetingError
from targeting.taxonomy import Taxonomy

from .conftest import NOW, FetchOnly, make_engine, request_dict, warm_store
from .profiles import Profiles


def _decisions(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    for f in files:
        for r in pq.read_table(f).to_pylist():
            out.setdefault(r["request_id"], []).append(
                (r["rank"], r["campaign_id"], round(r["ecpm"], 6), round(r["pctr"], 6)))
    return {k: sorted(v) for k, v in out.items()}


def _expected(engine: Any, rows: list[dict[str, Any]], **extra: Any) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for row in rows:
        ans = engine.decide({**request_dict(row), **extra})
        if ans["decisions"]:
            out[row["request_id"]] = [(k + 1, d["campaign_id"], d["ecpm"], d["pctr"])
                                      for k, d in enumerate(ans["decisions"])]
    return out


@pytest.fixture(scope="module")
def requests_file(tmp_path_factory: pytest.TempPathFactory, tx: Taxonomy) -> Path:
    p = tmp_path_factory.mktemp("req") / "requests.parquet"
    generate_requests(p, 1500, taxonomy=tx, seed=11, days=3, end=NOW, progress=False)
    return p


@pytest.mark.parametrize("read", ["snapshots", "fetch"])
def test_identical_to_decide_with_state(tx: Taxonomy, requests_file: Path, tmp_path: Path, read: str) -> None:
    engine = make_engine(tx)
    rows = pq.read_table(requests_file).to_pylist()
    times: dict[str, list[float]] = {}
    for r in rows:
        times.setdefault(r["user_id"], []).append(r["ts"].timestamp())
    warm_store(engine, sorted(times), times=times)
    if read == "fetch":
        engine.store = FetchOnly(engine.store)
    result = score(engine, requests_file, tmp_path / "out.parquet", progress=False)
    got = _decisions(tmp_path / "out.parquet")
    want = _expected(engine, rows)
    assert result["requests"] == len(rows) and result["invalid"] == 0
    assert sum(map(len, want.values())) > 3 * len(rows)  # a non-trivial rule set: many candidates
    assert got == want


def test_store_checks_change_answers(tx: Taxonomy, requests_file: Path, tmp_path: Path) -> None:
    # guard for the test above: the warmed store must actually remove candidates
    cold = make_engine(tx)
    warm = make_engine(tx)
    rows = pq.read_table(requests_file).to_pylist()
    warm_store(warm, sorted({r["user_id"] for r in rows}))
    score(cold, requests_file, tmp_path / "cold.parquet", progress=False)
    score(warm, requests_file, tmp_path / "warm.parquet", progress=False)
    assert _decisions(tmp_path / "cold.parquet") != _decisions(tmp_path / "warm.parquet")


def test_limit_and_floor_like_decide(tx: Taxonomy, requests_file: Path, tmp_path: Path) -> None:
    engine = make_engine(tx, seed=3)
    rows = pq.read_table(requests_file).to_pylist()[:400]
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(requests_file).slice(0, 400), small)
    score(engine, small, tmp_path / "out.parquet", progress=False, limit=3, floor_cpm=12.5)
    assert _decisions(tmp_path / "out.parquet") == _expected(engine, rows, limit=3, floor_cpm=12.5)


def test_profiles_fill_missing_attributes_like_decide(tx: Taxonomy, tmp_path: Path) -> None:
    profiles = Profiles(pa.table({
        "user_id": ["p1", "p2", "p3"],
        "province": pa.array([440000, 310000, None], pa.int32()),
        "city": pa.array([440300, None, None], pa.int32()),
        "gender": ["female", "male", None],
        "age": pa.array([29, 45, 17], pa.int16()),
        "tags": [["white_collar_women", "beauty"], ["car_lover", "investor"], ["student", "gamer"]],
    }))
    engine = make_engine(tx, seed=5, profiles=profiles)
    ts = pa.array([int(NOW * 1e6)] * 5, pa.timestamp("us", tz="UTC"))
    table = pa.table({
        "request_id": ["a", "b", "c", "d", "e"],
        "user_id": ["p1", "p2", "p3", "p1", "nobody"],
        "ts": ts,
        "province": pa.array([None, None, None, 110000, None], pa.int32()),
        "city": pa.array([None] * 5, pa.int32()),
        "gender": [None, None, "female", None, None],
        "age": pa.array([None, 30, None, None, None], pa.int16()),
        "tags": pa.array([None, None, [], None, None], pa.list_(pa.string())),
        "scene": ["office", None, "campus", None, None],
        "slot": [None] * 5,
    })
    pq.write_table(table, tmp_path / "r.parquet")
    score(engine, tmp_path / "r.parquet", tmp_path / "out.parquet", progress=False)
    assert _decisions(tmp_path / "out.parquet") == _expected(engine, table.to_pylist())


def test_learned_model_identical_to_decide(tx: Taxonomy, requests_file: Path, tmp_path: Path) -> None:
    engine = make_engine(tx, seed=9)
    engine.swap_model(click_model(tx, list(engine.index.ids), seed=0))  # half the campaigns unknown to it
    rows = pq.read_table(requests_file).to_pylist()[:500]
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(requests_file).slice(0, 500), small)
    score(engine, small, tmp_path / "out.parquet", progress=False)
    assert _decisions(tmp_path / "out.parquet") == _expected(engine, rows)


# each case: (column, bad value, path suffix)
BAD_ROWS = [
    ("tags", ["no_such_tag"], "tags"),  # unknown tag
    ("age", 200, "age"),  # out of range
    ("province", 440300, "province"),  # a city in the province column
    ("city", 999999, "city"),  # unknown adcode
    ("gender", "robot", "gender"),  # not male/female
    ("scene", "moon", "scene"),  # unknown scene
    ("user_id", None, "user_id"),  # required
    ("user_id", "", "user_id"),  # required non-empty
]


@pytest.mark.parametrize(("column", "value", "path"), BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_bad_rows_are_reported_not_scored(tx: Taxonomy, requests_file: Path, tmp_path: Path,
                                          column: str, value: Any, path: str) -> None:
    table = pq.read_table(requests_file).slice(0, 50)
    rows = table.to_pylist()
    rows[7][column] = value
    if column == "province":
        rows[7]["city"] = None
    bad = pa.Table.from_pylist(rows, schema=table.schema)
    pq.write_table(bad, tmp_path / "bad.parquet")
    engine = make_engine(tx, n=50)
    result = score(engine, tmp_path / "bad.parquet", tmp_path / "out.parquet", progress=False)
    assert result["invalid"] == 1 and result["scored"] == 49
    [err] = result["errors"]
    assert err["row"] == 7 and err["request_id"] == rows[7]["request_id"]
    assert err["error"]["path"] == f"requests[7].{path}"
    assert rows[7]["request_id"] not in _decisions(tmp_path / "out.parquet")


def test_summary_is_what_served(tx: Taxonomy, requests_file: Path, tmp_path: Path) -> None:
    engine = make_engine(tx, seed=4)
    result = score(engine, requests_file, tmp_path / "out.parquet", summary=True, progress=False)
    out = pq.read_table(tmp_path / "out.parquet").to_pylist()
    won: dict[str, list[float]] = {}
    for r in out:
        if r["rank"] == 1:
            won.setdefault(r["campaign_id"], []).append(r["pctr"])
    summary = {s["campaign_id"]: s for s in result["summary"]}
    assert set(summary) == set(won)
    for cid, pctrs in won.items():
        c = engine.index.campaigns[engine.index.position[cid]]
        s = summary[cid]
        assert s["impressions"] == len(pctrs)
        assert math.isclose(s["expected_clicks"], sum(pctrs), abs_tol=1e-3)
        spend = sum(c.bid * p for p in pctrs) if c.bid_type == "cpc" else c.bid / 1000 * len(pctrs)
        assert math.isclose(s["spend"], spend, abs_tol=1e-3)
    assert sum(s["impressions"] for s in result["summary"]) == result["scored"] - result["no_decision"]


def test_missing_and_unreadable_inputs(tx: Taxonomy, tmp_path: Path) -> None:
    engine = make_engine(tx, n=10)
    with pytest.raises(TargetingError, match="no requests file"):
        score(engine, tmp_path / "nope.parquet", tmp_path / "out.parquet", progress=False)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(TargetingError, match="not a readable Parquet"):
        score(engine, tmp_path / "junk.parquet", tmp_path / "out.parquet", progress=False)
    pq.write_table(pa.table({"request_id": ["x"]}), tmp_path / "no_user.parquet")
    with pytest.raises(TargetingError, match="user_id") as e:
        score(engine, tmp_path / "no_user.parquet", tmp_path / "out.parquet", progress=False)
    assert e.value.path == "user_id"


def test_directory_input_and_progress_on_stderr(tx: Taxonomy, requests_file: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    class Terminal(io.StringIO):  # bars are drawn on a terminal only
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    d = tmp_path / "parts"
    d.mkdir()
    t = pq.read_table(requests_file)
    pq.write_table(t.slice(0, 700), d / "a.parquet")
    pq.write_table(t.slice(700), d / "b.parquet")
    engine = make_engine(tx, seed=2)
    one = score(engine, requests_file, tmp_path / "one.parquet", progress=False)
    two = score(engine, d, tmp_path / "two.parquet", progress=True)
    assert _decisions(tmp_path / "one.parquet") == _decisions(tmp_path / "two.parquet")
    assert one["decisions"] == two["decisions"]
    assert "score: 100%" in sys.stderr.getvalue() and "1.50k/1.50k" in sys.stderr.getvalue()


def test_dask_local_cluster_same_as_local(tx: Taxonomy, requests_file: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    rows = pq.read_table(requests_file).to_pylist()
    users = sorted({r["user_id"] for r in rows})
    profiles = Profiles(pa.table({  # fills the requests' unknown attributes, on the workers too
        "user_id": users,
        "province": pa.array([440000] * len(users), pa.int32()),
        "city": pa.array([440300] * len(users), pa.int32()),
        "gender": ["female"] * len(users),
        "age": pa.array([33] * len(users), pa.int16()),
        "tags": [["investor", "traveler"]] * len(users),
    }))
    engine = make_engine(tx, seed=8, profiles=profiles)
    warm_store(engine, sorted({r["user_id"] for r in rows}))
    local = score(engine, requests_file, tmp_path / "local.parquet", summary=True, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = score(engine, requests_file, tmp_path / "parts", scheduler=client, summary=True,
                       progress=False, partition_rows=400)
    assert remote["partitions"] == 4
    assert len(list((tmp_path / "parts").glob("part-*.parquet"))) == 4
    assert _decisions(tmp_path / "parts") == _decisions(tmp_path / "local.parquet")
    assert _decisions(tmp_path / "local.parquet") == _expected(engine, rows)
    # same campaigns and impressions; sums of floats may differ in the last digit (summation order)
    by_id = lambda rows: sorted(rows, key=lambda r: r["campaign_id"])
    assert [(s["campaign_id"], s["impressions"]) for s in by_id(remote["summary"])] == \
        [(s["campaign_id"], s["impressions"]) for s in by_id(local["summary"])]
    for a, b in zip(by_id(remote["summary"]), by_id(local["summary"])):
        assert math.isclose(a["spend"], b["spend"], abs_tol=2e-4)
        assert math.isclose(a["expected_clicks"], b["expected_clicks"], abs_tol=2e-4)


def test_null_tag_lists_hide_their_values(tx: Taxonomy, tmp_path: Path) -> None:
    # Arrow lets a null list entry span values; they are not the request's tags
    from targeting.batchrequests import parse_requests

    tags = pa.ListArray.from_arrays(pa.array([0, 2, 3], pa.int32()), pa.array(["car_lover", "gamer", "student"]),
                                    mask=pa.array([True, False]))
    table = pa.table({"user_id": ["a", "b"], "tags": tags})
    reqs, errors = parse_requests(table, tx, now=NOW)
    assert not errors
    assert (reqs.tags[0] == -1).all() and list(reqs.tags[1][reqs.tags[1] >= 0]) == [tx.tag_index()["student"]]
