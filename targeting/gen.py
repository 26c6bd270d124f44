"""Random valid campaigns for benchmarks and tests (``targeting gen campaigns``).

Every campaign is drawn from the whole targeting language: places by adcode,
Chinese name and pinyin, include/exclude, day/hour, 24- and 48-slot grids and
the 336-character series, time zones, gender, age ranges in both forms, tag
any/all/none, scenes, retargeting on the campaign's own advertiser, ``any_of``,
paused campaigns, flight dates, cpm/cpc bids, budgets and frequency caps. The
result passes :func:`targeting.rules.validate_campaigns` unchanged.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import yaml

from .errors import TargetingError
from .spec import EVENTS, SpecError, parse_spec
from .taxonomy import SLOTS, WEEKDAYS, Taxonomy

TIMEZONES = ("Asia/Shanghai", "Asia/Shanghai", "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Tokyo", "UTC")
CAMPAIGNS_PER_FILE = 1000
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: ~5x faster


def generate_campaigns(n: int, taxonomy: Taxonomy, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` campaign dicts (the YAML form of docs/campaigns.md), deterministic in ``seed``.

    Ids are ``gen-000001``…; advertisers ``adv-000``… (about 20 campaigns each).
    Most campaigns are active and in flight today so that benchmarks see real
    candidate sets; the rest exercise paused status and past/future flights.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    advertisers = max(1, n // 20)
    today = dt.date.today()
    out = []
    for i in range(n):
        adv = f"adv-{rng.randrange(advertisers):03d}"
        c: dict[str, Any] = {
            "id": f"gen-{i + 1:06d}",
            "name": f"generated campaign {i + 1}",
            "advertiser": adv,
            "status": "paused" if rng.random() < 0.05 else "active",
            "category": rng.choice(list(taxonomy.categories)),
            "bid": {"cpm": round(rng.uniform(1, 40), 2)} if rng.random() < 0.6
            else {"cpc": round(rng.uniform(0.1, 3), 2)},
            "targeting": _valid_spec(rng, taxonomy, adv),
        }
        if rng.random() < 0.2:
            c["timezone"] = rng.choice(TIMEZONES)
        r = rng.random()
        if r < 0.1:  # a finished or a future flight
            start = today + dt.timedelta(days=rng.choice((-60, 30)))
            c["start"], c["end"] = start, start + dt.timedelta(days=20)
        elif r < 0.5:
            c["start"] = today - dt.timedelta(days=rng.randrange(1, 30))
            c["end"] = today + dt.timedelta(days=rng.randrange(30, 365))
        if rng.random() < 0.25:
            c["daily_budget"] = rng.choice((500, 1000, 5000, 20000))
        if rng.random() < 0.25:
            c["frequency_cap"] = {"impressions": rng.randrange(1, 10), "per": rng.choice(("hour", "day", "week"))}
        out.append(c)
    return out


def write_campaigns(campaigns: list[dict[str, Any]], out_dir: str | Path,
                    per_file: int = CAMPAIGNS_PER_FILE) -> list[Path]:
    """Write ``campaigns`` as ``generated-0001.yaml``… (``per_file`` each); returns the paths."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(0, max(len(campaigns), 1), per_file):
        p = d / f"generated-{k // per_file + 1:04d}.yaml"
        chunk = campaigns[k:k + per_file]
        text = yaml.dump(chunk, Dumper=_DUMPER, allow_unicode=True, sort_keys=False)
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    return paths


# ------------------------------------------------------------------ pieces
def _valid_spec(rng: random.Random, tx: Taxonomy, advertiser: str) -> dict[str, Any]:
    """A random spec that parses and can match someone (an ``any_of`` whose every
    alternative contradicts the dimensions beside it is refused by the loader)."""
    for _ in range(20):
        s = _spec(rng, tx, depth=0)
        if rng.random() < 0.08:
            s["retargeting"] = _retargeting(rng)
        try:
            parse_spec(s, tx, advertiser=advertiser)
        except SpecError:
            continue
        return s
    return {}


def _spec(rng: random.Random, tx: Taxonomy, depth: int) -> dict[str, Any]:
    s: dict[str, Any] = {}
    if rng.random() < 0.6:
        s["geo"] = _geo(rng, tx)
    if rng.random() < 0.35:
        s["time"] = _time(rng)
    if rng.random() < 0.3:
        s["gender"] = rng.choice(("male", "female", ["male", "female"]))
    if rng.random() < 0.4:
        s["age"] = _age(rng)
    if rng.random() < 0.4:
        s["tags"] = _tags(rng, tx)
    if rng.random() < 0.25:
        s["scene"] = _scene(rng, tx)
    if depth == 0 and rng.random() < 0.08:
        s["any_of"] = [_spec(rng, tx, depth + 1) for _ in range(rng.randrange(2, 4))]
    return s


