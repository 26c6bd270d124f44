"""The targeting language, one dimension at a time.

Every semantics case is checked three ways: by the plain-Python reference
evaluator ``matches`` on the parsed :class:`Spec`, by ``clause_matches`` on the
DNF clauses the compiler and the audience index consume, and by the compiled
bitset index (``compile_campaigns`` + ``match``) that serves decisions. All must
give the expected answer, so the meanings cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from reference import Features, matches

from targeting.compiler import compile_campaigns
from targeting.errors import TargetingError
from targeting.matcher import Point, match, moment, sorted_tag_indices
from targeting.request import parse_request
from targeting.rules import validate_campaigns
from targeting.spec import SpecError, clause_matches, parse_spec
from targeting.taxonomy import WEEKDAYS, Taxonomy, gender_index


@pytest.fixture(scope="module")
def tx() -> Taxonomy:
    return Taxonomy.load("rules/taxonomy")


def slot(when: str) -> int:
    """'tue 08:30' -> half-hour slot of the week (Monday 00:00 = 0)."""
    day, hhmm = when.split()
    h, m = (int(x) for x in hhmm.split(":"))
    return WEEKDAYS.index(day) * 48 + h * 2 + m // 30


MONDAY = dt.datetime(2026, 11, 23, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


def verdicts(tx: Taxonomy, raw: dict[str, Any], user: dict[str, Any]) -> tuple[bool, bool, bool]:
    """(reference evaluator, clauses, compiled index) for ``raw`` and a user.

    ``user`` holds decide-request attributes (geo, gender, age, tags, scene),
    normalised by ``parse_request`` as the engine does, plus ``when`` ('mon 08:30'
    in the spec's time zone; absent = ignore time, as reach does).
    """
    spec = parse_spec(raw, tx)
    attrs = {k: v for k, v in user.items() if k != "when"}
    req = parse_request({"user_id": "u", **attrs}, tx, now=0.0)
    s = slot(user["when"]) if "when" in user else None
    tags = req.tags or frozenset()
    ref = matches(
        spec,
        Features(province=req.province, city=req.city, gender=req.gender, age=req.age,
                 tags=tags, scene=req.scene, slot=s),
        tx,
    )
    geo = tx.geo_leaf(req.province, req.city)
    age = 0 if req.age is None else req.age + 1
    scene = tx.scene_index().get(req.scene or "", 0)
    by_clauses = any(
        clause_matches(c, geo, gender_index(req.gender), age, scene, s, tags) for c in spec.clauses(tx)
    )
    (campaign,) = validate_campaigns(
        [("t.yaml", [{"id": "c", "advertiser": "a", "bid": {"cpm": 1}, "category": "auto", "targeting": raw}])],
        tx,
    )
    index = compile_campaigns([campaign], tx, "t")
    point = Point(geo, gender_index(req.gender), age, scene, sorted_tag_indices(tags, index.tag_index))
    when = None if s is None else moment(index.zones, MONDAY + s * 1800)
    compiled = bool(match(index, point, when).any())
    return ref, by_clauses, compiled


def check(tx: Taxonomy, raw: dict[str, Any], user: dict[str, Any], expected: bool) -> None:
    ref, by_clauses, compiled = verdicts(tx, raw, user)
    assert ref == expected, "reference evaluator"
    assert by_clauses == expected, "clauses"
    assert compiled == expected, "compiled index"
    # the canonical form means the same thing
    spec = parse_spec(raw, tx)
    assert parse_spec(spec.to_dict(tx), tx) == spec


# --------------------------------------------------------------------- geo
GD_NOT_SZ = {"geo": {"include": ["广东", 310000], "exclude": ["深圳"]}}


@pytest.mark.parametrize(
    "raw, user, expected",
    [
        ({"geo": ["广东"]}, {"geo": {"city": 440100}}, True),  # a province covers its cities
        ({"geo": ["广东"]}, {"geo": {"province": 440000}}, True),  # ... and its city-unknown users
        ({"geo": ["广东"]}, {"geo": {"city": 350100}}, False),  # 福州 is elsewhere
        ({"geo": ["广东"]}, {}, False),  # include needs a known place
        ({"geo": ["深圳"]}, {"geo": {"province": 440000}}, False),  # a city needs the city known
        ({"geo": ["shenzhen"]}, {"geo": {"city": "深圳市"}}, True),  # names on both sides
        ({"geo": "440300"}, {"geo": {"city": 440300}}, True),  # scalar form, adcode as text
        (GD_NOT_SZ, {"geo": {"city": 440300}}, False),  # excluded city inside an included province
        (GD_NOT_SZ, {"geo": {"city": 441900}}, True),  # another 广东 city
        (GD_NOT_SZ, {"geo": {"province": 440000}}, True),  # 广东, city unknown: not known to be 深圳
        (GD_NOT_SZ, {"geo": {"city": 310000}}, True),  # 上海 given as a city is the municipality
        (GD_NOT_SZ, {}, False),  # unknown place never meets an include
        ({"geo": {"exclude": ["深圳"]}}, {}, True),  # exclude-only lets unknown through
        ({"geo": {"exclude": ["深圳"]}}, {"geo": {"city": 440300}}, False),  # ... but not the excluded
        ({"geo": {"exclude": ["深圳"]}}, {"geo": {"city": 110000}}, True),  # ... and keeps the rest
        ({"geo": {"exclude": ["广东"]}}, {"geo": {"city": 440300}}, False),  # excluding a province
        ({"geo": {"exclude": ["广东"]}}, {"geo": {"province": 440000}}, False),  # ... and its city-unknown
        ({"geo": [110000]}, {"geo": {"city": "北京"}}, True),  # municipality as a city
        ({"geo": [110000]}, {"geo": {"province": 110000}}, True),  # ... or as a province
        ({"geo": ["苏州"]}, {"geo": {"city": 341300}}, False),  # 宿州 (also suzhou) is not 苏州
    ],
    ids=[
        "province-covers-city", "province-covers-unknown-city", "other-province", "unknown-vs-include",
        "city-needs-city", "names", "scalar-adcode", "excluded-city", "other-city", "province-only",
        "municipality-as-city", "unknown-vs-include-exclude", "exclude-only-unknown",
        "exclude-only-excluded", "exclude-only-other", "exclude-province-city",
        "exclude-province-unknown-city", "bj-as-city", "bj-as-province", "suzhou-vs-suzhou",
    ],
)
def test_geo(tx: Taxonomy, raw: dict[str, Any], user: dict[str, Any], expected: bool) -> None:
    check(tx, raw, user, expected)


# -------------------------------------------------------------------- time
WEEKDAY_MORNING = {"time": {"days": ["weekdays"], "hours": ["8-10"]}}
GRID_24 = {"time": {"grid": ["000000000000100000000000"] + ["0" * 24] * 6}}  # Monday 12:00-12:59
GRID_48 = {"time": {"grid": ["0" * 17 + "1" + "0" * 30] + ["0" * 48] * 6}}  # Monday 08:30-08:59
SERIES = {"time": {"series": "1" + "0" * 334 + "1"}}  # Monday 00:00-00:29 and Sunday 23:30-23:59


@pytest.mark.parametrize(
    "raw, when, expected",
    [
        (WEEKDAY_MORNING, "mon 08:00", True),  # first hour of the range
        (WEEKDAY_MORNING, "fri 10:30", True),  # "8-10" is inclusive: 10:xx counts
        (WEEKDAY_MORNING, "wed 11:00", False),  # just after
        (WEEKDAY_MORNING, "wed 07:30", False),  # just before
        (WEEKDAY_MORNING, "sat 09:00", False),  # weekend
        (WEEKDAY_MORNING, None, True),  # no moment (reach): time constrains nothing
        ({"time": {"hours": [21]}}, "sun 21:30", True),  # single hour, days omitted = every day
        ({"time": {"hours": [21]}}, "sun 22:00", False),  # the hour after
        ({"time": {"hours": [0, "22-23"]}}, "tue 00:15", True),  # midnight hour of the same day
        ({"time": {"days": ["weekends"]}}, "sat 03:00", True),  # hours omitted = all day
        ({"time": {"days": ["weekends"]}}, "fri 23:30", False),  # Friday night is a weekday
        ({"time": {"days": ["mon", "Wednesday"]}}, "wed 12:00", True),  # full day names
        ({"time": {"days": "sun"}}, "mon 00:00", False),  # scalar day
        ({"time": {"days": ["daily"], "hours": ["12-13"]}}, "thu 13:45", True),  # daily alias
        (GRID_24, "mon 12:30", True),  # 24-char grid row: a whole hour
        (GRID_24, "mon 13:00", False),  # next hour
        (GRID_24, "tue 12:00", False),  # other day's row is empty
        (GRID_48, "mon 08:30", True),  # 48-char grid row: a half hour
        (GRID_48, "mon 08:00", False),  # the other half of that hour
        (SERIES, "mon 00:00", True),  # first of 336
        (SERIES, "sun 23:30", True),  # last of 336
        (SERIES, "sun 23:00", False),  # the one before
    ],
    ids=[
        "range-start", "range-end-inclusive", "after-range", "before-range", "weekend", "no-moment",
        "single-hour", "single-hour-next", "midnight", "weekends", "friday-night", "full-day-name",
        "scalar-day", "daily", "grid24-on", "grid24-next-hour", "grid24-other-day", "grid48-on",
        "grid48-other-half", "series-first", "series-last", "series-before-last",
    ],
)
def test_time(tx: Taxonomy, raw: dict[str, Any], when: str | None, expected: bool) -> None:
    check(tx, raw, {} if when is None else {"when": when}, expected)


def test_time_forms_agree(tx: Taxonomy) -> None:
    # the same schedule written four ways gives the same slots
    days_hours = parse_spec({"time": {"days": ["weekdays"], "hours": ["9-11", 14]}}, tx).slots
    row24 = "000000000111000000000000"
    row24 = row24[:14] + "1" + row24[15:]
    grid24 = parse_spec({"time": {"grid": [row24] * 5 + ["0" * 24] * 2}}, tx).slots
    row48 = "".join(c * 2 for c in row24)
    grid48 = parse_spec({"time": {"grid": [row48] * 5 + ["0" * 48] * 2}}, tx).slots
    series = parse_spec({"time": {"series": row48 * 5 + "0" * 96}}, tx).slots
    assert days_hours == grid24 == grid48 == series
    assert days_hours is not None and len(days_hours) == 5 * 4 * 2


# ------------------------------------------------------- gender, age, scene
@pytest.mark.parametrize(
    "raw, user, expected",
    [
        ({"gender": "female"}, {"gender": "female"}, True),  # scalar form
        ({"gender": "female"}, {"gender": "male"}, False),  # the other
        ({"gender": "female"}, {}, False),  # unknown gender never matches
        ({"gender": ["male", "female"]}, {"gender": "male"}, True),  # list form
        ({"gender": ["male", "female"]}, {}, False),  # both listed still needs a known gender
    ],
    ids=["female", "male-vs-female", "unknown", "list", "unknown-vs-both"],
)
def test_gender(tx: Taxonomy, raw: dict[str, Any], user: dict[str, Any], expected: bool) -> None:
    check(tx, raw, user, expected)


TWO_RANGES = {"age": [[25, 34], [45, 54]]}


@pytest.mark.parametrize(
    "raw, age, expected",
    [
        (TWO_RANGES, 25, True),  # lower bound inclusive
        (TWO_RANGES, 34, True),  # upper bound inclusive
        (TWO_RANGES, 35, False),  # in the gap
        (TWO_RANGES, 45, True),  # second range
        (TWO_RANGES, 55, False),  # above
        (TWO_RANGES, None, False),  # unknown age never matches
        ({"age": [25, 34]}, 30, True),  # a single pair
        ({"age": {"min": 25, "max": 34}}, 24, False),  # mapping form, below
        ({"age": {"min": 25, "max": 34}}, 34, True),  # mapping form, inclusive
        ({"age": {"min": 60}}, 120, True),  # open-ended max
        ({"age": {"max": 17}}, 0, True),  # open-ended min
        ({"age": {"min": 0, "max": 120}}, None, False),  # even the full range needs a known age
        ({"age": [{"min": 18, "max": 24}, [40, 49]]}, 41, True),  # a list mixing both syntaxes
    ],
    ids=[
        "low", "high", "gap", "second", "above", "unknown", "pair", "map-below", "map-inclusive",
        "min-only", "max-only", "full-range-unknown", "mixed-list",
    ],
)
def test_age(tx: Taxonomy, raw: dict[str, Any], age: int | None, expected: bool) -> None:
    check(tx, raw, {} if age is None else {"age": age}, expected)


@pytest.mark.parametrize(
    "raw, user, expected",
    [
        ({"scene": {"include": ["office", "home"]}}, {"scene": "office"}, True),  # included
        ({"scene": {"include": ["office", "home"]}}, {"scene": "campus"}, False),  # not included
        ({"scene": {"include": ["office", "home"]}}, {}, False),  # unknown scene vs include
        ({"scene": {"exclude": ["internet_cafe"]}}, {}, True),  # exclude-only lets unknown through
        ({"scene": {"exclude": ["internet_cafe"]}}, {"scene": "internet_cafe"}, False),  # excluded
        ({"scene": {"exclude": ["internet_cafe"]}}, {"scene": "home"}, True),  # not excluded
        ({"scene": "campus"}, {"scene": "campus"}, True),  # scalar form
        ({"scene": ["campus", "on_the_go"]}, {"scene": "on_the_go"}, True),  # list form
    ],
    ids=["include", "not-included", "unknown-vs-include", "exclude-unknown", "excluded",
         "not-excluded", "scalar", "list"],
)
def test_scene(tx: Taxonomy, raw: dict[str, Any], user: dict[str, Any], expected: bool) -> None:
    check(tx, raw, user, expected)


# -------------------------------------------------------------------- tags
TTT = {"tags": {"any": ["white_collar_women", "trendsetter"], "all": ["investor"], "none": ["it_fan"]}}


@pytest.mark.parametrize(
    "raw, tags, expected",
    [
        ({"tags": {"any": ["car_lover", "investor"]}}, ["investor"], True),  # one of any
        ({"tags": {"any": ["car_lover", "investor"]}}, ["gamer"], False),  # none of any
        ({"tags": {"any": ["car_lover"]}}, None, False),  # no tags known
        ({"tags": {"all": ["car_lover", "high_end"]}}, ["car_lover", "high_end", "gamer"], True),  # all
        ({"tags": {"all": ["car_lover", "high_end"]}}, ["car_lover"], False),  # only one of all
        ({"tags": {"none": ["it_fan"]}}, None, True),  # none-only: no tags passes
        ({"tags": {"none": ["it_fan"]}}, ["it_fan", "investor"], False),  # has the excluded tag
        ({"tags": ["car_lover", "gamer"]}, ["gamer"], True),  # list form means any
        ({"tags": {"any": ["爱车一族"]}}, ["car_lover"], True),  # a tag named by its label
        (TTT, ["trendsetter", "investor"], True),  # any + all, no none
        (TTT, ["trendsetter", "investor", "it_fan"], False),  # none wins
        (TTT, ["investor"], False),  # all without any
        (TTT, ["white_collar_women"], False),  # any without all
    ],
    ids=["any", "any-miss", "any-no-tags", "all", "all-partial", "none-no-tags", "none-hit",
         "list-is-any", "label", "ttt", "ttt-none-wins", "ttt-all-only", "ttt-any-only"],
)
def test_tags(tx: Taxonomy, raw: dict[str, Any], tags: list[str] | None, expected: bool) -> None:
    check(tx, raw, {} if tags is None else {"tags": tags}, expected)


# ------------------------------------------------------------------ any_of
FEMALE_GD_OR_YOUNG = {"gender": "female", "any_of": [{"geo": ["广东"]}, {"age": [[18, 24]]}]}
NESTED = {
    "any_of": [
        {"tags": {"any": ["investor"]}, "any_of": [{"scene": "office"}, {"scene": "home"}]},
        {"age": {"min": 60}},
    ]
}


@pytest.mark.parametrize(
    "raw, user, expected",
    [
        (FEMALE_GD_OR_YOUNG, {"gender": "female", "geo": {"city": 440100}, "age": 40}, True),  # 1st alt
        (FEMALE_GD_OR_YOUNG, {"gender": "female", "geo": {"city": 110000}, "age": 20}, True),  # 2nd alt
        (FEMALE_GD_OR_YOUNG, {"gender": "male", "geo": {"city": 440100}, "age": 20}, False),  # sibling fails
        (FEMALE_GD_OR_YOUNG, {"gender": "female", "geo": {"city": 110000}, "age": 40}, False),  # no alt
        (NESTED, {"tags": ["investor"], "scene": "office"}, True),  # inner alternative
        (NESTED, {"tags": ["investor"], "scene": "campus"}, False),  # outer needs an inner alt
        (NESTED, {"age": 65, "scene": "campus"}, True),  # the other outer alternative
        (NESTED, {"age": 40}, False),  # neither
        ({"any_of": [{}]}, {}, True),  # an empty alternative matches everyone
    ],
    ids=["alt1", "alt2", "sibling-anded", "no-alt", "nested-inner", "nested-inner-miss",
         "nested-outer", "nested-none", "empty-alt"],
)
def test_any_of(tx: Taxonomy, raw: dict[str, Any], user: dict[str, Any], expected: bool) -> None:
    check(tx, raw, user, expected)


def test_nested_any_of_expands_to_the_cross_product(tx: Taxonomy) -> None:
    spec = parse_spec(
        {"any_of": [{"gender": "male"}, {"gender": "female"}],
         "tags": {"none": ["it_fan"]},
         "scene": {"exclude": ["campus"]},
         },
        tx,
    )
    assert len(spec.clauses(tx)) == 2
    assert all(c.tags_none == {"it_fan"} for c in spec.clauses(tx))  # siblings in every clause


@pytest.mark.parametrize(
    "user",
    [
        {},  # nothing known at all
        {"geo": {"city": 650100}, "gender": "male", "age": 80, "tags": ["retiree"], "scene": "home"},
        {"when": "sun 03:00"},  # any time
    ],
    ids=["unknown", "known", "night"],
)
def test_empty_spec_matches_everyone(tx: Taxonomy, user: dict[str, Any]) -> None:
    check(tx, {}, user, True)
    assert parse_spec(None, tx) == parse_spec({}, tx)


# ------------------------------------------------------------- retargeting
@pytest.mark.parametrize(
    "history, expected",
    [
        ({("add_to_cart", 7)}, True),  # carted within the week
        ({("visit", 3)}, True),  # the other any rule
        ({("add_to_cart", 7), ("purchase", 14)}, False),  # bought recently: excluded
        (set(), False),  # no history: an any rule cannot pass
    ],
    ids=["cart", "visit", "bought", "none"],
)
def test_retargeting_reference(tx: Taxonomy, history: set[tuple[str, int]], expected: bool) -> None:
    spec = parse_spec(
        {"retargeting": {"any": [{"event": "add_to_cart", "within_days": 7}, {"event": "visit", "within_days": 3}],
                         "none": [{"event": "purchase", "within_days": 14}]}},
        tx, advertiser="bigbasket-retail",
    )
    f = Features(retargeting=lambda event, days: (event, days) in history)
    assert matches(spec, f, tx) is expected
    (clause,) = spec.clauses(tx)
    assert clause.rt_any == ((("add_to_cart", 7), ("visit", 3)),)
    assert clause.rt_none == {("purchase", 14)}


def test_retargeting_defaults_and_own_advertiser(tx: Taxonomy) -> None:
    spec = parse_spec(
        {"retargeting": {"any": [{"event": "visit"}, {"event": "click", "advertiser": "acme"}]}},
        tx, advertiser="acme",
    )
    assert spec.rt_any == (("click", 30), ("visit", 30))  # within_days defaults to 30
    assert spec.uses_retargeting


# ----------------------------------------------------------- invalid specs
@pytest.mark.parametrize(
    "raw, path, reason",
    [
        ({"geoo": ["广东"]}, "geoo", "unknown dimension"),  # misspelled dimension
        ({"tags": {"any": ["car_lovr"]}}, "tags.any[0]", "car_lover"),  # unknown tag, close match named
        ({"tags": {"sum": ["investor"]}}, "tags.sum", "expected any, all or none"),  # unknown tag key
        ({"tags": {"any": []}}, "tags.any", "empty"),  # empty any list
        ({"geo": {"include": ["atlantis"]}}, "geo.include[0]", "unknown place"),  # unknown place
        ({"geo": ["广东", "guangdon"]}, "geo[1]", "guangdong"),  # misspelled, list form path
        ({"geo": {"include": ["吉林"]}}, "geo.include[0]", "220200"),  # ambiguous: lists adcodes
        ({"geo": {"exclude": [999999]}}, "geo.exclude[0]", "unknown adcode"),  # unknown adcode
        ({"geo": {"include": []}}, "geo.include", "empty include"),  # empty include
        ({"geo": {"exclude": []}}, "geo", "needs include or exclude"),  # nothing at all
        ({"geo": {"only": ["广东"]}}, "geo.only", "unknown key"),  # unknown geo key
        ({"age": [40, 30]}, "age", "inverted"),  # inverted single pair
        ({"age": [[20, 30], [40, 30]]}, "age[1]", "inverted"),  # inverted second range
        ({"age": {"min": 40, "max": 30}}, "age", "inverted"),  # inverted mapping
        ({"age": [[-3, 30]]}, "age[0]", "0..120"),  # negative age
        ({"age": {"min": -3}}, "age", "0..120"),  # negative min
        ({"age": [[18, 130]]}, "age[0]", "0..120"),  # beyond the domain
        ({"age": "old"}, "age", "expected"),  # not a range
        ({"age": [["18", 30]]}, "age[0]", "whole years"),  # text in a range
        ({"age": []}, "age", "empty"),  # empty list
        ({"gender": "man"}, "gender", "male or female"),  # unknown gender
        ({"gender": []}, "gender", "empty"),  # empty gender list
        ({"scene": {"include": ["cafe"]}}, "scene.include[0]", "internet_cafe"),  # unknown scene
        ({"time": {"hours": [24]}}, "time.hours[0]", "0..23"),  # bad hour 24
        ({"time": {"hours": ["25-3"]}}, "time.hours[0]", "bad hour range"),  # bad range
        ({"time": {"hours": ["10-8"]}}, "time.hours[0]", "bad hour range"),  # inverted range
        ({"time": {"hours": ["noon"]}}, "time.hours[0]", "bad hour"),  # not an hour
        ({"time": {"hours": [-1]}}, "time.hours[0]", "0..23"),  # negative hour
        ({"time": {"days": ["someday"]}}, "time.days[0]", "unknown day"),  # unknown day
        ({"time": {"days": []}}, "time.days", "empty"),  # empty days
        ({"time": {"series": "1" * 335}}, "time.series", "336"),  # series one short
        ({"time": {"series": "2" * 336}}, "time.series", "336"),  # series not 0/1
        ({"time": {"grid": ["1" * 24] * 6}}, "time.grid", "7 strings"),  # six rows
        ({"time": {"grid": ["1" * 24] * 2 + ["1" * 23] + ["1" * 24] * 4}}, "time.grid[2]", "24"),  # short row
        ({"time": {"grid": ["0" * 24] * 7}}, "time", "no time slot"),  # grid selects nothing
        ({"time": {"grid": ["1" * 24] * 7, "days": ["mon"]}}, "time", "not several"),  # two forms
        ({"time": {"weekdays": True}}, "time.weekdays", "unknown key"),  # unknown time key
        ({"time": "evenings"}, "time", "expected"),  # not a mapping
        ({"retargeting": {"any": [{"event": "visit", "advertiser": "rival"}]}},
         "retargeting.any[0].advertiser", "own advertiser"),  # another advertiser's data
        ({"retargeting": {"any": [{"event": "download"}]}}, "retargeting.any[0].event", "unknown event"),
        ({"retargeting": {"any": [{"event": "visit", "within_days": 0}]}},
         "retargeting.any[0].within_days", "1..365"),  # zero window
        ({"retargeting": {"any": []}}, "retargeting.any", "non-empty"),  # empty any
        ({"any_of": []}, "any_of", "non-empty"),  # empty any_of
        ({"any_of": {"gender": "male"}}, "any_of", "non-empty list"),  # not a list
        ({"any_of": [{"gender": "male"}, {"geo": ["atlantis"]}]}, "any_of[1].geo[0]", "unknown place"),
        ({"any_of": [{"any_of": [{"tags": ["x_fan"]}]}]}, "any_of[0].any_of[0].tags.any[0]", "unknown tag"),
        ({"any_of": [{"age": [[a, a]]} for a in range(65)]}, "any_of", "at most 64"),  # too many clauses
        ({"any_of": ["male"]}, "any_of[0]", "mapping"),  # an alternative that is not a spec
    ],
    ids=[
        "unknown-dimension", "unknown-tag", "unknown-tag-key", "empty-any", "unknown-place",
        "misspelled-place", "ambiguous-place", "unknown-adcode", "empty-include", "geo-nothing",
        "geo-unknown-key", "age-inverted-pair", "age-inverted-second", "age-inverted-map",
        "age-negative", "age-negative-min", "age-too-old", "age-old", "age-text", "age-empty",
        "gender-unknown", "gender-empty", "scene-unknown", "hour-24", "hour-range-25-3",
        "hour-range-inverted", "hour-noon", "hour-negative", "day-unknown", "days-empty",
        "series-short", "series-not-binary", "grid-six-rows", "grid-short-row", "grid-empty",
        "time-two-forms", "time-unknown-key", "time-not-mapping", "retargeting-other-advertiser",
        "retargeting-unknown-event", "retargeting-zero-window", "retargeting-empty-any",
        "any-of-empty", "any-of-not-list", "any-of-nested-path", "any-of-deeper-path",
        "any-of-too-many", "any-of-not-spec",
    ],
)
def test_invalid_spec(tx: Taxonomy, raw: Any, path: str, reason: str) -> None:
    with pytest.raises(SpecError) as ei:
        parse_spec(raw, tx, advertiser="acme")
    err = ei.value
    assert isinstance(err, TargetingError) and err.code == "invalid_spec"
    assert (path, reason) in [(p, reason) for p, r in err.problems if reason in r], err.problems
    assert err.path == err.problems[0][0]


def test_paths_carry_the_prefix(tx: Taxonomy) -> None:
    with pytest.raises(SpecError) as ei:
        parse_spec({"geo": ["atlantis"]}, tx, path="targeting")
    assert ei.value.problems[0][0] == "targeting.geo[0]"
    with pytest.raises(SpecError) as ei:
        parse_spec({"any_of": [{"age": [[a, a]]} for a in range(65)]}, tx, path="targeting")
    assert ei.value.problems[0][0] == "targeting.any_of"


def test_not_a_mapping(tx: Taxonomy) -> None:
    with pytest.raises(SpecError) as ei:
        parse_spec(["gender", "male"], tx, path="targeting")
    assert ei.value.problems == [("targeting", "a targeting spec must be a mapping, not list")]


def test_errors_are_collected(tx: Taxonomy) -> None:
    raw = {
        "geo": {"include": ["广东", "atlantis"], "exclude": ["深训"]},
        "age": [[40, 30]],
        "tags": {"any": ["car_lovr"], "none": ["it_fan"]},
        "time": {"hours": [24]},
        "colour": "red",
        "any_of": [{"scene": ["cafe"]}],
    }
    with pytest.raises(SpecError) as ei:
        parse_spec(raw, tx)
    paths = [p for p, _ in ei.value.problems]
    assert paths == [
        "geo.include[1]", "geo.exclude[0]", "age[0]", "tags.any[0]", "time.hours[0]", "colour", "any_of[0].scene[0]",
    ]
    assert "(and 6 more)" in ei.value.message


# ------------------------------------------------------------- known gaps
@pytest.mark.parametrize("day", ["monster", "sunshine", "wedding"], ids=lambda d: d)
def test_day_words_that_are_not_days_are_rejected(tx: Taxonomy, day: str) -> None:
    with pytest.raises(SpecError):
        parse_spec({"time": {"days": [day]}}, tx)


@pytest.mark.parametrize(
    "raw",
    [
        {"geo": {"include": ["深圳"], "exclude": ["广东"]}},  # the included city is inside the exclusion
        {"tags": {"all": ["investor"], "none": ["investor"]}},  # contradictory tags
        {"scene": {"include": ["home"], "exclude": ["home"]}},  # contradictory scenes
        {"age": [[20, 30]], "any_of": [{"age": [[40, 50]]}]},  # sibling and alternative disjoint
    ],
    ids=["geo", "tags", "scene", "any-of"],
)
def test_spec_matching_nobody_is_rejected(tx: Taxonomy, raw: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        parse_spec(raw, tx)


@pytest.mark.parametrize(
    "raw, path",
    [({"scene": "cafe"}, "scene"), ({"geo": "atlantis"}, "geo")],
    ids=["scene", "geo"],
)
def test_scalar_value_error_path_has_no_index(tx: Taxonomy, raw: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecError) as ei:
        parse_spec(raw, tx)
    assert ei.value.problems[0][0] == path
