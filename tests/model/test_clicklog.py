"""Synthetic requests and click logs: contract columns, labels from the documented truth, eligibility."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from targeting.batchrequests import request_from_row
from targeting.clicklog import GroundTruth, generate_requests
from targeting.engine import Engine
from targeting.errors import TargetingError

REQUEST_COLUMNS = ["request_id", "user_id", "ts", "province", "city", "gender", "age", "tags", "scene", "slot"]


def test_requests_follow_the_contract(tmp_path: Path, engine: Engine) -> None:
    p = generate_requests(tmp_path / "r.parquet", 5000, taxonomy=engine.taxonomy, seed=1, progress=False)
    t = pq.read_table(p)
    assert t.column_names == REQUEST_COLUMNS
    assert pa.types.is_timestamp(t.schema.field("ts").type) and t.schema.field("ts").type.tz
    assert t.schema.field("tags").type == pa.list_(pa.string())
    assert t.num_rows == 5000 and t.column("user_id").null_count == 0
    assert len(set(t.column("request_id").to_pylist())) == 5000
    tx = engine.taxonomy
    assert set(t.column("tags").combine_chunks().flatten().to_pylist()) <= set(tx.tags)
    assert set(t.column("scene").drop_null().to_pylist()) <= set(tx.scenes)
    # some attributes are unknown, as in real traffic
    assert 0 < t.column("age").null_count < 1000 and 0 < t.column("scene").null_count < 1000
    again = generate_requests(tmp_path / "r2.parquet", 5000, taxonomy=tx, seed=1, progress=False,
                              end=pq.read_table(p).column("ts").to_pylist()[0].timestamp() + 10**9)
    assert pq.read_table(again).column("user_id").equals(t.column("user_id"))  # seeded


def test_log_columns_labels_and_truth(click_log: tuple[Path, dict[str, Any]], engine: Engine) -> None:
    path, info = click_log
    t = pq.read_table(path)
    assert t.column_names == [*REQUEST_COLUMNS, "campaign_id", "clicked", "true_ctr", "eligible"]
    clicked = t.column("clicked").to_numpy()
    p = t.column("true_ctr").to_numpy()
    assert set(np.unique(clicked)) == {0, 1}
    assert ((p > 0) & (p < 1)).all()
    # labels are drawn from true_ctr: the click rate matches the mean probability
    assert abs(clicked.mean() - p.mean()) < 4 * np.sqrt(p.mean() / clicked.size)
    assert info["clicks"] == clicked.sum() and info["rows"] == t.num_rows
    assert set(t.column("campaign_id").to_pylist()) <= set(engine.index.ids)


def test_truth_has_the_documented_interactions(engine: Engine) -> None:
    tx = engine.taxonomy
    truth = GroundTruth(tx)
    cats = list(tx.categories)
    ti = tx.tag_index()
    base: dict[str, Any] = {"quality": np.zeros(2), "ts": np.full(2, 1.795e9), "gender": np.zeros(2, int),
                                "age": np.zeros(2, int), "scene": np.zeros(2, int)}
    car = np.array([[ti["car_lover"]], [-1]])
    auto = truth.ctr(category=np.full(2, cats.index("auto")), tags=car, **base)
    assert auto[0] > auto[1] * 2  # car_lover x auto: +1.2 on the logit
    student = np.array([[ti["student"]], [-1]])
    fin = truth.ctr(category=np.full(2, cats.index("finance")), tags=student, **base)
    assert fin[0] < fin[1]  # student x finance: negative
    prior = tx.categories["games"].prior_ctr
    none = truth.ctr(category=np.array([cats.index("games")]), tags=np.full((1, 0), -1),
                     **{k: v[:1] for k, v in base.items()})
    assert 0.3 * prior < none[0] < 3 * prior  # category base rate comes from the taxonomy prior


def test_logged_campaigns_were_eligible_like_decide(click_log: tuple[Path, dict[str, Any]],
                                                     engine: Engine) -> None:
    t = pq.read_table(click_log[0]).slice(0, 300).to_pylist()
    checked = 0
    for row in t:
        raw = {**request_from_row(row), "explain": True, "limit": 100}
        eligible = engine.decide(raw)["explain"]["eligible"]
        if row["eligible"]:
            assert row["campaign_id"] in eligible
            checked += 1
        else:
            assert eligible == []
    assert checked > 50


def test_bad_sizes(tmp_path: Path, engine: Engine) -> None:
    from targeting.clicklog import generate_log

    with pytest.raises(TargetingError):
        generate_log(tmp_path / "x.parquet", 0, engine=engine)
    with pytest.raises(TargetingError):
        generate_requests(tmp_path / "x.parquet", -1, taxonomy=engine.taxonomy)
