"""Serve with a known click behaviour, click through the API, train from the log, recover the behaviour."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from deliv import KEYS, Clock, TestClient, bearer, write_rules

from service import Settings, create_app
from service.auth import KeyRing
from targeting import Engine
from targeting.delivery import attach

CATEGORIES = ["auto", "finance", "fashion", "tech", "travel", "food", "games", "education"]
# one campaign per category, each shown to everyone; which one is shown is drawn at random (an exploration bucket)
CAMPAIGNS = [{"id": f"c-{c}", "advertiser": f"adv-{c}", "bid": {"cpm": 10}, "category": c, "targeting": {}}
             for c in CATEGORIES]
BASE = {"auto": -1.9, "finance": -2.2, "fashion": -1.7, "tech": -1.8, "travel": -2.0, "food": -1.5,
        "games": -1.4, "education": -2.1}  # high CTRs: enough clicks in a test-sized log


def truth(req: dict[str, Any], category: str) -> float:
    """The click behaviour: in the model's feature space (tag × category, gender × category, age band ×
    category, scene × category), strong enough for a few thousand clicks to show."""
    z = BASE[category]
    tags = set(req.get("tags") or ())
    z += 2.5 * ("car_lover" in tags and category == "auto") + 2.5 * ("gamer" in tags and category == "games")
    z += 2.2 * ("investor" in tags and category == "finance") + 2.0 * ("traveler" in tags and category == "travel")
    z += 1.6 * (req.get("gender") == "female" and category == "fashion")
    z -= 1.4 * (req.get("gender") == "male" and category == "fashion")
    age = req.get("age")
    z += 1.4 * (age is not None and age < 25 and category in ("games", "education"))
    z -= 1.2 * (age is not None and age >= 55 and category == "games")
    z += 1.2 * (req.get("scene") == "office" and category == "finance")
    return 1 / (1 + math.exp(-z))


def requests(tmp: Path, n: int, seed: int, end: float) -> list[dict[str, Any]]:
    from targeting.clicklog import generate_requests
    from targeting.taxonomy import Taxonomy

    tx = Taxonomy.load(Path(__file__).resolve().parents[2] / "rules" / "taxonomy")
    p = generate_requests(tmp / f"req-{seed}.parquet", n, taxonomy=tx, seed=seed, days=3, end=end, progress=False)
    out = []
    for r in sorted(pq.read_table(p).to_pylist(), key=lambda r: r["ts"]):
        req: dict[str, Any] = {"user_id": r["user_id"], "ts": r["ts"].timestamp(), "limit": 10}
        if r["city"] is not None:
            req["geo"] = {"city": r["city"]}
        elif r["province"] is not None:
            req["geo"] = {"province": r["province"]}
        for k in ("gender", "age", "tags", "scene", "slot"):
            if r[k] is not None:
                req[k] = r[k]
        out.append(req)
    return out


def serve(client: TestClient, clock: Clock, reqs: list[dict[str, Any]], rng: np.random.Generator) -> list[tuple]:
    """Decide in batches, report one random decision of each as the impression, click with the truth's
    probability. Returns (request, campaign category, truth p, clicked) per impression."""
    shown = []
    for at in range(0, len(reqs), 1000):
        chunk = reqs[at:at + 1000]
        clock.now = chunk[-1]["ts"] + 1
        answers = client.post("/v1/decide/batch", json={"requests": chunk}, headers=bearer("ad_server")).json()
        imps, clicks = [], []
        for req, a in zip(chunk, answers["responses"]):
            d = a["decisions"][rng.integers(len(a["decisions"]))]
            cat = d["campaign_id"][2:]
            p = truth(req, cat)
            clicked = bool(rng.random() < p)
            imps.append({"impression_id": d["impression_id"], "ts": req["ts"]})
            if clicked:
                clicks.append({"impression_id": d["impression_id"], "ts": req["ts"] + 5})
            shown.append((req, d["campaign_id"], p, clicked))
        assert client.post("/v1/impressions", json={"impressions": imps},
                           headers=bearer("ad_server")).json()["accepted"] == len(imps)
        assert client.post("/v1/clicks", json={"clicks": clicks},
                           headers=bearer("ad_server")).json()["accepted"] == len(clicks)
    return shown


def test_the_model_trained_from_the_log_recovers_the_click_behaviour(tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    from targeting.delivery.train import train_from_log

    rules = write_rules(tmp_path / "rules", CAMPAIGNS)
    end = 1_795_000_000.0  # 2026-11-18
    clock = Clock(end)
    engine = Engine.load(rules, clock=clock)
    attach(engine, log_dir=tmp_path / "log", key=b"k" * 32)
    keys = KeyRing.from_entries([{"key": KEYS["ad_server"], "role": "ad_server"}])
    rng = np.random.default_rng(7)
    with TestClient(create_app(engine, Settings(auth=keys))) as client:
        serve(client, clock, requests(tmp_path, 40_000, seed=1, end=end), rng)
        engine.delivery.writer.flush()
    metrics = train_from_log(tmp_path / "log", rules_dir=rules, out_dir=tmp_path / "model", progress=False)
    assert metrics["from_log"]["rows"] == 40_000 and metrics["from_log"]["clicks"] == metrics["clicks"] > 2_000

    # held out: requests of the days after, served and clicked the same way, never seen by training
    served = Engine.load(rules, model=tmp_path / "model", clock=clock)
    held_clock = Clock(end + 3 * 86400)
    held = Engine.load(rules, clock=held_clock)
    attach(held, log_dir=None, key=b"k" * 32)
    with TestClient(create_app(held, Settings(auth=keys))) as client:
        rows = serve(client, held_clock, requests(tmp_path, 15_000, seed=2, end=end + 3 * 86400), rng)
    clicked = np.array([r[3] for r in rows])
    p_truth = np.array([r[2] for r in rows])
    p_model = np.array([served.pctr(req, cid) for req, cid, _, _ in rows])
    auc_truth, auc_model = roc_auc_score(clicked, p_truth), roc_auc_score(clicked, p_model)
    print(f"held-out AUC: model {auc_model:.4f}, truth {auc_truth:.4f}")
    assert auc_truth > 0.6  # the behaviour is there to be learned
    assert auc_model == pytest.approx(auc_truth, abs=0.02), (auc_model, auc_truth)


def test_train_cli_from_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI glue, on a log without clicks: the trainer's own refusal comes through as exit 2."""
    from targeting.cli import main
    from targeting.delivery.log import LogWriter

    rules = write_rules(tmp_path / "rules", CAMPAIGNS)
    w = LogWriter(tmp_path / "log")
    w.append("impressions", [(f"i{n}", 1_795_000_000.0 + n, f"u{n}", "c-auto", "adv-auto", 10.0, 0.01, None, None,
                              None, None, None, None, None, 10, 1) for n in range(50)])
    w.close()
    code = main(["train", "--rules", str(rules), "--from-log", str(tmp_path / "log"), "--out", str(tmp_path / "m"),
                 "--quiet"])
    assert code == 2 and "one label" in capsys.readouterr().err
