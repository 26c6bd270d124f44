"""Hypothesis strategies for raw spec dicts over the real taxonomy (rules/taxonomy).

Values are drawn where the generated population lives (populous provinces, their
cities, common tags), so random specs match tens to thousands of users rather than
nobody.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hypothesis import strategies as st

from targeting.taxonomy import Taxonomy


@cache
def taxonomy() -> Taxonomy:
    return Taxonomy.load("rules/taxonomy")


def places() -> st.SearchStrategy[Any]:
    tx = taxonomy()
    provinces = [440000, 370000, 410000, 320000, 510000, 110000, 310000, 500000]
    cities = tx.cities_of(440000)[:4] + tx.cities_of(320000)[:3] + tx.cities_of(410000)[:2]
    names = ["广东", "guangdong", "四川省", "深圳"]
    return st.sampled_from(provinces + cities + names)


def tags() -> st.SearchStrategy[str]:
    common = ["online_shopper", "deal_seeker", "foodie", "gamer", "beauty", "student", "car_lover",
              "white_collar_women", "investor", "retiree", "sports_fan", "music_fan"]
    return st.sampled_from(common)


def geo() -> st.SearchStrategy[Any]:
    lst = st.lists(places(), min_size=1, max_size=3)
    return st.one_of(
        lst,
        st.fixed_dictionaries({"include": lst}, optional={"exclude": lst}),
        st.fixed_dictionaries({"exclude": lst}),
    )


def age() -> st.SearchStrategy[Any]:
    rng = st.tuples(st.integers(0, 90), st.integers(0, 40)).map(lambda t: [t[0], min(120, t[0] + t[1])])
    return st.one_of(
        st.lists(rng, min_size=1, max_size=2),
        rng.map(lambda r: {"min": r[0], "max": r[1]}),
    )


def tag_spec() -> st.SearchStrategy[Any]:
    lst = st.lists(tags(), min_size=1, max_size=3, unique=True)
    return st.one_of(
        lst,
        st.fixed_dictionaries({}, optional={"any": lst, "all": st.lists(tags(), min_size=1, max_size=1),
                                            "none": st.lists(tags(), max_size=2)}).filter(bool),
    )


def retargeting() -> st.SearchStrategy[Any]:
    rule = st.fixed_dictionaries({"event": st.sampled_from(["visit", "add_to_cart", "purchase"]),
                                  "within_days": st.sampled_from([1, 7, 30])})
    return st.fixed_dictionaries({"any": st.lists(rule, min_size=1, max_size=2)},
                                 optional={"none": st.lists(rule, min_size=1, max_size=1)})


def flat_spec(with_retargeting: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    optional: dict[str, Any] = {
        "geo": geo(),
        "gender": st.one_of(st.sampled_from(["male", "female"]), st.just(["male", "female"])),
        "age": age(),
        "tags": tag_spec(),
    }
    if with_retargeting:
        optional["retargeting"] = retargeting()
    return st.fixed_dictionaries({}, optional=optional)


def spec(with_retargeting: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """A raw spec: a flat one, sometimes with an ``any_of`` of flat ones beside it."""
    flat = flat_spec(with_retargeting)
    return st.one_of(
        flat,
        st.tuples(flat, st.lists(flat, min_size=1, max_size=3)).map(lambda t: {**t[0], "any_of": t[1]}),
    )
