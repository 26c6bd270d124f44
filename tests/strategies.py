"""Hypothesis strategies for raw targeting specs, campaigns and requests over the real taxonomy."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

from hypothesis import strategies as st

from targeting.spec import EVENTS
from targeting.taxonomy import WEEKDAYS, Taxonomy

TAXONOMY_DIR = "rules/taxonomy"


@cache
def taxonomy() -> Taxonomy:
    return Taxonomy.load(TAXONOMY_DIR)


def _places() -> st.SearchStrategy[int]:
    tx = taxonomy()
    # a few provinces and their cities, so random specs and requests collide often
    provinces = [440000, 310000, 110000]
    codes = provinces + tx.cities_of(440000)[:3]
    return st.sampled_from(codes)


def _tags() -> st.SearchStrategy[str]:
    return st.sampled_from(taxonomy().tag_ids[:5])


def hours() -> st.SearchStrategy[Any]:
    single = st.integers(0, 23)
    rng = st.tuples(st.integers(0, 23), st.integers(0, 23)).map(lambda t: f"{min(t)}-{max(t)}")
    return st.lists(st.one_of(single, rng, rng), min_size=1, max_size=4)


def time_spec() -> st.SearchStrategy[dict[str, Any]]:
    days = st.lists(st.sampled_from([*WEEKDAYS, "weekdays", "weekends"]), min_size=1, max_size=3)
    # off-cells (and off half hours) are drawn, so most of the week stays on and requests match often
    cells = st.sets(st.tuples(st.integers(0, 6), st.integers(0, 23)), max_size=60)
    grid = cells.map(lambda cs: ["".join("0" if (d, h) in cs else "1" for h in range(24)) for d in range(7)])
    halves = st.sets(st.integers(0, 335), max_size=120)
    series = halves.map(lambda hs: "".join("0" if i in hs else "1" for i in range(336)))
    return st.one_of(
        st.fixed_dictionaries({"days": days, "hours": hours()}),
        st.fixed_dictionaries({"hours": hours()}),
        st.fixed_dictionaries({"grid": grid}),
        st.fixed_dictionaries({"series": series}),
    )


def flat_spec(with_time: bool = True, with_scene: bool = True,
              only: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    places = st.lists(_places(), min_size=1, max_size=3, unique=True)
    tags = st.lists(_tags(), min_size=1, max_size=3, unique=True)
    age_range = st.tuples(st.integers(15, 50), st.integers(0, 30)).map(lambda t: [t[0], t[0] + t[1]])
    dims: dict[str, st.SearchStrategy[Any]] = {
        "geo": st.one_of(
            st.fixed_dictionaries({"include": places}),
            st.fixed_dictionaries({"exclude": places}),
            st.fixed_dictionaries({"include": places, "exclude": places}),
        ),
        "gender": st.one_of(st.sampled_from(["male", "female"]), st.just(["male", "female"])),
        "age": st.one_of(
            st.lists(age_range, min_size=1, max_size=2),
            age_range.map(lambda r: {"min": r[0], "max": r[1]}),
        ),
        "tags": st.fixed_dictionaries(
            {}, optional={"any": tags, "all": st.lists(_tags(), min_size=1, max_size=2, unique=True), "none": tags}
        ).filter(bool),
    }
    if with_time:
        dims["time"] = time_spec()
    if with_scene:
        scenes = st.lists(st.sampled_from(list(taxonomy().scenes)), min_size=1, max_size=3, unique=True)
        dims["scene"] = st.one_of(st.fixed_dictionaries({"include": scenes}), st.fixed_dictionaries({"exclude": scenes}))
    if only is not None:
        return st.fixed_dictionaries({}, optional={only: dims[only]})
    return st.fixed_dictionaries({}, optional=dims)


@cache
def spec(with_time: bool = True, with_scene: bool = True, depth: int = 1,
         only: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Raw specs: flat ones, some with an ``any_of`` of flat ones (nested once when depth > 1);
    ``only`` restricts them to one dimension, so that dimension is exercised often."""
    base = flat_spec(with_time, with_scene, only)
    if depth <= 0:
        return base
    sub = spec(with_time, with_scene, depth - 1, only)
    return st.one_of(
        base,
        st.tuples(base, st.lists(sub, min_size=1, max_size=3)).map(lambda t: {**t[0], "any_of": t[1]}),
    )


