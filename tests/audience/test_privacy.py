"""The advertiser-facing view: threshold, 2 significant digits, no differencing."""

from __future__ import annotations

import pytest

from targeting.audience.privacy import THRESHOLD, advertiser_view, noisy_count, round_sig, spec_key
from targeting.spec import parse_spec

SECRET = b"test-secret"


def answer(users: int, key: str = "aud", **extra) -> dict:
    return {"users": users, "below_threshold": False, "est_daily_impressions": users * 10.0,
            "breakdown": {}, "population": 123_456_789, "funnel": None, "audience_key": key, **extra}


@pytest.mark.parametrize("x,want", [
    (0, 0), (99, 99), (100, 100), (104, 100), (105, 110), (12_345, 12_000), (12_500, 13_000),
    (987_654, 990_000), (-1234, -1200),
], ids=["zero", "two-digits", "hundred", "down", "half-up", "thousands", "half-up-big", "big", "negative"])
def test_round_to_two_significant_digits(x, want):
    assert round_sig(x) == want


@pytest.mark.parametrize("users", [0, 1, 57, 99])
def test_counts_under_100_are_never_shown(users):
    v = advertiser_view(answer(users), "k", secret=SECRET)
    assert v["users"] is None and v["below_threshold"] is True
    assert v["est_daily_impressions"] is None
    assert "audience_key" not in v


def test_shown_counts_have_two_significant_digits_and_are_stable(tx):
    a = answer(48_213)
    v1 = advertiser_view(a, "k", secret=SECRET)
    v2 = advertiser_view(dict(a), "k", secret=SECRET)
    assert v1 == v2  # deterministic: asking again teaches nothing
    digits = str(v1["users"]).rstrip("0")
    assert len(digits) <= 2 and abs(v1["users"] - 48_213) < 48_213 * 0.1
    assert v1["population"] == 120_000_000


def test_breakdown_cells_and_funnel_are_thresholded_too():
    a = answer(5000, breakdown={"gender": {"male": 4950, "female": 50, "unknown": 0}},
               funnel=[{"step": "population", "users": 10_000}, {"step": "geo", "users": 42}])
    v = advertiser_view(a, "k", secret=SECRET)
    assert v["breakdown"]["gender"]["female"] is None and v["breakdown"]["gender"]["unknown"] is None
    assert v["breakdown"]["gender"]["male"] >= 4000
    assert v["funnel"][1]["users"] is None and v["funnel"][0]["users"] == 10_000


def test_equivalent_rewrites_of_one_audience_cannot_average_the_noise_away():
    """Same audience, different spec texts: the audience-keyed part of the noise is
    shared, so the mean over many rewrites does not converge to the true count."""
    n = 20_000
    shown = [noisy_count(n, f"rewrite-{i}", "same-audience", "users", SECRET) for i in range(400)]
    mean = sum(shown) / len(shown)
    spread = max(10, 0.01 * n)
    alone = noisy_count(n, "x", None, "users", SECRET)  # sanity: the helper works without an audience key
    assert alone is not None
    # the shared part shifts the mean by |Laplace| * spread; it is not the true count
    # unless that draw is tiny. With this secret it is not (deterministic, so no flake).
    assert abs(mean - n) > 0.1 * spread


def test_two_specs_differing_by_three_users_do_not_reveal_them():
    """An attacker compares A (N users) with A' = A minus 3 users. Without noise the
    rounded counts differ exactly when N crosses a rounding boundary, which is a search
    away; with the noise the sign and size of the shown difference are unrelated to 3:
    pairs that truly differ by 3 and pairs that do not look the same."""
    def shown_difference(n_a: int, n_b: int, i: int) -> int:
        a = noisy_count(n_a, f"spec-A-{i}", f"aud-A-{i}", "users", SECRET)
        b = noisy_count(n_b, f"spec-B-{i}", f"aud-B-{i}", "users", SECRET)
        return a - b

    base = [12_480 + 7 * i for i in range(300)]  # many audiences straddling 12_500
    differ = [shown_difference(n, n - 3, i) for i, n in enumerate(base)]
    same = [shown_difference(n, n, i + 10_000) for i, n in enumerate(base)]
    # the attacker's best guess "A' lost users iff the shown A is larger" is a coin toss
    hits = sum(d > 0 for d in differ) + sum(d <= 0 for d in same)
    assert 0.4 < hits / (len(differ) + len(same)) < 0.6
    # and no pair shows the 3 users: shown values are multiples of 100 here
    assert all(d % 100 == 0 for d in differ)

    # without noise (rounding alone) the same attack is exact at the boundary
    leaks = [n for n in base if round_sig(n) != round_sig(n - 3)]
    assert leaks  # e.g. 12_501 -> 13_000 vs 12_498 -> 12_000


def test_engine_level_specs_differing_by_three_users(index, rows, tx):
    """Two real specs whose audiences differ by exactly 3 users get answers whose
    difference is noise, not 3, and each answer is the same when asked again."""
    wide = {"gender": "female"}
    base = index.reach(parse_spec(wide, tx), advertiser="acme", store=None)
    females = [r for r in rows if r["gender"] == "female"]
    cities: dict[int, int] = {}
    for r in females:
        if r["city"]:
            cities[r["city"]] = cities.get(r["city"], 0) + 1
    city = next(c for c, k in sorted(cities.items()) if k == 3)
    narrow = {"gender": "female", "geo": {"exclude": [city]}}
    smaller = index.reach(parse_spec(narrow, tx), advertiser="acme", store=None)
    assert base["users"] - smaller["users"] == 3
    va = advertiser_view(base, spec_key(parse_spec(wide, tx)), secret=SECRET)
    vb = advertiser_view(smaller, spec_key(parse_spec(narrow, tx)), secret=SECRET)
    assert va["users"] - vb["users"] != 3
    assert advertiser_view(base, spec_key(parse_spec(wide, tx)), secret=SECRET) == va
    assert base["audience_key"] != smaller["audience_key"]
    assert THRESHOLD == 100
