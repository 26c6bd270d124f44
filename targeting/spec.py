"""The targeting language: parse a raw spec once, normalise it, expand it.

``parse_spec(raw, taxonomy)`` turns the YAML/JSON form into a frozen
:class:`Spec`. ``Spec.clauses()`` expands ``any_of`` into a disjunction of flat
:class:`Clause` objects over the taxonomy's integer domains; the campaign
compiler and the user-side audience index both consume clauses, so they share
one meaning. :func:`matches` is the plain-Python reference evaluator the
property tests compare both against.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import TargetingError
from .taxonomy import GENDERS, MAX_AGE, SLOTS, WEEKDAYS, Taxonomy

DIMENSIONS = ("geo", "time", "gender", "age", "tags", "scene", "retargeting", "any_of")
EVENTS = ("visit", "click", "add_to_cart", "purchase")
MAX_WINDOW_DAYS = 365
MAX_CLAUSES = 64  # any_of expansions beyond this are refused, not silently truncated
# Parse-time limits, checked while parsing so that a hostile spec costs little to refuse
# (an any_of of 15,000 alternatives stops at the 65th, not after expanding all of them).
MAX_ALTERNATIVES = MAX_CLAUSES  # leaves of the any_of tree: an upper bound of the clauses
MAX_ANY_OF_DEPTH = 8  # any_of inside any_of; real specs nest once or twice
MAX_VALUES = 4096  # list items in the whole spec (places, tags, hours, age ranges, rules, ...)
MAX_NAME = 64  # characters of a place, tag, scene, day or hour string
MAX_PROBLEMS = 10  # report this many problems, then stop (each unknown name costs a fuzzy search)

Rule = tuple[str, int]  # (event, within_days)


class SpecError(TargetingError):
    """Every problem found in one spec, each as (path, reason)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        path, reason = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(reason + more, path=path, code="invalid_spec")
        self.problems = problems


@dataclass(frozen=True)
class Spec:
    """A normalised targeting spec. ``None`` means the dimension is absent."""

    geo_include: frozenset[int] | None = None
    geo_exclude: frozenset[int] = frozenset()
    slots: frozenset[int] | None = None  # half-hour-of-week slots, Monday 00:00 = 0
    gender: frozenset[str] | None = None
    age: tuple[tuple[int, int], ...] | None = None
    tags_any: frozenset[str] | None = None
    tags_all: frozenset[str] = frozenset()
    tags_none: frozenset[str] = frozenset()
    scene_include: frozenset[str] | None = None
    scene_exclude: frozenset[str] = frozenset()
    rt_any: tuple[Rule, ...] | None = None
    rt_none: tuple[Rule, ...] = ()
    any_of: tuple[Spec, ...] = ()

    def clauses(self, taxonomy: Taxonomy) -> tuple[Clause, ...]:
        """The spec as an OR of flat clauses; empty when nothing can match."""
        base = _flat_clause(self, taxonomy)
        if not self.any_of:
            out = [base]
        else:
            out = [base.merge(c) for sub in self.any_of for c in sub.clauses(taxonomy)]
        seen: dict[Clause, None] = {}
        for c in out:
            if not c.impossible():
                seen.setdefault(c)
        if len(seen) > MAX_CLAUSES:
            raise SpecError([("any_of", f"expands to {len(seen)} alternatives; at most {MAX_CLAUSES}")])
        return tuple(seen)

    @property
    def uses_retargeting(self) -> bool:
        return self.rt_any is not None or bool(self.rt_none) or any(s.uses_retargeting for s in self.any_of)

    @property
    def uses_time(self) -> bool:
        return self.slots is not None or any(s.uses_time for s in self.any_of)

    def to_dict(self, taxonomy: Taxonomy | None = None) -> dict[str, Any]:
        """Canonical JSON form (adcodes, ids, explicit half-hour series)."""
        d: dict[str, Any] = {}
        if self.geo_include is not None or self.geo_exclude:
            g: dict[str, Any] = {}
            if self.geo_include is not None:
                g["include"] = sorted(self.geo_include)
            if self.geo_exclude:
                g["exclude"] = sorted(self.geo_exclude)
            d["geo"] = g
        if self.slots is not None:
            d["time"] = {"series": "".join("1" if i in self.slots else "0" for i in range(SLOTS))}
        if self.gender is not None:
            d["gender"] = sorted(self.gender)
        if self.age is not None:
            d["age"] = [list(r) for r in self.age]
        if self.tags_any is not None or self.tags_all or self.tags_none:
            t: dict[str, Any] = {}
            if self.tags_any is not None:
                t["any"] = sorted(self.tags_any)
            if self.tags_all:
                t["all"] = sorted(self.tags_all)
            if self.tags_none:
                t["none"] = sorted(self.tags_none)
            d["tags"] = t
        if self.scene_include is not None or self.scene_exclude:
            s: dict[str, Any] = {}
            if self.scene_include is not None:
                s["include"] = sorted(self.scene_include)
            if self.scene_exclude:
                s["exclude"] = sorted(self.scene_exclude)
            d["scene"] = s
        if self.rt_any is not None or self.rt_none:
            r: dict[str, Any] = {}
            if self.rt_any is not None:
                r["any"] = [{"event": e, "within_days": n} for e, n in self.rt_any]
            if self.rt_none:
                r["none"] = [{"event": e, "within_days": n} for e, n in self.rt_none]
            d["retargeting"] = r
        if self.any_of:
            d["any_of"] = [s.to_dict(taxonomy) for s in self.any_of]
        return d


