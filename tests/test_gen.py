"""``generate_campaigns``: valid, deterministic, and using the whole language."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from targeting.gen import generate_campaigns, write_campaigns
from targeting.rules import load_rules, validate_campaigns
from targeting.taxonomy import Taxonomy

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tx() -> Taxonomy:
    return Taxonomy.load(REPO / "rules" / "taxonomy")


@pytest.fixture(scope="module")
def campaigns(tx: Taxonomy) -> list[dict[str, Any]]:
    return generate_campaigns(1000, tx, seed=11)


def test_valid_after_a_yaml_round_trip(tx: Taxonomy, campaigns: list[dict[str, Any]]) -> None:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc = yaml.load(yaml.dump(campaigns, Dumper=dumper, allow_unicode=True), Loader=loader)
    loaded = validate_campaigns([("gen.yaml", doc)], tx)
    assert len(loaded) == 1000 and len({c.id for c in loaded}) == 1000


def test_deterministic_in_seed(tx: Taxonomy) -> None:
    assert generate_campaigns(50, tx, seed=1) == generate_campaigns(50, tx, seed=1)
    assert generate_campaigns(50, tx, seed=1) != generate_campaigns(50, tx, seed=2)
    assert generate_campaigns(0, tx) == []


def _specs(c: dict[str, Any]) -> list[dict[str, Any]]:
    t = c["targeting"]
    return [t, *t.get("any_of", [])]


def test_uses_every_dimension_and_option(tx: Taxonomy, campaigns: list[dict[str, Any]]) -> None:
    specs = [s for c in campaigns for s in _specs(c)]
    seen: set[str] = set()
    for c in campaigns:
        seen |= {f"status:{c['status']}", f"bid:{next(iter(c['bid']))}"}
        seen |= {k for k in ("start", "end", "daily_budget", "timezone") if k in c}
        if "frequency_cap" in c:
            seen.add(f"cap:{c['frequency_cap']['per']}")
        if "any_of" in c["targeting"]:
            seen.add("any_of")
    for s in specs:
        g = s.get("geo", {})
        seen |= {f"geo:{k}" for k in g}
        for p in g.get("include", []) + g.get("exclude", []):
            seen.add("place:adcode" if isinstance(p, int) else
                     "place:pinyin" if p.isascii() else "place:chinese")
        t = s.get("time", {})
        seen |= {f"time:{k}" for k in t}
        if "grid" in t:
            seen.add(f"grid:{len(t['grid'][0])}")
        if "gender" in s:
            seen.add(f"gender:{type(s['gender']).__name__}")
        if "age" in s:
            seen.add(f"age:{type(s['age']).__name__}")
        tags = s.get("tags")
        if tags is not None:
            seen |= {f"tags:{k}" for k in tags} if isinstance(tags, dict) else {"tags:list"}
        seen |= {f"scene:{k}" for k in s.get("scene", {})}
        seen |= {f"retargeting:{k}" for k in s.get("retargeting", {})}
    want = {
        "status:active", "status:paused", "bid:cpm", "bid:cpc", "start", "end", "daily_budget", "timezone",
        "cap:hour", "cap:day", "cap:week", "any_of", "geo:include", "geo:exclude", "place:adcode",
        "place:pinyin", "place:chinese", "time:days", "time:hours", "time:grid", "time:series", "grid:24",
        "grid:48", "gender:str", "gender:list", "age:list", "age:dict", "tags:any", "tags:all", "tags:none",
        "tags:list", "scene:include", "scene:exclude", "retargeting:any", "retargeting:none",
    }
    assert want <= seen, want - seen
    assert {c["category"] for c in campaigns} == set(tx.categories)


def test_retargeting_uses_own_advertiser_only(campaigns: list[dict[str, Any]]) -> None:
    for c in campaigns:
        for rules in c["targeting"].get("retargeting", {}).values():
            assert all(r.get("advertiser", c["advertiser"]) == c["advertiser"] for r in rules)


def test_write_campaigns_splits_files(tmp_path: Path, tx: Taxonomy) -> None:
    root = tmp_path / "rules"
    (root / "campaigns").mkdir(parents=True)
    (root / "taxonomy").symlink_to(REPO / "rules" / "taxonomy")
    paths = write_campaigns(generate_campaigns(25, tx, seed=3), root / "campaigns", per_file=10)
    assert [p.name for p in paths] == ["generated-0001.yaml", "generated-0002.yaml", "generated-0003.yaml"]
    assert len(load_rules(root, tx).campaigns) == 25
