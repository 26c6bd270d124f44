"""Batch matching (``targeting.batchmatch``) against decide's matcher and its own plain forms."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from targeting.batchmatch import PairMatcher, day_groups, match_words, matched_pairs, tag_checks
from targeting.batchrequests import clocks, parse_requests
from targeting.bitset import bit_pairs
from targeting.decide import point_of
from targeting.layout import Layout
from targeting.matcher import match, moment

from .conftest import NOW, Setting, campaign_dicts, make_engine_from


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