@dataclass(frozen=True)
class Clause:
    """A conjunction over integer domains (see taxonomy); ``None`` = unconstrained.

    geo/gender/age/scene hold the allowed domain indices (0 = unknown),
    ``slots`` the allowed half-hour slots, ``tags_any`` a tuple of sets each of
    which must meet the user's tags, ``rt_any`` a tuple of rule lists each of
    which needs one satisfied rule.
    """

    geo: frozenset[int] | None = None
    gender: frozenset[int] | None = None
    age: frozenset[int] | None = None
    scene: frozenset[int] | None = None
    slots: frozenset[int] | None = None
    tags_any: tuple[frozenset[str], ...] = ()
    tags_all: frozenset[str] = frozenset()
    tags_none: frozenset[str] = frozenset()
    rt_any: tuple[tuple[Rule, ...], ...] = ()
    rt_none: frozenset[Rule] = frozenset()

    def merge(self, other: Clause) -> Clause:
        """The AND of two clauses."""

        def meet(a: frozenset[int] | None, b: frozenset[int] | None) -> frozenset[int] | None:
            return b if a is None else a if b is None else a & b

        return Clause(
            geo=meet(self.geo, other.geo),
            gender=meet(self.gender, other.gender),
            age=meet(self.age, other.age),
            scene=meet(self.scene, other.scene),
            slots=meet(self.slots, other.slots),
            tags_any=tuple(dict.fromkeys(self.tags_any + other.tags_any)),
            tags_all=self.tags_all | other.tags_all,
            tags_none=self.tags_none | other.tags_none,
            rt_any=tuple(dict.fromkeys(self.rt_any + other.rt_any)),
            rt_none=self.rt_none | other.rt_none,
        )

    def impossible(self) -> bool:
        """True when no user or impression can satisfy the clause."""
        if any(s is not None and not s for s in (self.geo, self.gender, self.age, self.scene, self.slots)):
            return True
        if any(not a for a in self.tags_any) or (self.tags_all & self.tags_none):
            return True
        return any(a <= self.tags_none for a in self.tags_any)


def _flat_clause(spec: Spec, tx: Taxonomy) -> Clause:
    geo = None
    if spec.geo_include is not None or spec.geo_exclude:
        inc = None
        if spec.geo_include is not None:
            inc = frozenset().union(*(tx.place_leaves(a) for a in spec.geo_include))
        exc = frozenset().union(*(tx.place_leaves(a) for a in spec.geo_exclude)) if spec.geo_exclude else frozenset()
        base = inc if inc is not None else frozenset(range(tx.geo_domain))
        geo = base - exc
    gender = None
    if spec.gender is not None:
        gender = frozenset(GENDERS.index(g) + 1 for g in spec.gender)
    age = None
    if spec.age is not None:
        age = frozenset(a + 1 for lo, hi in spec.age for a in range(lo, hi + 1))
    scene = None
    if spec.scene_include is not None or spec.scene_exclude:
        idx = tx.scene_index()
        base = (
            frozenset(idx[s] for s in spec.scene_include)
            if spec.scene_include is not None
            else frozenset(range(tx.scene_domain))
        )
        scene = base - frozenset(idx[s] for s in spec.scene_exclude)
    return Clause(
        geo=geo,
        gender=gender,
        age=age,
        scene=scene,
        slots=spec.slots,
        tags_any=(spec.tags_any,) if spec.tags_any is not None else (),
        tags_all=spec.tags_all,
        tags_none=spec.tags_none,
        rt_any=(spec.rt_any,) if spec.rt_any is not None else (),
        rt_none=frozenset(spec.rt_none),
    )


