"""Pieces of the vectorized pipeline against their plain forms."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import click_model

from targeting.batchmatch import PairMatcher, day_groups, match_words, matched_pairs, tag_checks
from targeting.batchrank import decide_requests
from targeting.batchrequests import clocks, parse_requests, request_from_row
from targeting.bitset import bit_pairs, byte_bits
from targeting.bounds import BLOCKS_FROM
from targeting.clicklog import generate_requests
from targeting.decide import point_of
from targeting.layout import Layout
from targeting.localtime import local_minutes
from targeting.matcher import match, moment
from targeting.storecheck import _unique
from targeting.taxonomy import Taxonomy

from .conftest import NOW, campaign_dicts, make_engine_from, warm_store


@pytest.mark.parametrize("zones", [1, 2, 5, 12, 14], ids=lambda z: f"{z}_zones")  # 14: the fallback path
def test_day_groups_equal_unique_rows(zones: int) -> None:
    rng = np.random.default_rng(zones)
    base = rng.integers(739_000, 739_010, 5000)
    # an instant's local dates differ by up to two days between zones (UTC-12 .. UTC+14)
    days = (base[:, None] + rng.integers(-2, 3, (5000, zones))).astype(np.int32)
    days[:, 0] = base
    uniq, inv = day_groups(days)
    want, want_inv = np.unique(days, axis=0, return_inverse=True)
    assert np.array_equal(uniq[inv], days)  # every row maps back to itself
    assert len(uniq) == len(want) and len({tuple(r) for r in uniq.tolist()}) == len(uniq)
    assert np.array_equal(want[want_inv.reshape(-1)], uniq[inv])



@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York", "Europe/London", "Asia/Kolkata",
                                  "Australia/Lord_Howe", "Asia/Kathmandu", "America/St_Johns"])
@pytest.mark.parametrize("spread_days", [2, 400])  # a few quarter-hours per request, or one each
def test_local_minutes_equal_datetime(zone: str, spread_days: int) -> None:
    """Local wall-clock minutes, one conversion per UTC quarter-hour, against ``datetime`` itself,
    around the 2026 DST changes (half-hour and 45-minute offsets, Lord Howe's 30-minute DST)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    rng = np.random.default_rng(spread_days)
    changes = [dt.datetime(2026, m, d, tzinfo=dt.UTC).timestamp() for m, d in [(3, 8), (3, 29), (4, 5), (10, 4), (11, 1)]]
    ts = np.concatenate([c + rng.uniform(-spread_days * 43200, spread_days * 43200, 300) for c in changes])
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    want = [(dt.datetime.fromtimestamp(t // 60 * 60, ZoneInfo(zone)).replace(tzinfo=dt.UTC) - epoch)
            // dt.timedelta(minutes=1) for t in ts.tolist()]
    assert local_minutes(ts, zone).tolist() == want


@pytest.mark.parametrize(("size", "span"), [(0, 1), (1, 1), (50, 3), (5000, 200), (300, 10**9)])  # last: the sort
def test_unique_equals_numpy(size: int, span: int) -> None:
    code = np.random.default_rng(size).integers(-span, span, size) * 7 + 10**12
    uniq, inv = _unique(code)
    want, want_inv = np.unique(code, return_inverse=True)
    assert np.array_equal(uniq, want) and np.array_equal(inv, want_inv.reshape(-1))


@pytest.mark.parametrize(("rows", "words", "density"), [(1, 1, 0.0), (5, 3, 0.5), (100, 7, 0.02), (3, 2, 1.0)])
def test_bit_pairs_are_the_set_bits_in_order(rows: int, words: int, density: float) -> None:
    bits = np.random.default_rng(rows).random((rows, words * 64)) < density
    packed = np.packbits(bits, axis=1, bitorder="little").view(np.uint64).reshape(rows, words)
    r, c = bit_pairs(packed)
    want_r, want_c = np.nonzero(bits)  # by row, then bit
    assert np.array_equal(r, want_r) and np.array_equal(c, want_c)


@pytest.mark.parametrize(("size", "density"), [(0, 0.5), (1, 1.0), (7, 0.3), (1333, 0.05), (64, 0.9)])
def test_byte_bits_are_the_set_bits(size: int, density: float) -> None:
    bits = np.random.default_rng(size).random(size * 8) < density
    raw = np.frombuffer(np.packbits(bits, bitorder="little").tobytes(), dtype=np.uint8)
    assert np.array_equal(byte_bits(raw), np.flatnonzero(bits))

@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 300), seed=st.integers(0, 10_000), pairs=st.integers(0, 400), ordered=st.booleans())
def test_pair_matcher_equals_match_words(setting: Setting, n: int, seed: int, pairs: int, ordered: bool) -> None:
    """Scattered (request, word) pairs and the dense words, each with the tag rules on their
    bits, give exactly the bits of decide's matcher (``targeting.matcher.match``, one request
    at a time), in index order or a ranking order."""
    engine = make_engine_from(campaign_dicts(n, setting.tx, seed), setting.tx)
    index = engine.index
    layout = Layout.of(index, _RandomBound(seed)) if ordered else Layout.identity(index)
    reqs, _ = parse_requests(setting.rows, setting.tx, now=NOW)
    clk = clocks(index.zones, reqs.ts)
    # the reference, in the layout's order: bit i of a request's row is clause perm[i]
    exact = np.zeros((len(reqs), index.n_words * 64), dtype=bool)
    for b in range(len(reqs)):
        req = reqs.request(b, setting.tx)
        one = match(index, point_of(req, setting.tx, index.tag_index), moment(index.zones, req.ts))
        exact[b, :layout.m] = np.unpackbits(one.view(np.uint8), bitorder="little")[layout.perm].astype(bool)
    dense = np.packbits(exact, axis=1, bitorder="little").view(np.uint64)
    rb, clause = matched_pairs(layout, reqs, clk)
    want_b, want_pos = np.nonzero(exact)
    assert np.array_equal(rb, want_b) and np.array_equal(clause, layout.perm[want_pos])
    rng = np.random.default_rng(seed)
    pr = np.sort(rng.integers(0, len(reqs), pairs))
    pw = rng.integers(0, index.n_words, pairs)
    pm = PairMatcher(layout, reqs, clk)
    words = pm.words(pr, pw)
    assert np.array_equal(words, match_words(layout, reqs, clk, slice(0, index.n_words))[pr, pw])
    k, bit = bit_pairs(words[:, None])
    ok = tag_checks(layout, pm.have[pr[k]], pw[k] * 64 + bit)
    want_k, want_bit = bit_pairs(dense[pr, pw][:, None])
    assert np.array_equal(k[ok], want_k) and np.array_equal(bit[ok], want_bit)


class _RandomBound:
    """A model whose only use here is its bound: a random visit order."""

    def __init__(self, seed: int) -> None:
        self.version, self.seed = f"random-bound-{seed}", seed

    def predict(self, request: Any, campaigns: np.ndarray, index: Any) -> np.ndarray:
        return np.asarray(index.prior_ctr[campaigns])

    def max_pctr(self, index: Any) -> np.ndarray:
        return np.random.default_rng(self.seed).random(index.n_campaigns)


# ------------------------------------------------------------------ decide_requests against Engine.decide
class _ToyModel:
    """pCTR from the request and the campaign, with an upper bound (the pruned, non-prior path).
    The bound must hold: a model whose ``max_pctr`` is too low gets answers that differ."""

    version = "toy-1"

    def predict(self, request: Any, campaigns: np.ndarray, index: Any) -> np.ndarray:
        lift = min(1.0 + 0.5 * len(request.tags or ()) + (0.25 if request.gender == "female" else 0.0), 3.25)
        return np.minimum(index.prior_ctr[campaigns] * lift * (1 + (campaigns % 3)), 1.0)

    def max_pctr(self, index: Any) -> np.ndarray:
        return np.minimum(index.prior_ctr * 3.25 * 3, 1.0)


class Setting:
    """The taxonomy and 400 generated requests, shared by the examples (a short repr: Hypothesis
    prints the arguments of a failing example)."""

    def __init__(self, tx: Taxonomy, rows: pa.Table) -> None:
        self.tx, self.rows = tx, rows

    def __repr__(self) -> str:
        return f"Setting({self.rows.num_rows} requests)"


@pytest.fixture(scope="module")
def setting(tx: Taxonomy, tmp_path_factory: pytest.TempPathFactory) -> Setting:
    path = tmp_path_factory.mktemp("req") / "r.parquet"
    return Setting(tx, pq.read_table(generate_requests(path, 400, taxonomy=tx, seed=5, days=2, end=NOW,
                                                       progress=False)))


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
