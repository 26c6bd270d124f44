"""Export formats, hashing, minimum size, Dask, and background jobs."""

from __future__ import annotations

import csv
import hashlib

import pyarrow.parquet as pq
import pytest
from reference import matches

from targeting.audience.jobs import ExportJobs
from targeting.compiler import compile_campaigns
from targeting.engine import Engine
from targeting.errors import NotFound, TargetingError, Unavailable
from targeting.spec import parse_spec
from targeting.stores import MemoryStore

from .conftest import features

SPEC = {"geo": ["广东", "江苏"], "tags": {"any": ["foodie", "online_shopper"]}}


def want_ids(rows, tx, raw=SPEC):
    spec = parse_spec(raw, tx)
    return {r["user_id"] for r in rows if matches(spec, features(r), tx)}


def test_csv_export_with_salted_sha256(index, rows, tx, tmp_path):
    out = tmp_path / "a.csv"
    n = index.export(parse_spec(SPEC, tx), out, fmt="csv", hash_salt="pepper")
    with open(out, newline="") as fh:
        got = [r["user_id"] for r in csv.DictReader(fh)]
    expected = {hashlib.sha256(("pepper" + u).encode()).hexdigest() for u in want_ids(rows, tx)}
    assert n == len(got) and set(got) == expected


def test_min_size_refuses_small_audiences_and_writes_nothing(index, tx, tmp_path):
    out = tmp_path / "a.parquet"
    with pytest.raises(TargetingError) as e:
        index.export(parse_spec({"geo": ["深圳"], "age": [[30, 31]]}, tx), out, min_size=1000)
    assert e.value.code == "audience_too_small"
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad,path", [({"fmt": "xlsx"}, "format"), ({"hash_salt": 5}, "hash_salt"),
                                      ({"min_size": -1}, "min_size")], ids=["format", "salt", "min-size"])
def test_bad_export_options_are_4xx(bad, path, index, tx, tmp_path):
    with pytest.raises(TargetingError) as e:
        index.export(parse_spec({}, tx), tmp_path / "x", **bad)
    assert e.value.path == path


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_dask_export_writes_one_partition_per_shard(processes, index, rows, tx, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        out = tmp_path / "aud"
        n = index.export(parse_spec(SPEC, tx), out, scheduler=client)
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == len(index.shards)
    got = [u for p in parts for u in pq.read_table(p).column("user_id").to_pylist()]
    assert n == len(got) and set(got) == want_ids(rows, tx)


def _engine(index, tx) -> Engine:
    return Engine(tx, compile_campaigns((), tx, "v"), store=MemoryStore(), audience=index, profiles=index)


def test_export_job_runs_in_the_background_to_done(index, rows, tx, tmp_path):
    jobs = ExportJobs(tmp_path)
    try:
        job = jobs.start(_engine(index, tx), SPEC, advertiser="acme")  # an operator's job for acme
        assert job["state"] in ("queued", "running", "done")
        final = jobs.wait(job["id"])
        assert final["state"] == "done" and final["progress"] == 1.0
        assert final["rows"] == len(want_ids(rows, tx))
        assert set(pq.read_table(jobs.path(job["id"])).column("user_id").to_pylist()) == want_ids(rows, tx)
        with pytest.raises(NotFound):  # another advertiser cannot see it
            jobs.get(job["id"], advertiser="rival")
        with pytest.raises(NotFound):
            jobs.get("nope")
    finally:
        jobs.close()


def test_export_job_refuses_bad_specs_and_platform_data_up_front(index, tx, tmp_path):
    jobs = ExportJobs(tmp_path)
    try:
        with pytest.raises(TargetingError) as e:
            jobs.start(_engine(index, tx), {"geo": ["atlantis"]}, advertiser="acme", first_party_only=True)
        assert e.value.path.startswith("targeting.geo")
        with pytest.raises(TargetingError) as e:  # an advertiser's key exports first-party audiences only
            jobs.start(_engine(index, tx), {"geo": ["深圳"], "age": [[30, 31]]}, advertiser="acme",
                       first_party_only=True)
        assert e.value.code == "platform_data" and e.value.status == 403
        with pytest.raises(TargetingError):
            jobs.start(_engine(index, tx), {}, advertiser="acme", fmt="xml")
        assert jobs.stats["started"] == 0
    finally:
        jobs.close()


def test_failed_job_reports_its_error(index, tx, tmp_path):
    jobs = ExportJobs(tmp_path / "out")
    try:
        blocker = tmp_path / "out"
        job = jobs.start(_engine(index, tx), SPEC)  # operator export, no minimum
        jobs.wait(job["id"])
        # a job whose output directory vanished and became a file fails with a reason
        import shutil

        shutil.rmtree(blocker)
        blocker.write_text("not a directory")
        job2 = jobs.start(_engine(index, tx), SPEC)
        final = jobs.wait(job2["id"])
        assert final["state"] == "failed" and final["error"]["message"]
        with pytest.raises(Unavailable):
            jobs.path(job2["id"])
    finally:
        jobs.close()