# ------------------------------------------------------------------ parsing
_HOUR_RANGE = re.compile(r"^\s*(\d{1,2})\s*-\s*(\d{1,2})\s*$")
_DAY_ALIASES = {"weekdays": WEEKDAYS[:5], "weekends": WEEKDAYS[5:], "daily": WEEKDAYS, "all": WEEKDAYS}
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NAMES = {**{d: i for i, d in enumerate(WEEKDAYS)}, **{d: i for i, d in enumerate(_FULL_DAYS)}}


class _Stop(Exception):
    """Parsing gave up: a limit was passed or enough problems were found."""


class _Parser:
    def __init__(self, tx: Taxonomy, advertiser: str | None) -> None:
        self.tx = tx
        self.advertiser = advertiser
        self.problems: list[tuple[str, str]] = []
        self.leaves = 0  # specs without any_of seen so far: each is at least one clause
        self.values = 0  # list items seen so far
        self.depth = 0  # any_of nesting

    def fail(self, path: str, reason: str) -> None:
        self.problems.append((path, reason))
        if len(self.problems) >= MAX_PROBLEMS:
            raise _Stop

    def stop(self, path: str, reason: str) -> None:
        """A limit was passed: record it and abandon the rest of the spec."""
        self.problems.append((path, reason))
        raise _Stop

    def count(self, items: Any, path: str) -> None:
        """Charge the items of one list field against :data:`MAX_VALUES`."""
        if isinstance(items, (list, tuple)):
            self.values += len(items)
            if self.values > MAX_VALUES:
                self.stop(path, f"the spec lists more than {MAX_VALUES} values; split it or use broader ones")

    def too_long(self, value: Any, path: str) -> bool:
        """Refuse an over-long name before it reaches a fuzzy name search."""
        if isinstance(value, str) and len(value) > MAX_NAME:
            self.fail(path, f"a name is at most {MAX_NAME} characters, not {len(value)}")
            return True
        return False

    def spec(self, raw: Any, path: str) -> Spec:
        if raw is None:
            self.leaves += 1
            return Spec()
        if not isinstance(raw, Mapping):
            self.fail(path or "targeting", f"a targeting spec must be a mapping, not {type(raw).__name__}")
            return Spec()
        if "any_of" not in raw:
            self.leaves += 1
        fields: dict[str, Any] = {}
        for key, value in raw.items():
            p = f"{path}.{key}" if path else str(key)
            if key == "geo":
                fields.update(self.geo(value, p))
            elif key == "time":
                fields["slots"] = self.time(value, p)
            elif key == "gender":
                fields["gender"] = self.gender(value, p)
            elif key == "age":
                fields["age"] = self.age(value, p)
            elif key == "tags":
                fields.update(self.tags(value, p))
            elif key == "scene":
                fields.update(self.scene(value, p))
            elif key == "retargeting":
                fields.update(self.retargeting(value, p))
            elif key == "any_of":
                fields["any_of"] = self.any_of(value, p)
            else:
                self.fail(p, f"unknown dimension {key!r}; known: {', '.join(DIMENSIONS)}")
        return Spec(**fields)

    # each dimension -------------------------------------------------------
    def _include_exclude(self, value: Any, path: str) -> tuple[list[Any] | None, list[Any]]:
        if isinstance(value, (list, tuple)):
            if not value:
                self.fail(path, "empty list matches nobody; remove it or name a value")
            return list(value), []
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return [value], []
        if not isinstance(value, Mapping):
            self.fail(path, "expected a list or {include: [...], exclude: [...]}")
            return None, []
        for k in value:
            if k not in ("include", "exclude"):
                self.fail(f"{path}.{k}", f"unknown key {k!r}; expected include or exclude")
        inc, exc = value.get("include"), value.get("exclude", [])
        if inc is not None and not isinstance(inc, (list, tuple)):
            inc = [inc]
        if not isinstance(exc, (list, tuple)):
            exc = [exc]
        if inc is not None and len(inc) == 0:
            self.fail(f"{path}.include", "empty include list matches nobody; remove it or name a value")
        if inc is None and not exc:
            self.fail(path, "needs include or exclude")
        return (list(inc) if inc is not None else None), list(exc)

    def geo(self, value: Any, path: str) -> dict[str, Any]:
        return self._sides(value, path, "geo", self.tx.resolve_place)

    def scene(self, value: Any, path: str) -> dict[str, Any]:
        return self._sides(value, path, "scene", self.tx.check_scene)

    def _sides(self, value: Any, path: str, name: str, resolve: Callable[[Any, str], Any]) -> dict[str, Any]:
        """``{name}_include`` / ``{name}_exclude`` of an include/exclude dimension, each
        value checked by ``resolve(value, path)``; paths index lists, never scalars."""
        inc, exc = self._include_exclude(value, path)
        scalar = not isinstance(value, (list, tuple, Mapping))

        def check(items: list[Any], p: str) -> frozenset[Any]:
            self.count(items, p)
            out = set()
            for i, item in enumerate(items):
                where = p if scalar else f"{p}[{i}]"
                if self.too_long(item, where):
                    continue
                try:
                    out.add(resolve(item, where))
                except TargetingError as e:
                    self.fail(e.path or p, e.message)
            return frozenset(out)

        out: dict[str, Any] = {}
        if inc is not None:
            out[f"{name}_include"] = check(inc, path + (".include" if isinstance(value, Mapping) else ""))
        if exc:
            out[f"{name}_exclude"] = check(exc, path + ".exclude")
        return out

    def gender(self, value: Any, path: str) -> frozenset[str] | None:
        items = value if isinstance(value, (list, tuple)) else [value]
        self.count(items, path)
        if not items:
            self.fail(path, "empty gender list matches nobody")
            return None
        out = set()
        for i, g in enumerate(items):
            p = f"{path}[{i}]" if isinstance(value, (list, tuple)) else path
            if g in GENDERS:
                out.add(g)
            else:
                self.fail(p, f"unknown gender {g!r}; expected male or female")
        return frozenset(out)

    def age(self, value: Any, path: str) -> tuple[tuple[int, int], ...] | None:
        if isinstance(value, Mapping):
            ranges: list[Any] = [[value.get("min", 0), value.get("max", MAX_AGE)]]
            extra = set(value) - {"min", "max"}
            if extra:
                self.fail(f"{path}.{min(extra)}", "unknown key; expected min and max")
            paths = [path]
        elif isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value):
            ranges, paths = [list(value)], [path]
        elif isinstance(value, (list, tuple)):
            ranges, paths = list(value), [f"{path}[{i}]" for i in range(len(value))]
            if not ranges:
                self.fail(path, "empty age list matches nobody")
                return None
        else:
            self.fail(path, "expected [[min, max], ...] or {min, max}")
            return None
        self.count(ranges, path)
        out = []
        for r, p in zip(ranges, paths):
            if isinstance(r, Mapping):
                r = [r.get("min", 0), r.get("max", MAX_AGE)]
            if not (isinstance(r, (list, tuple)) and len(r) == 2 and all(_is_int(v) for v in r)):
                self.fail(p, f"an age range is [min, max] in whole years, not {r!r}")
                continue
            lo, hi = int(r[0]), int(r[1])
            if lo < 0 or hi > MAX_AGE:
                self.fail(p, f"ages are whole years 0..{MAX_AGE}; got [{lo}, {hi}]")
            elif lo > hi:
                self.fail(p, f"inverted age range [{lo}, {hi}]: min is above max")
            else:
                out.append((lo, hi))
        return tuple(sorted(set(out)))

    def tags(self, value: Any, path: str) -> dict[str, Any]:
        if isinstance(value, (list, tuple)):
            value = {"any": value}
        if not isinstance(value, Mapping):
            self.fail(path, "expected {any: [...], all: [...], none: [...]} or a list")
            return {}
        out: dict[str, Any] = {}
        for k, v in value.items():
            p = f"{path}.{k}"
            if k not in ("any", "all", "none"):
                self.fail(p, f"unknown key {k!r}; expected any, all or none")
                continue
            items = v if isinstance(v, (list, tuple)) else [v]
            self.count(items, p)
            if not items and k != "none":
                self.fail(p, f"empty {k} list")
            good = set()
            for i, t in enumerate(items):
                if self.too_long(t, f"{p}[{i}]"):
                    continue
                try:
                    good.add(self.tx.check_tag(t, f"{p}[{i}]"))
                except TargetingError as e:
                    self.fail(e.path or p, e.message)
            out[{"any": "tags_any", "all": "tags_all", "none": "tags_none"}[k]] = frozenset(good)
        return out

    def time(self, value: Any, path: str) -> frozenset[int] | None:
        if not isinstance(value, Mapping):
            self.fail(path, "expected {days, hours} or {grid} or {series}")
            return None
        keys = set(value)
        unknown = keys - {"days", "hours", "grid", "series"}
        for k in sorted(unknown):
            self.fail(f"{path}.{k}", f"unknown key {k!r}; expected days, hours, grid or series")
        forms = [k for k in ("grid", "series") if k in keys]
        if len(forms) > 1 or (forms and keys & {"days", "hours"}):
            self.fail(path, "give days/hours, grid or series, not several")
            return None
        if "series" in keys:
            s = value["series"]
            if not (isinstance(s, str) and len(s) == SLOTS and set(s) <= {"0", "1"}):
                self.fail(f"{path}.series", f"series is {SLOTS} characters of 0/1 (half hours, Monday first)")
                return None
            return self._nonempty(frozenset(i for i, c in enumerate(s) if c == "1"), path)
        if "grid" in keys:
            g = value["grid"]
            if not (isinstance(g, (list, tuple)) and len(g) == 7):
                self.fail(f"{path}.grid", "grid is 7 strings (Monday first) of 24 or 48 '0'/'1'")
                return None
            slots: set[int] = set()
            for d, row in enumerate(g):
                if not (isinstance(row, str) and len(row) in (24, 48) and set(row) <= {"0", "1"}):
                    self.fail(f"{path}.grid[{d}]", "each grid row is 24 (hours) or 48 (half hours) '0'/'1'")
                    continue
                per = 48 // len(row)
                for i, c in enumerate(row):
                    if c == "1":
                        slots.update(d * 48 + i * per + k for k in range(per))
            return self._nonempty(frozenset(slots), path)
        days = self._days(value.get("days"), f"{path}.days")
        hours = self._hours(value.get("hours"), f"{path}.hours")
        return self._nonempty(frozenset(d * 48 + h * 2 + k for d in days for h in hours for k in (0, 1)), path)

    def _nonempty(self, slots: frozenset[int], path: str) -> frozenset[int]:
        if not slots and not self.problems:
            self.fail(path, "no time slot is selected")
        return slots

    def _days(self, value: Any, path: str) -> list[int]:
        if value is None:
            return list(range(7))
        items = value if isinstance(value, (list, tuple)) else [value]
        self.count(items, path)
        if not items:
            self.fail(path, "empty days list")
        out: set[int] = set()
        for i, d in enumerate(items):
            if self.too_long(d, f"{path}[{i}]"):
                continue
            key = d.strip().lower() if isinstance(d, str) else None
            if key in _DAY_ALIASES:
                out.update(WEEKDAYS.index(x) for x in _DAY_ALIASES[key])
            elif key in _DAY_NAMES:
                out.add(_DAY_NAMES[key])
            else:
                self.fail(f"{path}[{i}]", f"unknown day {d!r}; expected mon..sun, weekdays or weekends")
        return sorted(out)

    def _hours(self, value: Any, path: str) -> list[int]:
        if value is None:
            return list(range(24))
        items = value if isinstance(value, (list, tuple)) else [value]
        self.count(items, path)
        if not items:
            self.fail(path, "empty hours list")
        out: set[int] = set()
        for i, h in enumerate(items):
            p = f"{path}[{i}]"
            if self.too_long(h, p):
                continue
            if _is_int(h):
                if 0 <= int(h) <= 23:
                    out.add(int(h))
                else:
                    self.fail(p, f"bad hour {h}: hours are 0..23")
            elif isinstance(h, str) and (m := _HOUR_RANGE.match(h)):
                lo, hi = int(m.group(1)), int(m.group(2))
                if not (0 <= lo <= 23 and 0 <= hi <= 23) or lo > hi:
                    self.fail(p, f"bad hour range {h!r}: 'a-b' with 0 <= a <= b <= 23 (inclusive)")
                else:
                    out.update(range(lo, hi + 1))
            else:
                self.fail(p, f"bad hour {h!r}: an hour 0..23 or a range like \"8-10\"")
        return sorted(out)

    def retargeting(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, "expected {any: [rules], none: [rules]}")
            return {}
        out: dict[str, Any] = {}
        for k, v in value.items():
            p = f"{path}.{k}"
            if k not in ("any", "none"):
                self.fail(p, f"unknown key {k!r}; expected any or none")
                continue
            if not isinstance(v, (list, tuple)) or (k == "any" and not v):
                self.fail(p, "expected a non-empty list of {event, within_days}")
                continue
            self.count(v, p)
            rules = []
            for i, r in enumerate(v):
                rp = f"{p}[{i}]"
                if not isinstance(r, Mapping):
                    self.fail(rp, "a rule is {event, within_days}")
                    continue
                adv = r.get("advertiser")
                if adv is not None and adv != self.advertiser:
                    self.fail(
                        f"{rp}.advertiser",
                        f"retargeting may use only the campaign's own advertiser's events "
                        f"({self.advertiser!r}), not {adv!r}",
                    )
                extra = set(r) - {"event", "within_days", "advertiser"}
                for x in sorted(extra):
                    self.fail(f"{rp}.{x}", f"unknown key {x!r}")
                ev, days = r.get("event"), r.get("within_days", 30)
                if ev not in EVENTS:
                    self.fail(f"{rp}.event", f"unknown event {ev!r}; expected {', '.join(EVENTS)}")
                    continue
                if not _is_int(days) or not 1 <= int(days) <= MAX_WINDOW_DAYS:
                    self.fail(f"{rp}.within_days", f"within_days is a whole number 1..{MAX_WINDOW_DAYS}")
                    continue
                rules.append((ev, int(days)))
            out["rt_any" if k == "any" else "rt_none"] = tuple(sorted(set(rules)))
        return out

    def any_of(self, value: Any, path: str) -> tuple[Spec, ...]:
        if not isinstance(value, (list, tuple)) or not value:
            self.fail(path, "any_of is a non-empty list of specs")
            return ()
        if len(value) > MAX_ALTERNATIVES:
            self.stop(path, f"any_of has {len(value)} alternatives; at most {MAX_CLAUSES}")
        self.count(value, path)
        if self.depth >= MAX_ANY_OF_DEPTH:
            self.stop(path, f"any_of is nested more than {MAX_ANY_OF_DEPTH} levels deep")
        self.depth += 1
        out = []
        for i, v in enumerate(value):
            out.append(self.spec(v, f"{path}[{i}]"))
            if self.leaves > MAX_ALTERNATIVES:  # before parsing the rest, however long it is
                self.stop(path, f"any_of has more than {MAX_ALTERNATIVES} alternatives; at most {MAX_CLAUSES}")
        self.depth -= 1
        return tuple(out)


