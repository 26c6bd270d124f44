"""Campaign files: the shipped examples, and every way a rules directory can be wrong."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from targeting.compiler import compile_campaigns
from targeting.errors import RulesError
from targeting.rules import load_rules
from targeting.taxonomy import Taxonomy

RULES = Path(__file__).resolve().parent.parent / "rules"
TODAY = dt.date(2026, 11, 24)


@pytest.fixture(scope="module")
def tx() -> Taxonomy:
    return Taxonomy.load(RULES / "taxonomy")


def campaign(cid: str = "acme-c1", **fields: Any) -> dict[str, Any]:
    """A valid campaign; ``fields`` override or add (None removes)."""
    c: dict[str, Any] = {
        "id": cid, "advertiser": "acme", "status": "active", "start": "2026-11-01", "end": "2026-12-31",
        "bid": {"cpm": 12.5}, "category": "auto", "targeting": {"gender": "male"},
    }
    c.update(fields)
    return {k: v for k, v in c.items() if v is not None}


def write(root: Path, files: dict[str, Any]) -> Path:
    """Write a rules dir: each value is a list of campaigns (dumped as YAML) or raw YAML text."""
    d = root / "rules" / "campaigns"
    d.mkdir(parents=True)
    for name, content in files.items():
        text = content if isinstance(content, str) else yaml.safe_dump(content, allow_unicode=True)
        (d / name).write_text(text, encoding="utf-8")
    return root / "rules"


# ------------------------------------------------------------ shipped rules
@pytest.fixture(scope="module")
def shipped(tx: Taxonomy) -> Any:
    return load_rules(RULES, tx)


@pytest.fixture(scope="module")
def shipped_raw() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in sorted((RULES / "campaigns").glob("*.yaml")):
        out.extend(yaml.safe_load(f.read_text(encoding="utf-8")))
    return out


def test_shipped_rules_load_and_compile(tx: Taxonomy, shipped: Any) -> None:
    assert len(shipped.campaigns) >= 30
    assert len({c.id for c in shipped.campaigns}) == len(shipped.campaigns)
    assert len({c.advertiser for c in shipped.campaigns}) >= 10
    assert set(tx.categories) == {c.category for c in shipped.campaigns}  # every category used
    index = compile_campaigns(shipped.campaigns, tx, shipped.version)
    assert len(index.campaigns) == len(shipped.campaigns)
    assert all(c.clauses for c in shipped.campaigns)  # every campaign can match someone


def test_shipped_rules_serve_today_with_some_ended_and_future(shipped: Any) -> None:
    def live(c: Any) -> bool:
        return c.status == "active" and (c.start is None or c.start <= TODAY) and (c.end is None or TODAY <= c.end)

    assert sum(map(live, shipped.campaigns)) >= 20
    assert any(c.end and c.end < TODAY for c in shipped.campaigns)  # ended
    assert any(c.start and c.start > TODAY for c in shipped.campaigns)  # not started yet
    assert any(c.status == "paused" for c in shipped.campaigns)
    assert any(c.start is not None and c.end is None for c in shipped.campaigns)  # open-ended


def _options(spec: Any, seen: set[str], depth: int = 0) -> None:
    """Record which syntactic options of the language a raw spec uses."""
    for dim, v in spec.items():
        seen.add(dim)
        if dim in ("geo", "scene"):
            if isinstance(v, dict):
                seen.update(f"{dim}.{k}" for k in v)
                if "include" in v and "exclude" in v:
                    seen.add(f"{dim}.include+exclude")
                items = [*v.get("include", []), *v.get("exclude", [])]
            else:
                seen.add(f"{dim}.{'list' if isinstance(v, list) else 'scalar'}")
                items = v if isinstance(v, list) else [v]
            if dim == "geo":
                for p in items:
                    kind = ("adcode" if isinstance(p, int) or str(p).isdigit()
                            else "pinyin" if str(p).isascii() else "chinese")
                    seen.add(f"geo.by_{kind}")
                    if isinstance(p, str) and not str(p).isascii():
                        seen.add("geo.full_name" if p.endswith(("省", "市", "区", "州")) else "geo.short_name")
        elif dim == "time":
            if "grid" in v:
                seen.add(f"time.grid{len(v['grid'][0])}")
            seen.update(f"time.{k}" for k in v if k != "grid")
            days = v.get("days", [])
            seen.update(f"time.days.{d}" for d in (days if isinstance(days, list) else [days])
                        if d in ("weekdays", "weekends", "daily"))
            for h in v.get("hours", []):
                seen.add("time.hours.range" if isinstance(h, str) else "time.hours.single")
        elif dim == "gender":
            seen.add(f"gender.{'list' if isinstance(v, list) else 'scalar'}")
        elif dim == "age":
            if isinstance(v, dict):
                seen.add("age.min_max")
            elif len(v) == 2 and all(isinstance(x, int) for x in v):
                seen.add("age.pair")
            else:
                seen.add("age.ranges" if len(v) == 1 else "age.several_ranges")
        elif dim == "tags":
            if isinstance(v, list):
                seen.add("tags.list")
            else:
                seen.update(f"tags.{k}" for k in v)
                if any(not str(t).isascii() for k in v for t in v[k]):
                    seen.add("tags.by_label")
        elif dim == "retargeting":
            seen.update(f"retargeting.{k}" for k in v)
            if any("advertiser" in r for k in v for r in v[k]):
                seen.add("retargeting.own_advertiser")
        elif dim == "any_of":
            seen.add("any_of.nested" if depth else "any_of")
            for sub in v:
                _options(sub, seen, depth + 1)


def test_shipped_rules_use_every_dimension_and_option(shipped_raw: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for c in shipped_raw:
        _options(c.get("targeting") or {}, seen)
        seen.update(f"field.{k}" for k in c)
        seen.add(f"status.{c.get('status', 'active')}")
        seen.update(f"bid.{k}" for k in c["bid"])
        if "frequency_cap" in c:
            seen.add(f"cap.{c['frequency_cap'].get('per', 'default')}")
    need = {
        "geo", "time", "gender", "age", "tags", "scene", "retargeting", "any_of", "any_of.nested",
        "geo.include", "geo.exclude", "geo.include+exclude", "geo.list", "geo.by_adcode", "geo.by_pinyin",
        "geo.by_chinese", "geo.full_name", "geo.short_name",
        "time.days", "time.hours", "time.days.weekdays", "time.days.weekends", "time.hours.range",
        "time.hours.single", "time.grid24", "time.grid48", "time.series",
        "gender.scalar", "gender.list", "age.min_max", "age.ranges", "age.several_ranges",
        "tags.any", "tags.all", "tags.none", "tags.list", "tags.by_label",
        "scene.include", "scene.exclude", "scene.list", "scene.scalar",
        "retargeting.any", "retargeting.none", "retargeting.own_advertiser",
        "field.start", "field.end", "field.daily_budget", "field.frequency_cap", "field.timezone",
        "field.name", "status.active", "status.paused", "bid.cpm", "bid.cpc",
        "cap.hour", "cap.day", "cap.week", "cap.default",
    }
    assert need <= seen, sorted(need - seen)


def test_shipped_rules_use_other_time_zones(shipped: Any) -> None:
    zones = {c.timezone for c in shipped.campaigns}
    assert {"Asia/Shanghai", "Asia/Hong_Kong", "Asia/Urumqi"} <= zones


def test_version_is_a_content_hash(tmp_path: Path, tx: Taxonomy) -> None:
    a = load_rules(write(tmp_path / "a", {"x.yaml": [campaign()]}), tx)
    b = load_rules(write(tmp_path / "b", {"x.yaml": [campaign()]}), tx)
    c = load_rules(write(tmp_path / "c", {"x.yaml": [campaign(bid={"cpm": 13})]}), tx)
    assert a.version == b.version != c.version


def test_campaign_fields_are_normalised(tmp_path: Path, tx: Taxonomy) -> None:
    rules = load_rules(write(tmp_path, {"x.yaml": [
        campaign("a", bid={"cpc": 0.8}, daily_budget=5000, frequency_cap={"impressions": 3, "per": "week"},
                 timezone="Asia/Urumqi"),
        campaign("b", start=None, end=None, frequency_cap={"impressions": 2}),
    ]}), tx)
    a, b = rules.campaigns
    assert (a.bid_type, a.bid, a.daily_budget, a.cap_impressions, a.cap_per, a.timezone) == (
        "cpc", 0.8, 5000.0, 3, "week", "Asia/Urumqi")
    assert (a.start, a.end) == (dt.date(2026, 11, 1), dt.date(2026, 12, 31))
    assert (b.start, b.end, b.cap_per, b.timezone, b.status) == (None, None, "day", "Asia/Shanghai", "active")


def test_empty_files_are_fine(tmp_path: Path, tx: Taxonomy) -> None:
    rules = load_rules(write(tmp_path, {"a.yaml": "", "b.yaml": "[]\n", "c.yml": [campaign()]}), tx)
    assert [c.id for c in rules.campaigns] == ["acme-c1"]


# ------------------------------------------------------------- bad rules
BAD_YAML = """\
- id: acme-c1
  advertiser: acme
  bid: {cpm: 12.5
  category: auto
"""


@pytest.mark.parametrize(
    "files, file, campaign_id, path, reason",
    [
        # the same id in two files
        ({"a.yaml": [campaign("dup")], "b.yaml": [campaign("dup")]}, "b.yaml", "dup", "id", "a.yaml"),
        # the same id twice in one file
        ({"a.yaml": [campaign("dup"), campaign("dup")]}, "a.yaml", "dup", "id", "duplicate"),
        ({"a.yaml": [campaign(bid={"cpm": -1})]}, "a.yaml", "acme-c1", "bid.cpm", "positive"),  # negative
        ({"a.yaml": [campaign(bid={"cpc": 0})]}, "a.yaml", "acme-c1", "bid.cpc", "positive"),  # zero
        ({"a.yaml": [campaign(bid={"cpm": "12"})]}, "a.yaml", "acme-c1", "bid.cpm", "positive"),  # text
        ({"a.yaml": [campaign(bid={"cpx": 1})]}, "a.yaml", "acme-c1", "bid", "{cpm"),  # unknown type
        ({"a.yaml": [campaign(bid={"cpm": 1, "cpc": 1})]}, "a.yaml", "acme-c1", "bid", "{cpm"),  # both
        ({"a.yaml": [campaign(bid=None)]}, "a.yaml", "acme-c1", "bid", "{cpm"),  # missing
        ({"a.yaml": [campaign(category="autos")]}, "a.yaml", "acme-c1", "category", "unknown category"),
        ({"a.yaml": [campaign(category=None)]}, "a.yaml", "acme-c1", "category", "unknown category"),
        ({"a.yaml": [campaign(timezone="Asia/Beijing")]}, "a.yaml", "acme-c1", "timezone", "unknown time zone"),
        ({"a.yaml": [campaign(timezone="+08:00")]}, "a.yaml", "acme-c1", "timezone", "IANA"),  # an offset
        ({"a.yaml": [campaign(start="2026-12-31", end="2026-11-01")]}, "a.yaml", "acme-c1", "end", "before"),
        ({"a.yaml": [campaign(start="next monday")]}, "a.yaml", "acme-c1", "start", "YYYY-MM-DD"),
        ({"a.yaml": [campaign(frequency_cap={"impressions": 0})]},
         "a.yaml", "acme-c1", "frequency_cap.impressions", ">= 1"),  # zero cap
        ({"a.yaml": [campaign(frequency_cap={"impressions": 2.5})]},
         "a.yaml", "acme-c1", "frequency_cap.impressions", "whole number"),  # fractional cap
        ({"a.yaml": [campaign(frequency_cap={"impressions": 3, "per": "month"})]},
         "a.yaml", "acme-c1", "frequency_cap.per", "hour, day or week"),  # unknown window
        ({"a.yaml": [campaign(frequency_cap="3/day")]}, "a.yaml", "acme-c1", "frequency_cap", "impressions"),
        ({"a.yaml": [campaign(daily_budget=-5)]}, "a.yaml", "acme-c1", "daily_budget", "positive"),
        ({"a.yaml": [campaign(status="running")]}, "a.yaml", "acme-c1", "status", "active or paused"),
        ({"a.yaml": [campaign(budget=100)]}, "a.yaml", "acme-c1", "budget", "unknown field"),  # typo
        ({"a.yaml": [campaign(advertiser=None)]}, "a.yaml", "acme-c1", "advertiser", "required"),
        ({"a.yaml": [campaign(id=None)]}, "a.yaml", "[0]", "id", "required"),  # no id: position named
        ({"a.yaml": [campaign("has space")]}, "a.yaml", "has space", "id", "letters"),
        ({"a.yaml": [campaign(targeting={"geo": ["atlantis"]})]},
         "a.yaml", "acme-c1", "targeting.geo[0]", "unknown place"),  # spec error, full path
        ({"a.yaml": [campaign(targeting={"tags": {"any": ["car_lovr"]}})]},
         "a.yaml", "acme-c1", "targeting.tags.any[0]", "car_lover"),  # close match named
        ({"a.yaml": [campaign(targeting={"retargeting": {"any": [{"event": "visit", "advertiser": "rival"}]}})]},
         "a.yaml", "acme-c1", "targeting.retargeting.any[0].advertiser", "own advertiser"),
        ({"a.yaml": [campaign(targeting={"age": [[40, 30]]})]}, "a.yaml", "acme-c1", "targeting.age[0]", "inverted"),
        ({"a.yaml": [campaign(targeting=["male"])]}, "a.yaml", "acme-c1", "targeting", "mapping"),
        ({"a.yaml": BAD_YAML}, "a.yaml", None, "line 4", "not valid YAML"),  # unclosed {, noticed on line 4
        ({"a.yaml": {"id": "x"}}, "a.yaml", None, "", "YAML list"),  # a mapping, not a list
        ({"a.yaml": ["just text"]}, "a.yaml", "[0]", "", "mapping"),  # an item that is not a campaign
    ],
    ids=[
        "duplicate-across-files", "duplicate-in-file", "bid-negative", "bid-zero", "bid-text",
        "bid-unknown-type", "bid-both", "bid-missing", "category-unknown", "category-missing",
        "timezone-unknown", "timezone-offset", "end-before-start", "start-not-date", "cap-zero",
        "cap-fraction", "cap-per-month", "cap-not-mapping", "budget-negative", "status-unknown",
        "unknown-field", "advertiser-missing", "id-missing", "id-bad", "spec-place", "spec-tag",
        "spec-other-advertiser", "spec-age", "spec-not-mapping", "yaml-syntax", "file-not-list",
        "item-not-mapping",
    ],
)
def test_bad_rules(
    tmp_path: Path, tx: Taxonomy, files: dict[str, Any], file: str, campaign_id: str | None,
    path: str, reason: str,
) -> None:
    root = write(tmp_path, files)
    with pytest.raises(RulesError) as ei:
        load_rules(root, tx)
    err = ei.value
    hits = [p for p in err.problems if p.path == path and reason in p.reason]
    assert hits, err.problems
    (p,) = hits
    assert p.file is not None and p.file.endswith(file)
    assert p.campaign == campaign_id
    assert str(p).startswith(p.file)  # "file:campaign: path: reason", as `targeting validate` prints
    assert err.status == 422 and err.to_dict()["problems"]


def test_one_bad_campaign_loads_nothing(tmp_path: Path, tx: Taxonomy) -> None:
    good = [campaign(f"good-{i}") for i in range(5)]
    root = write(tmp_path, {"a.yaml": good, "b.yaml": [campaign("bad", bid={"cpm": 0}), campaign("fine")]})
    with pytest.raises(RulesError) as ei:
        load_rules(root, tx)
    assert [(p.campaign, p.path) for p in ei.value.problems] == [("bad", "bid.cpm")]


def test_every_problem_is_reported_at_once(tmp_path: Path, tx: Taxonomy) -> None:
    root = write(tmp_path, {
        "a.yaml": [campaign("a1", category="autos", targeting={"geo": ["atlantis"], "age": [[9, 1]]})],
        "b.yaml": [campaign("b1", timezone="Mars/Olympus"), campaign("b2"), campaign("b2")],
        "c.yaml": BAD_YAML,
    })
    with pytest.raises(RulesError) as ei:
        load_rules(root, tx)
    got = {(Path(p.file or "").name, p.campaign, p.path) for p in ei.value.problems}
    assert got == {
        ("a.yaml", "a1", "category"), ("a.yaml", "a1", "targeting.geo[0]"), ("a.yaml", "a1", "targeting.age[0]"),
        ("b.yaml", "b1", "timezone"), ("b.yaml", "b2", "id"), ("c.yaml", None, "line 4"),
    }
    assert "(and 5 more)" in ei.value.message


def test_missing_campaigns_directory(tmp_path: Path, tx: Taxonomy) -> None:
    with pytest.raises(RulesError, match="no campaigns directory"):
        load_rules(tmp_path, tx)


# ------------------------------------------------------------- known gaps
def test_impossible_date_is_a_rules_error(tmp_path: Path, tx: Taxonomy) -> None:
    text = "- id: c1\n  advertiser: acme\n  start: 2026-11-31\n  bid: {cpm: 1}\n  category: auto\n"
    with pytest.raises(RulesError) as ei:
        load_rules(write(tmp_path, {"a.yaml": text}), tx)
    assert [(p.campaign, p.path) for p in ei.value.problems] in ([("c1", "start")], [(None, "line 3")])


def test_unknown_frequency_cap_key_is_rejected(tmp_path: Path, tx: Taxonomy) -> None:
    root = write(tmp_path, {"a.yaml": [campaign(frequency_cap={"impressions": 3, "window": "week"})]})
    with pytest.raises(RulesError) as ei:
        load_rules(root, tx)
    assert [p.path for p in ei.value.problems] == ["frequency_cap.window"]


def test_duplicate_yaml_key_is_rejected(tmp_path: Path, tx: Taxonomy) -> None:
    text = "- id: c1\n  advertiser: acme\n  bid: {cpm: 1}\n  bid: {cpm: 100}\n  category: auto\n"
    with pytest.raises(RulesError):
        load_rules(write(tmp_path, {"a.yaml": text}), tx)


def test_duplicate_of_an_invalid_campaign_is_reported_too(tmp_path: Path, tx: Taxonomy) -> None:
    root = write(tmp_path, {"a.yaml": [campaign("dup", category="autos")], "b.yaml": [campaign("dup")]})
    with pytest.raises(RulesError) as ei:
        load_rules(root, tx)
    assert {(p.campaign, p.path) for p in ei.value.problems} == {("dup", "category"), ("dup", "id")}


def test_a_file_is_named_the_same_way_in_every_problem(tmp_path: Path, tx: Taxonomy) -> None:
    root = write(tmp_path, {"a.yaml": BAD_YAML, "b.yaml": [campaign(category="autos")]})
    with pytest.raises(RulesError) as ei:
        load_rules(root, tx)
    a, b = sorted(p.file or "" for p in ei.value.problems)
    assert Path(a).parent == Path(b).parent
