"""The batch ranker (``targeting.batchrank``) against ``Engine.decide``, request by request."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import click_model

from targeting.batchrank import decide_requests
from targeting.batchrequests import parse_requests, request_from_row
from targeting.bounds import BLOCKS_FROM

from .conftest import NOW, Setting, campaign_dicts, make_engine_from, warm_store


class _ToyModel:
    """pCTR from the request and the campaign, with an upper bound (the pruned, non-prior path).
    The bound must hold: a model whose ``max_pctr`` is too low gets answers that differ."""

    version = "toy-1"

    def predict(self, request: Any, campaigns: np.ndarray, index: Any) -> np.ndarray:
        lift = min(1.0 + 0.5 * len(request.tags or ()) + (0.25 if request.gender == "female" else 0.0), 3.25)
        return np.minimum(index.prior_ctr[campaigns] * lift * (1 + (campaigns % 3)), 1.0)

    def max_pctr(self, index: Any) -> np.ndarray:
        return np.minimum(index.prior_ctr * 3.25 * 3, 1.0)


@settings(deadline=None, max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(40, 400),  # 1 to 7+ words of clauses: several steps, campaigns straddling them
    seed=st.integers(0, 10_000),
    limit=st.sampled_from([1, 2, 3, 5, 10, 40, 100]),
    floor_cpm=st.sampled_from([0.0, 0.0, 2.0, 10.0, 30.0]),
    ties=st.sampled_from([0, 2, 4]),  # bids drawn from this many values (0: as generated)
    warm=st.booleans(),
    read=st.sampled_from(["snapshot", "fetch"]),
    model_kind=st.sampled_from(["prior", "prior", "toy", "learned", "learned-wide"]),
    straddle=st.booleans(),
    group=st.sampled_from([13, 2048]),
    first_words=st.sampled_from([1, 2]),
    first_chunk=st.sampled_from([1, 7, 32]),
    blocks_from=st.sampled_from([0, 0, BLOCKS_FROM]),  # 0: the block walk even on these small indexes
    offset=st.integers(0, 300),
)
def test_decide_requests_equals_engine_decide(
    setting: Setting, n: int, seed: int, limit: int, floor_cpm: float, ties: int,
    warm: bool, read: str, model_kind: str, straddle: bool, group: int, first_words: int, first_chunk: int,
    blocks_from: int, offset: int,
) -> None:
    """Every decision, its rank (ties by id), eCPM and pCTR, for random rule sets whose clauses
    span several of the walk's steps, with and without store state, floors and limits."""
    tx = setting.tx
    dicts = campaign_dicts(n, tx, seed)
    if ties:
        for k, c in enumerate(dicts):
            c["bid"] = {"cpm": float(2 + k % ties)} if k % 3 else {"cpc": 0.5 * (1 + k % ties)}
    if straddle:  # campaigns with several clauses a request often matches at once: one decision each
        for c in dicts[::3]:
            c["targeting"]["any_of"] = [{"gender": "male"}, {"gender": "female"}, {"scene": ["home", "office"]}]
    engine = make_engine_from(dicts, tx, model=_ToyModel() if model_kind == "toy" else None)
    if model_kind.startswith("learned"):  # per-request bounds (targeting.bounds), tight or loose weights
        engine.swap_model(click_model(tx, list(engine.index.ids), seed, 1.5 if model_kind == "learned-wide" else 0.4))
    rows = setting.rows.slice(offset, 100)
    if warm:
        times: dict[str, list[float]] = {}
        for r in rows.select(["user_id", "ts"]).to_pylist():
            times.setdefault(r["user_id"], []).append(r["ts"].timestamp())
        warm_store(engine, sorted(times), seed=seed, times=times)
    reqs, errors = parse_requests(rows, tx, now=NOW)
    assert not errors
    store = engine.store.snapshot() if read == "snapshot" else engine.store  # type: ignore[attr-defined]
    ranked, _ = decide_requests(engine.layout, tx, store, reqs, limit=limit,
                             floor_cpm=floor_cpm, group=group, first_words=first_words,
                             first_chunk=first_chunk, blocks_from=blocks_from)
    got: dict[int, list[tuple[Any, ...]]] = {}
    for b, r, c, e, p in zip(ranked.req.tolist(), ranked.rank.tolist(), ranked.camp.tolist(),
                             ranked.ecpm.tolist(), ranked.pctr.tolist()):
        got.setdefault(b, []).append((r, engine.index.ids[c], round(e, 6), round(p, 6)))
    want = {}
    for b, row in enumerate(rows.to_pylist()):
        ans = engine.decide({**request_from_row(row), "limit": limit, "floor_cpm": floor_cpm})
        if ans["decisions"]:
            want[b] = [(k + 1, d["campaign_id"], d["ecpm"], d["pctr"]) for k, d in enumerate(ans["decisions"])]
    assert got == want