def _place_name(rng: random.Random, tx: Taxonomy, adcode: int) -> Any:
    p = tx.places[adcode]
    # names that several places share (e.g. a pinyin) would be ambiguous: use the adcode then
    choice = rng.choice((adcode, p.name, p.short_name, p.pinyin))
    if choice != adcode:
        try:
            if tx.resolve_place(choice) != adcode:
                return adcode
        except TargetingError:  # ambiguous
            return adcode
    return choice


def _geo(rng: random.Random, tx: Taxonomy) -> dict[str, Any]:
    provinces = tx.provinces
    g: dict[str, Any] = {}
    r = rng.random()
    if r < 0.85:
        include = []
        for _ in range(rng.randrange(1, 5)):
            p = rng.choice(provinces)
            cities = tx.cities_of(p)
            code = rng.choice(cities) if cities and rng.random() < 0.5 else p
            include.append(_place_name(rng, tx, code))
        g["include"] = list(dict.fromkeys(include))
        if rng.random() < 0.2:
            p = rng.choice(provinces)
            cities = tx.cities_of(p)
            if cities:
                g["exclude"] = [_place_name(rng, tx, rng.choice(cities))]
    else:  # exclude-only: unknown locations pass
        g["exclude"] = [_place_name(rng, tx, rng.choice(provinces))]
    return g


def _time(rng: random.Random) -> dict[str, Any]:
    form = rng.random()
    if form < 0.6:
        t: dict[str, Any] = {}
        if rng.random() < 0.7:
            t["days"] = rng.choice((["weekdays"], ["weekends"], rng.sample(list(WEEKDAYS), rng.randrange(1, 7))))
        lo = rng.randrange(0, 20)
        hi = rng.randrange(lo, 24)
        t["hours"] = [f"{lo}-{hi}"] + ([rng.randrange(0, 24)] if rng.random() < 0.3 else [])
        return t
    if form < 0.85:
        width = rng.choice((24, 48))
        rows = []
        for _ in range(7):
            lo = rng.randrange(0, width - 1)
            hi = rng.randrange(lo + 1, width + 1)
            rows.append("".join("1" if lo <= k < hi else "0" for k in range(width)))
        return {"grid": rows}
    lo = rng.randrange(0, SLOTS - 48)
    hi = rng.randrange(lo + 1, SLOTS + 1)
    return {"series": "".join("1" if lo <= k < hi else "0" for k in range(SLOTS))}


def _age(rng: random.Random) -> Any:
    lo = rng.randrange(14, 60)
    hi = rng.randrange(lo, min(lo + 30, 100))
    if rng.random() < 0.3:
        return {"min": lo, "max": hi}
    ranges = [[lo, hi]]
    if rng.random() < 0.3:
        lo2 = rng.randrange(hi, 110) if hi < 109 else hi
        ranges.append([lo2, min(lo2 + rng.randrange(0, 10), 120)])
    return ranges


def _tags(rng: random.Random, tx: Taxonomy) -> Any:
    ids = tx.tag_ids
    if rng.random() < 0.2:
        return rng.sample(ids, rng.randrange(1, 4))  # list form = any
    t: dict[str, Any] = {}
    pool = rng.sample(ids, min(len(ids), 6))
    if rng.random() < 0.8:
        t["any"] = pool[:rng.randrange(1, 4)]
    if rng.random() < 0.25:
        t["all"] = [pool[4]]
    if rng.random() < 0.3 or not t:
        t["none"] = [pool[5]]
    return t


def _scene(rng: random.Random, tx: Taxonomy) -> dict[str, Any]:
    scenes = list(tx.scenes)
    if rng.random() < 0.7:
        return {"include": rng.sample(scenes, rng.randrange(1, len(scenes)))}
    return {"exclude": [rng.choice(scenes)]}


def _retargeting(rng: random.Random) -> dict[str, Any]:
    r: dict[str, Any] = {}
    if rng.random() < 0.8:
        r["any"] = [{"event": e, "within_days": rng.choice((7, 14, 30))} for e in rng.sample(EVENTS[:3], 2)]
    if rng.random() < 0.5 or not r:
        r["none"] = [{"event": "purchase", "within_days": rng.choice((3, 7))}]
    return r
