"""Training, the versioned model directory, numpy inference, and refusing bad inputs."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from targeting.batchrequests import parse_requests
from targeting.engine import Engine
from targeting.errors import TargetingError
from targeting.model import LogisticModel, load_model, train
from targeting.request import parse_request

from .conftest import RULES


def test_training_reports_metrics_against_the_truth(trained: tuple[Path, dict[str, Any]]) -> None:
    out, m = trained
    assert {"auc", "log_loss", "truth_auc", "truth_log_loss", "base_log_loss", "test_rows", "version"} <= set(m)
    assert m["test_rows"] == round(m["rows"] * 0.2)
    assert 0.6 < m["auc"] <= m["truth_auc"] + 0.03  # learns something real, cannot beat the truth by much
    assert m["log_loss"] < m["base_log_loss"]  # better than a constant CTR
    meta = json.loads((out / "model.json").read_text())
    assert meta["format_version"] == 1 and meta["version"] == m["version"]
    assert meta["metrics"]["auc"] == m["auc"] and meta["feature_spec"]["zone"] == "Asia/Shanghai"
    assert (out / "weights.npz").is_file()


def test_loaded_model_predicts_in_numpy_like_pairs(trained: tuple[Path, dict], engine: Engine) -> None:
    model = load_model(trained[0], engine.taxonomy)
    assert isinstance(model, LogisticModel) and model.version == trained[1]["version"]
    idx = engine.index
    raws = [
        {"user_id": "u1", "ts": "2026-11-21T21:30:00+08:00", "gender": "male", "age": 30,
         "tags": ["car_lover", "investor"], "scene": "home"},
        {"user_id": "u2", "ts": "2026-11-23T09:10:00+08:00"},
        {"user_id": "u3", "ts": "2026-11-22T13:00:00Z", "gender": "female", "age": 70, "tags": ["beauty"]},
    ]
    camps = np.arange(idx.n_campaigns)
    table = pa.table({"user_id": [r["user_id"] for r in raws],
                      "ts": pa.array([parse_request(r, engine.taxonomy, 0).ts * 1e6 for r in raws]).cast(
                          pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                      "gender": [r.get("gender") for r in raws], "age": [r.get("age") for r in raws],
                      "tags": [r.get("tags") for r in raws], "scene": [r.get("scene") for r in raws]})
    reqs, errors = parse_requests(table, engine.taxonomy, now=0)
    assert not errors
    req = np.repeat(np.arange(3), camps.size)
    pairs = model.predict_user_pairs(model.user_logits(reqs), req, np.tile(camps, 3), idx)
    for i, raw in enumerate(raws):
        one = model.predict(parse_request(raw, engine.taxonomy, 0), camps, idx)
        assert one.shape == camps.shape and ((one > 0) & (one < 1)).all()
        assert np.array_equal(one, pairs[i * camps.size:(i + 1) * camps.size])  # bit for bit
    car = model.predict(parse_request(raws[0], engine.taxonomy, 0), camps, idx)
    plain = model.predict(parse_request({**raws[0], "tags": []}, engine.taxonomy, 0), camps, idx)
    autos = idx.category == list(engine.taxonomy.categories).index("auto")
    assert (car[autos] > plain[autos]).mean() > 0.8  # the car_lover x auto interaction was learned


def test_engine_uses_and_swaps_the_model(trained: tuple[Path, dict]) -> None:
    e = Engine.load(RULES, model=trained[0])
    cid = e.index.ids[0]
    p = e.pctr({"user_id": "x", "ts": "2026-11-21T21:30:00+08:00", "age": 30}, cid)
    assert p != e.index.prior_ctr[0] and 0 < p < 1
    from targeting.scoring import PriorModel

    e.swap_model(PriorModel())
    assert e.pctr({"user_id": "x", "age": 30}, cid) == e.index.prior_ctr[0]


def test_fast_path_with_the_learned_model_equals_the_exhaustive_one(trained: tuple[Path, dict]) -> None:
    """With a learned model pCTR depends on the request: the fast path scores blocks of
    candidates and stops on the model's pCTR bound, in one walk (a small index, as here) or
    per block of the model's layout (``targeting.bounds``). Same decisions, ties and floors
    included, as the exhaustive path that ``explain`` takes."""
    from targeting import ordered
    from targeting.decide import finish, prepare
    from targeting.layout import Layout
    from targeting.matcher import moment

    e = Engine.load(RULES, model=trained[0])
    snap = e._snap
    assert not snap.ordered.exact
    walks = (snap.ordered, ordered.ordered_index(Layout.of(snap.index, snap.model), blocks_from=0))
    assert walks[0].blocks is None and walks[1].blocks is not None
    rng = np.random.default_rng(11)
    tags, scenes = e.taxonomy.tag_ids, list(e.taxonomy.scenes)
    compared = 0
    for i in range(400):
        raw = {"user_id": f"u{i}", "ts": 1_790_000_000 + int(rng.integers(0, 14 * 86400)),
               "gender": ["male", "female", None][i % 3], "age": int(rng.integers(16, 70)),
               "tags": list(rng.choice(tags, size=int(rng.integers(0, 5)), replace=False)),
               "scene": scenes[i % len(scenes)], "geo": {"province": [440000, 310000, 110000, 510000][i % 4]},
               "limit": 1 + i % 6, "floor_cpm": [0.0, 0.0, 5.0, 20.0][i % 4]}
        req = parse_request({k: v for k, v in raw.items() if v is not None}, e.taxonomy, 0)
        m = moment(snap.index.zones, req.ts)
        for o, step in itertools.product(walks, (1, 8, 512)):
            fast = ordered.prepare(o, e.taxonomy, req, None, m, first_step=step)
            slow = prepare(snap.index, e.taxonomy, req, snap.model, None, m)
            assert fast.n_candidates == slow.n_candidates
            assert sorted(fast.needs) == sorted(slow.needs)
            state = e.store.fetch([slow.query])[0] if slow.query is not None else None
            assert finish(snap.index, e.taxonomy, snap.model, fast, state) == \
                finish(snap.index, e.taxonomy, snap.model, slow, state)
            compared += bool(slow.ranked)
    assert compared > 800  # most requests have candidates


def test_request_path_does_not_import_sklearn(trained: tuple[Path, dict]) -> None:
    code = (
        "import sys\nfrom targeting import Engine\n"
        f"e = Engine.load({str(RULES)!r}, model={str(trained[0])!r})\n"
        "e.decide({'user_id': 'u', 'age': 30, 'tags': ['investor']})\n"
        "assert e.model.version.startswith('m-')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(RULES.parent))
    assert out.stdout.strip() == "[]"


def test_unknown_campaigns_fall_back_to_category_with_a_warning(
        trained: tuple[Path, dict], engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    from targeting.compiler import compile_campaigns
    from targeting.rules import validate_campaigns

    tx = engine.taxonomy
    new = [{"id": f"zz-new-{k}", "advertiser": "newco", "category": "auto", "bid": {"cpc": 1.0},
            "targeting": {}} for k in range(2)]
    camps = (*engine.index.campaigns, *validate_campaigns([("new.yaml", new)], tx))
    index = compile_campaigns(camps, tx, "with-new")
    model = load_model(trained[0], tx)
    req = parse_request({"user_id": "u", "age": 30, "tags": ["car_lover"]}, tx, 1.79e9)
    pos = np.array([index.position["zz-new-0"], index.position["zz-new-1"]])
    with caplog.at_level(logging.WARNING, logger="targeting.model"):
        p = model.predict(req, pos, index)
    warned = [r.getMessage() for r in caplog.records if "zz-new-0" in r.getMessage()]
    assert len(warned) == 1 and "category only" in warned[0]
    assert p[0] == p[1]  # no id weight: both new auto campaigns score as the auto category
    known = [c.id for c in index.campaigns if c.category == "auto" and c.id in model.campaign_ids]
    assert known and model.predict(req, np.array([index.position[known[0]]]), index)[0] != p[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="targeting.model"):
        model.predict(req, pos, index)
    assert not caplog.records  # once per rule set, not per request


# ---------------------------------------------------------------- bad logs
def _log(tmp_path: Path, click_log: tuple[Path, dict], **change: Any) -> Path:
    t = pq.read_table(click_log[0]).slice(0, 2000)
    for name, values in change.items():
        if values is None:
            t = t.drop_columns([name])
        else:
            t = t.set_column(t.column_names.index(name), name, values)
    p = tmp_path / "bad.parquet"
    pq.write_table(t, p)
    return p


@pytest.mark.parametrize(("change", "message"), [
    ({"clicked": None}, "no 'clicked' column"),  # column missing
    ({"campaign_id": None}, "no 'campaign_id' column"),
    ({"clicked": pa.array([0, 1, 2] + [0] * 1997, pa.int8())}, "row 2 has 2"),  # a label other than 0/1
    ({"clicked": pa.array([None] + [0] * 1999, pa.int8())}, "null labels"),
    ({"clicked": pa.array([0] * 2000, pa.int8())}, "only one label"),
    ({"clicked": pa.array(["yes"] * 2000)}, "must be 0 or 1"),  # wrong type
], ids=["no_clicked", "no_campaign_id", "label_2", "null_label", "one_class", "string_labels"])
def test_bad_logs_are_refused(tmp_path: Path, click_log: tuple[Path, dict], change: dict, message: str) -> None:
    with pytest.raises(TargetingError, match=message):
        train(_log(tmp_path, click_log, **change), rules_dir=RULES, out_dir=tmp_path / "m", progress=False)
    assert not (tmp_path / "m" / "model.json").exists()


def test_log_rows_of_unknown_campaigns_are_dropped_loudly(tmp_path: Path, click_log: tuple[Path, dict],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    t = pq.read_table(click_log[0]).slice(0, 20000)
    ids = t.column("campaign_id").to_pylist()
    ids[:100] = ["retired-campaign"] * 100
    p = _log(tmp_path, click_log, campaign_id=pa.array(ids[:2000]))
    with caplog.at_level(logging.WARNING, logger="targeting.model"):
        try:
            m = train(p, rules_dir=RULES, out_dir=tmp_path / "m", progress=False)
        except TargetingError as e:  # 2000 rows may hold too few clicks to split; the warning came first
            assert e.code == "one_class"
        else:
            assert m["dropped_unknown_campaign_rows"] == 100
    assert any("retired-campaign" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- bad model dirs
def _rewrite_json(d: Path, **change: Any) -> None:
    meta = json.loads((d / "model.json").read_text())
    meta.update(change)
    (d / "model.json").write_text(json.dumps(meta))


def _corrupt(kind: str, d: Path) -> None:
    if kind == "bad_json":
        (d / "model.json").write_text("{not json")
    elif kind == "other_version":
        _rewrite_json(d, format_version=2)
    elif kind == "not_a_model":
        _rewrite_json(d, format="something-else")
    elif kind == "missing_weights":
        (d / "weights.npz").unlink()
    elif kind == "checksum":
        raw = bytearray((d / "weights.npz").read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (d / "weights.npz").write_bytes(bytes(raw))
    elif kind in ("short_arrays", "missing_array"):
        import hashlib

        with np.load(d / "weights.npz") as z:
            arrays = {k: z[k] for k in z.files}
        if kind == "short_arrays":
            arrays["W"] = arrays["W"][:-3]
        else:
            del arrays["bias"]
        with open(d / "weights.npz", "wb") as fh:
            np.savez(fh, **arrays)
        meta = json.loads((d / "model.json").read_text())
        meta["weights"]["sha256"] = hashlib.sha256((d / "weights.npz").read_bytes()).hexdigest()
        (d / "model.json").write_text(json.dumps(meta))
    elif kind == "no_model_json":
        (d / "model.json").unlink()


CORRUPTIONS = {
    "bad_json": "not valid JSON",
    "other_version": "format version 2",
    "not_a_model": "not a targeting-click-model",
    "missing_weights": "weights.npz is missing",
    "checksum": "does not match the checksum",
    "short_arrays": "wrong shapes",
    "missing_array": "unreadable or incomplete",
    "no_model_json": "no model.json",
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_corrupted_model_dirs_are_refused(model_copy: Path, engine: Engine, kind: str) -> None:
    _corrupt(kind, model_copy)
    with pytest.raises(TargetingError, match=CORRUPTIONS[kind]) as e:
        load_model(model_copy, engine.taxonomy)
    assert e.value.code == "bad_model"
    with pytest.raises(TargetingError):
        Engine.load(RULES, model=model_copy)
