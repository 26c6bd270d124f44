"""Campaign files: read ``rules/campaigns/*.yaml``, validate everything, load all or nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .errors import Problem, RulesError
from .spec import Clause, Spec, SpecError, parse_spec
from .state import WINDOWS as CAP_WINDOWS
from .taxonomy import Taxonomy

DEFAULT_TZ = "Asia/Shanghai"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
CAMPAIGN_FIELDS = (
    "id", "advertiser", "status", "start", "end", "bid", "daily_budget",
    "frequency_cap", "category", "timezone", "targeting", "name",
)


@dataclass(frozen=True)
class Campaign:
    id: str
    advertiser: str
    status: str
    bid_type: str  # "cpm" | "cpc"
    bid: float
    category: str
    timezone: str
    spec: Spec
    clauses: tuple[Clause, ...]
    start: dt.date | None = None
    end: dt.date | None = None
    daily_budget: float | None = None
    cap_impressions: int | None = None
    cap_per: str | None = None  # hour | day | week
    name: str = ""
    source: str = ""

    @property
    def needs_store(self) -> bool:
        """Whether deciding this campaign needs per-user or per-campaign state."""
        return self.cap_impressions is not None or self.daily_budget is not None or self.spec.uses_retargeting

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "advertiser": self.advertiser,
            "status": self.status,
            "category": self.category,
            "bid": {self.bid_type: self.bid},
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "timezone": self.timezone,
            "daily_budget": self.daily_budget,
            "frequency_cap": (
                {"impressions": self.cap_impressions, "per": self.cap_per} if self.cap_impressions else None
            ),
            "targeting": self.spec.to_dict(),
            "source": self.source,
        }


@dataclass(frozen=True)
class RuleSet:
    campaigns: tuple[Campaign, ...]
    version: str  # content hash of the campaign files, stable across restarts


def load_rules(rules_dir: str | Path, taxonomy: Taxonomy) -> RuleSet:
    """Read and validate every ``campaigns/*.yaml`` (or ``*.yml``) under ``rules_dir``.

    Raises :class:`RulesError` with every problem found; never returns a partial set.
    """
    root = Path(rules_dir)
    cdir = root / "campaigns"
    if not cdir.is_dir():
        raise RulesError([Problem(str(cdir), None, "campaigns", "no campaigns directory")])
    files = sorted(p for p in cdir.iterdir() if p.suffix in (".yaml", ".yml"))
    docs: list[tuple[str, Any]] = []
    problems: list[Problem] = []
    digest = hashlib.sha256()
    for f in files:
        text = f.read_bytes()
        digest.update(f.name.encode() + b"\0" + text)
        name = str(f.relative_to(root.parent)) if root.parent != Path() else str(f)
        try:
            docs.append((name, yaml.load(text, Loader=_StrictLoader)))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark else "file"
            problems.append(Problem(name, None, where, f"not valid YAML: {getattr(e, 'problem', None) or e}"))
    try:
        campaigns = validate_campaigns(docs, taxonomy)
    except RulesError as e:
        problems.extend(e.problems)
    if problems:
        raise RulesError(problems)
    return RuleSet(campaigns=campaigns, version=digest.hexdigest()[:12])


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader that refuses duplicate keys and leaves dates as text (validated by us,
    so 2026-11-31 is a campaign error, not a crash)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def validate_campaigns(docs: Sequence[tuple[str, Any]], taxonomy: Taxonomy) -> tuple[Campaign, ...]:
    """Pure validation of parsed YAML documents ``[(file name, content)]``."""
    problems: list[Problem] = []
    out: list[Campaign] = []
    seen: dict[str, str] = {}
    for fname, doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, list):
            problems.append(Problem(fname, None, "", "a campaign file is a YAML list of campaigns"))
            continue
        for i, raw in enumerate(doc):
            c, errs = _campaign(raw, i, fname, taxonomy)
            problems.extend(errs)
            cid = raw.get("id") if isinstance(raw, Mapping) else None
            if isinstance(cid, str):
                if cid in seen:
                    problems.append(Problem(fname, cid, "id", f"duplicate campaign id, first defined in {seen[cid]}"))
                    continue
                seen[cid] = fname
            if c is not None:
                out.append(c)
    if problems:
        raise RulesError(problems)
    return tuple(out)


def _campaign(raw: Any, i: int, fname: str, tx: Taxonomy) -> tuple[Campaign | None, list[Problem]]:
    cid = raw.get("id") if isinstance(raw, Mapping) else None
    label = str(cid) if cid is not None else f"[{i}]"
    errs: list[Problem] = []

    def fail(path: str, reason: str) -> None:
        errs.append(Problem(fname, label, path, reason))

    if not isinstance(raw, Mapping):
        fail("", "a campaign is a mapping")
        return None, errs
    for k in raw:
        if k not in CAMPAIGN_FIELDS:
            fail(str(k), f"unknown field {k!r}; known: {', '.join(CAMPAIGN_FIELDS)}")
    if not (isinstance(cid, str) and _ID.match(cid)):
        fail("id", "id is required: letters, digits and _.:- (at most 128)")
    adv = raw.get("advertiser")
    if not (isinstance(adv, str) and _ID.match(adv)):
        fail("advertiser", "advertiser is required: letters, digits and _.:-")
    status = raw.get("status", "active")
    if status not in ("active", "paused"):
        fail("status", f"status is active or paused, not {status!r}")
    tzname = raw.get("timezone", DEFAULT_TZ)
    try:
        ZoneInfo(str(tzname))
    except (ZoneInfoNotFoundError, ValueError):
        fail("timezone", f"unknown time zone {tzname!r} (an IANA name like Asia/Shanghai)")
    start, end = _date(raw.get("start"), "start", fail), _date(raw.get("end"), "end", fail)
    if start and end and start > end:
        fail("end", f"end {end} is before start {start}")
    bid = raw.get("bid")
    bid_type, bid_value = "cpm", 0.0
    if not (isinstance(bid, Mapping) and len(bid) == 1 and next(iter(bid)) in ("cpm", "cpc")):
        fail("bid", "bid is {cpm: amount} or {cpc: amount}")
    else:
        bid_type, v = next(iter(bid.items()))
        if not _positive(v):
            fail(f"bid.{bid_type}", f"a bid is a positive amount, not {v!r}")
        else:
            bid_value = float(v)
    budget = raw.get("daily_budget")
    if budget is not None and not _positive(budget):
        fail("daily_budget", f"daily_budget is a positive amount, not {budget!r}")
    cap_n: int | None = None
    cap_per: str | None = None
    cap = raw.get("frequency_cap")
    if cap is not None:
        if not isinstance(cap, Mapping):
            fail("frequency_cap", "frequency_cap is {impressions: n, per: hour|day|week}")
        else:
            for k in cap:
                if k not in ("impressions", "per"):
                    fail(f"frequency_cap.{k}", f"unknown key {k!r}; expected impressions and per")
            n, per = cap.get("impressions"), cap.get("per", "day")
            if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
                fail("frequency_cap.impressions", "a whole number of impressions >= 1")
            else:
                cap_n = n
            if per not in CAP_WINDOWS:
                fail("frequency_cap.per", f"per is hour, day or week, not {per!r}")
            else:
                cap_per = per
    category = raw.get("category")
    if category not in tx.categories:
        fail("category", f"unknown category {category!r}; known: {', '.join(tx.categories)}")
    spec = Spec()
    try:
        spec = parse_spec(raw.get("targeting", {}), tx, advertiser=adv, path="targeting")
    except SpecError as e:
        for path, reason in e.problems:
            fail(path, reason)
    if errs or not (isinstance(cid, str) and isinstance(adv, str) and isinstance(category, str)):
        return None, errs
    return (
        Campaign(
            id=cid, advertiser=adv, status=status, bid_type=bid_type, bid=bid_value,
            category=category, timezone=str(tzname), spec=spec, clauses=spec.clauses(tx),
            start=start, end=end, daily_budget=float(budget) if budget is not None else None,
            cap_impressions=cap_n, cap_per=cap_per if cap_n else None,
            name=str(raw.get("name", "")), source=fname,
        ),
        errs,
    )


def _date(v: Any, path: str, fail: Any) -> dt.date | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    try:
        return dt.date.fromisoformat(str(v))
    except ValueError:
        fail(path, f"a date is YYYY-MM-DD, not {v!r}")
        return None


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