def _why_impossible(spec: Spec, tx: Taxonomy) -> str:
    """Name the dimension that leaves no value, for a spec whose every clause is impossible."""
    c = _flat_clause(spec, tx)
    for name in ("geo", "gender", "age", "scene", "slots"):
        if getattr(c, name) is not None and not getattr(c, name):
            return f"its {'time' if name == 'slots' else name} include and exclude leave no value"
    if c.tags_all & c.tags_none or any(a <= c.tags_none for a in c.tags_any):
        return "its tags contradict (a tag both required and excluded)"
    return "no any_of alternative is compatible with the dimensions beside it"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_spec(raw: Any, taxonomy: Taxonomy, *, advertiser: str | None = None, path: str = "") -> Spec:
    """Parse and normalise a raw spec; raises :class:`SpecError` listing every problem.

    ``advertiser`` is the owner of any retargeting rules (the campaign's
    advertiser, or the advertiser asking for reach).
    """
    p = _Parser(taxonomy, advertiser)
    try:
        spec = p.spec(raw, path)
    except _Stop:
        raise SpecError(p.problems) from None
    if not p.problems:
        try:
            if not spec.clauses(taxonomy):
                p.fail(path or "targeting", "matches nobody: " + _why_impossible(spec, taxonomy))
        except SpecError as e:
            p.problems.extend((f"{path}.{q}" if path else q, r) for q, r in e.problems)
    if p.problems:
        raise SpecError(p.problems)
    return spec


def clause_matches(c: Clause, geo: int, gender: int, age: int, scene: int, slot: int | None,
                   tags: frozenset[str]) -> bool:
    """A clause against domain indices (no retargeting), rule by rule: the linear scan that
    ``benchmarks/bench_decide.py`` compares decide with, and a reference of the tests."""
    return (
        (c.geo is None or geo in c.geo)
        and (c.gender is None or gender in c.gender)
        and (c.age is None or age in c.age)
        and (c.scene is None or scene in c.scene)
        and (c.slots is None or slot is None or slot in c.slots)
        and all(a & tags for a in c.tags_any)
        and c.tags_all <= tags
        and not (c.tags_none & tags)
    )


__all__ = [
    "EVENTS", "Clause", "Spec", "SpecError",
    "clause_matches", "parse_spec",
]
