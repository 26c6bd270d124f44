"""Decide requests: validate the JSON form once into a :class:`Request`."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from .errors import TargetingError
from .taxonomy import GENDERS, MAX_AGE, Taxonomy

MAX_LIMIT = 100
DEFAULT_LIMIT = 10
MAX_ID_BYTES = 256
REQUEST_FIELDS = frozenset(
    {"request_id", "user_id", "ts", "geo", "gender", "age", "tags", "scene", "slot", "limit", "floor_cpm", "explain"}
)


class Request(NamedTuple):
    """A validated impression. ``ts`` is epoch seconds; attributes are ``None`` when unknown.
    A named tuple: one is built per decision, and a tuple is built fastest."""

    user_id: str
    ts: float
    request_id: str | None = None
    province: int | None = None
    city: int | None = None
    gender: str | None = None
    age: int | None = None
    tags: frozenset[str] | None = None
    scene: str | None = None
    slot: str | None = None
    limit: int = DEFAULT_LIMIT
    floor_cpm: float = 0.0
    explain: bool = False

    def with_profile(self, profile: Mapping[str, Any] | None) -> Request:
        """Fill attributes missing from the request from a profile row; the request wins."""
        if not profile:
            return self
        province, city = self.province, self.city
        if province is None and city is None:
            province, city = profile.get("province"), profile.get("city")
        return Request(
            user_id=self.user_id, ts=self.ts, request_id=self.request_id,
            province=province, city=city,
            gender=self.gender if self.gender is not None else profile.get("gender"),
            age=self.age if self.age is not None else profile.get("age"),
            tags=self.tags if self.tags is not None else frozenset(profile.get("tags") or ()),
            scene=self.scene, slot=self.slot, limit=self.limit,
            floor_cpm=self.floor_cpm, explain=self.explain,
        )


def id_problem(value: Any, name: str = "user_id") -> str | None:
    """Why ``value`` is not a valid id, or None. One rule for every route and id
    (user_id, request_id, slot, advertiser): a string of 1..:data:`MAX_ID_BYTES` bytes
    of UTF-8, printable (no control characters or line breaks), not blank."""
    if not isinstance(value, str):
        return f"{name} is required: a non-empty string"
    if len(value) > MAX_ID_BYTES // 4 and len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return f"{name} is at most {MAX_ID_BYTES} bytes of UTF-8"
    if not value.isprintable():
        return f"{name} must be printable text (no control characters or line breaks)"
    if not value.strip():
        return f"{name} is required: a non-empty string" if not value else f"{name} is blank"
    return None


def check_id(value: Any, path: str, name: str = "user_id") -> str:
    """``value`` if it is a valid id (:func:`id_problem`), else TargetingError at ``path``."""
    why = id_problem(value, name)
    if why is not None:
        raise TargetingError(why, path=path)
    return value  # type: ignore[no-any-return]


TS_MIN = 946684800.0  # 2000-01-01T00:00:00Z
TS_MAX = 4102444800.0  # 2100-01-01T00:00:00Z


def parse_ts(value: Any, path: str = "ts") -> float:
    """ISO 8601 with a zone, or epoch seconds → epoch seconds, within 2000..2100."""
    ts = _ts(value, path)
    if not TS_MIN <= ts < TS_MAX:
        raise TargetingError(f"ts {value!r} is outside 2000-01-01..2100-01-01", path=path, code="out_of_range")
    return ts


def _ts(value: Any, path: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise TargetingError("ts must be a finite number", path=path)
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise TargetingError("ts has no time zone; add one, e.g. +08:00 or Z", path=path, code="no_timezone")
        return value.timestamp()
    if not isinstance(value, str):
        raise TargetingError(f"ts must be ISO 8601 text with a zone, not {type(value).__name__}", path=path)
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise TargetingError(f"ts {value!r} is not ISO 8601", path=path) from None
    if t.tzinfo is None:
        raise TargetingError(
            f"ts {value!r} has no time zone; add one, e.g. +08:00 or Z", path=path, code="no_timezone"
        )
    return t.timestamp()


def parse_request(raw: Any, taxonomy: Taxonomy, now: float, path: str = "") -> Request:
    """Validate a decide request (the contract's JSON form). Raises TargetingError."""
    pre = f"{path}." if path else ""
    if type(raw) is not dict and not isinstance(raw, Mapping):  # (the exact-type test is the cheap one)
        raise TargetingError("a decide request is a JSON object", path=path or None)
    if not REQUEST_FIELDS.issuperset(raw):
        k = next(k for k in raw if k not in REQUEST_FIELDS)
        raise TargetingError(f"unknown field {k!r}; known: {', '.join(sorted(REQUEST_FIELDS))}", path=f"{pre}{k}")
    uid = raw.get("user_id")
    if not (type(uid) is str and 0 < len(uid) <= 64 and uid.isprintable() and uid[0] != " "):
        uid = check_id(uid, f"{pre}user_id")  # the rare case: say why (or accept, e.g. " x")
    ts = now if raw.get("ts") is None else parse_ts(raw["ts"], f"{pre}ts")
    rid = raw.get("request_id")
    if rid is not None and not isinstance(rid, (str, int)):
        raise TargetingError("request_id must be a string", path=f"{pre}request_id")
    if isinstance(rid, str):
        check_id(rid, f"{pre}request_id", "request_id")

    province = city = None
    geo = raw.get("geo")
    if geo is not None:
        if type(geo) is not dict and not isinstance(geo, Mapping):
            raise TargetingError('geo is {"city": adcode} or {"province": adcode}', path=f"{pre}geo")
        for k in geo:
            if k not in ("city", "province"):
                raise TargetingError(f"unknown geo field {k!r}; expected city or province", path=f"{pre}geo.{k}")
        if geo.get("province") is not None:
            province = taxonomy.resolve_place(geo["province"], f"{pre}geo.province", level="province")
            if taxonomy.places[province].level != "province":
                raise TargetingError(f"{province} is a city, not a province", path=f"{pre}geo.province")
        if geo.get("city") is not None:
            city = taxonomy.resolve_place(geo["city"], f"{pre}geo.city", level="city")
            pl = taxonomy.places[city]
            if pl.level == "province":  # a municipality, or a province given as city
                province, city = city, None
            elif province is not None and pl.province != province:
                raise TargetingError(f"city {city} is not in province {province}", path=f"{pre}geo.city")
            else:
                province = pl.province

    gender = raw.get("gender")
    if gender is not None and gender not in GENDERS:
        raise TargetingError(f"gender is male or female, not {gender!r}", path=f"{pre}gender")
    age = raw.get("age")
    if age is not None and (isinstance(age, bool) or not isinstance(age, int) or not 0 <= age <= MAX_AGE):
        raise TargetingError(f"age is a whole number of years 0..{MAX_AGE}, not {age!r}", path=f"{pre}age")
    tags = raw.get("tags")
    if tags is not None:
        if not isinstance(tags, (list, tuple)):
            raise TargetingError("tags is a list of tag ids", path=f"{pre}tags")
        try:  # the common case: every element a known tag id
            known = frozenset(tags)
            ok = known <= taxonomy.tags.keys()
        except TypeError:  # an unhashable element
            ok = False
        tags = known if ok else frozenset(taxonomy.check_tag(t, f"{pre}tags[{i}]") for i, t in enumerate(tags))
    scene = raw.get("scene")
    if scene is not None:
        taxonomy.check_scene(scene, f"{pre}scene")
    slot = raw.get("slot")
    if slot is not None and not isinstance(slot, (str, int)):
        raise TargetingError("slot is an ad slot id (string)", path=f"{pre}slot")
    if isinstance(slot, str):
        check_id(slot, f"{pre}slot", "slot")
    limit = raw.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise TargetingError(f"limit is a whole number 1..{MAX_LIMIT}", path=f"{pre}limit")
    floor = raw.get("floor_cpm", 0.0)
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not (0 <= floor < math.inf):
        raise TargetingError("floor_cpm is a non-negative number", path=f"{pre}floor_cpm")
    explain = raw.get("explain", False)
    if not isinstance(explain, bool):
        raise TargetingError("explain is true or false", path=f"{pre}explain")
    return Request(
        user_id=uid, ts=ts, request_id=None if rid is None else str(rid),
        province=province, city=city, gender=gender, age=age, tags=tags, scene=scene,
        slot=None if slot is None else str(slot), limit=limit, floor_cpm=float(floor), explain=explain,
    )


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "REQUEST_FIELDS", "Request", "parse_request", "parse_ts"]