def retargeting_spec() -> st.SearchStrategy[dict[str, Any]]:
    rule = st.fixed_dictionaries({"event": st.sampled_from(EVENTS), "within_days": st.sampled_from([1, 7, 30])})
    return st.fixed_dictionaries(
        {}, optional={"any": st.lists(rule, min_size=1, max_size=2), "none": st.lists(rule, min_size=1, max_size=2)}
    ).filter(bool)


@cache
def campaign(advertiser: str = "adv", only: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """A raw campaign without its ``id`` (see :func:`campaigns`)."""
    today = dt.date(2026, 11, 24)
    flight = st.one_of(
        st.just({}),
        st.integers(-3, 3).map(lambda d: {"start": (today + dt.timedelta(days=d)).isoformat()}),
        st.integers(-3, 3).map(lambda d: {"end": (today + dt.timedelta(days=d)).isoformat()}),
    )
    return st.tuples(
        spec(only=only),
        st.sampled_from(["active"] * 5 + ["paused"]),
        st.sampled_from(["Asia/Shanghai", "Asia/Shanghai", "Asia/Urumqi", "Europe/London"]),
        st.one_of(st.floats(0.5, 50).map(lambda b: {"cpm": round(b, 2)}), st.floats(0.1, 5).map(lambda b: {"cpc": round(b, 2)})),
        flight,
    ).map(
        lambda t: {
            "advertiser": advertiser,
            "status": t[1],
            "timezone": t[2],
            "bid": t[3],
            "category": "auto",
            "targeting": t[0],
            **t[4],
        }
    )


@cache
def campaigns(max_size: int = 8, only: str | None = None) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(campaign(only=only), min_size=1, max_size=max_size).map(
        lambda bodies: [{"id": f"c{i:03d}", **b} for i, b in enumerate(bodies)]
    )


@cache
def request() -> st.SearchStrategy[dict[str, Any]]:
    ts = st.integers(0, 14 * 48 - 1).map(
        lambda k: (dt.datetime(2026, 11, 20, tzinfo=dt.UTC) + dt.timedelta(minutes=30 * k + 7)).isoformat()
    )
    return st.fixed_dictionaries(
        {"user_id": st.just("u1"), "ts": ts},
        optional={
            "geo": st.one_of(
                _places().map(lambda c: {"city": c}),
                st.sampled_from([440000, 310000, 110000]).map(lambda p: {"province": p}),
            ),
            "gender": st.sampled_from(["male", "female"]),
            "age": st.one_of(st.integers(18, 60), st.integers(0, 120)),
            "tags": st.lists(_tags(), max_size=4, unique=True),
            "scene": st.sampled_from(list(taxonomy().scenes)),
        },
    )


def click_model(tx: Taxonomy, campaign_ids: list[str], seed: int, spread: float = 0.5) -> Any:
    """A :class:`targeting.model.LogisticModel` with random weights (feature weights with standard
    deviation ``spread``, CTRs around 0.5%), knowing every other campaign of ``campaign_ids``
    (the rest are scored by category only), as ``load_model`` would build one."""
    import numpy as np

    from targeting.model import FeatureSpec, LogisticModel

    spec = FeatureSpec.of(tx)
    rng = np.random.default_rng(seed)
    k = len(spec.categories)
    known = campaign_ids[::2]
    return LogisticModel(version=f"random-{seed}", spec=spec,
                      W=np.vstack([rng.normal(0, spread, (spec.n, k)), np.zeros((1, k))]),
                      bias=rng.normal(-5, 0.3, k), campaign=rng.normal(0, spread, len(known)),
                      campaign_ids=known, calibration=(float(rng.uniform(0.6, 1.2)), float(rng.normal(0, 0.3))),
                      meta={})
