"""The vocabulary of targeting: places, tags, scenes, ad categories.

Single-valued user attributes (geo, gender, age, scene) are mapped to small
integer *domains* where index 0 always means "unknown". Both the campaign-side
compiler and the user-side audience index use these same indices, which is
what keeps "what the preview counts" equal to "what serves".
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .errors import TargetingError

UNKNOWN = 0
GENDERS = ("male", "female")  # domain index = position + 1
MAX_AGE = 120
AGE_DOMAIN = MAX_AGE + 2  # 0 = unknown, 1 + age for ages 0..120
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SLOTS = 7 * 48  # half-hour slots of the week, Monday 00:00 = 0


@dataclass(frozen=True)
class Place:
    adcode: int
    level: str  # "province" | "city"
    province: int
    name: str
    short_name: str
    pinyin: str
    iso: str
    longitude: float
    latitude: float


@dataclass(frozen=True)
class Category:
    id: str
    label: str
    prior_ctr: float


@dataclass(frozen=True)
class Taxonomy:
    """Immutable taxonomy; build with :meth:`load`.

    ``geo_leaf_of[(province, city)]`` gives the geo domain index of a request
    location. Leaves are every city plus one "whole province, city unknown"
    leaf per province, so a request maps to exactly one leaf and a place
    constraint is a set of leaves (exact intersection semantics).
    """

    places: dict[int, Place]
    tags: dict[str, str]  # id -> Chinese label, in file order
    tag_groups: dict[str, str]
    scenes: dict[str, str]
    categories: dict[str, Category]
    population: dict[int, int] = field(default_factory=dict)
    # derived
    geo_leaves: tuple[tuple[int, int], ...] = ()  # leaf index -> (province, city or 0); [0] = unknown
    _leaf_index: dict[tuple[int, int], int] = field(default_factory=dict)
    _names: dict[str, tuple[int, ...]] = field(default_factory=dict)

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, directory: str | Path) -> Taxonomy:
        d = Path(directory)
        places: dict[int, Place] = {}
        for row in _read_csv(d / "geo.csv"):
            p = Place(
                adcode=int(row["adcode"]),
                level=row["level"],
                province=int(row["province"]),
                name=row["name"],
                short_name=row["short_name"],
                pinyin=row["pinyin"].lower(),
                iso=row.get("iso") or "",
                longitude=float(row["longitude"] or 0),
                latitude=float(row["latitude"] or 0),
            )
            places[p.adcode] = p
        tags = {r["id"]: r["label"] for r in _read_csv(d / "tags.csv")}
        groups = {r["id"]: r.get("group", "") for r in _read_csv(d / "tags.csv")}
        scenes = {r["id"]: r["label"] for r in _read_csv(d / "scenes.csv")}
        cats = {
            r["id"]: Category(r["id"], r["label"], float(r["prior_ctr"]))
            for r in _read_csv(d / "categories.csv")
        }
        pop_file = d / "population.csv"
        population = (
            {int(r["province"]): int(r["population_2020"]) for r in _read_csv(pop_file)}
            if pop_file.exists()
            else {}
        )
        return cls.build(places, tags, groups, scenes, cats, population)

    @classmethod
    def build(
        cls,
        places: dict[int, Place],
        tags: dict[str, str],
        tag_groups: dict[str, str],
        scenes: dict[str, str],
        categories: dict[str, Category],
        population: dict[int, int],
    ) -> Taxonomy:
        leaves: list[tuple[int, int]] = [(0, 0)]
        for p in sorted(a for a, pl in places.items() if pl.level == "province"):
            leaves.append((p, 0))
        for c in sorted(a for a, pl in places.items() if pl.level == "city"):
            leaves.append((places[c].province, c))
        names: dict[str, list[int]] = {}
        for a, pl in places.items():
            for key in {str(a), pl.name, pl.short_name, pl.pinyin, pl.iso.lower()}:
                if key and (a not in names.setdefault(key.lower(), [])):
                    names[key.lower()].append(a)
        return cls(
            places=places,
            tags=tags,
            tag_groups=tag_groups,
            scenes=scenes,
            categories=categories,
            population=population,
            geo_leaves=tuple(leaves),
            _leaf_index={lf: i for i, lf in enumerate(leaves)},
            _names={k: tuple(sorted(v)) for k, v in names.items()},
        )

    # ------------------------------------------------------------ geography
    @property
    def provinces(self) -> list[int]:
        return sorted(a for a, p in self.places.items() if p.level == "province")

    def cities_of(self, province: int) -> list[int]:
        return sorted(a for a, p in self.places.items() if p.level == "city" and p.province == province)

    def resolve_place(self, value: object, path: str = "geo", level: str | None = None) -> int:
        """Adcode of a place given as adcode, Chinese name or pinyin.

        ``level`` ("province" or "city") settles names shared by a province and a
        city (吉林, 海南) when the field says which is meant. Raises
        TargetingError naming the closest matches when unknown or ambiguous.
        """
        if type(value) is int and value in self.places:  # the common case: a known adcode
            return value
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TargetingError(f"a place must be an adcode or a name, not {value!r}", path=path)
        key = str(value).strip().lower()
        if isinstance(value, int) or key.isdecimal():  # int() accepts exactly the decimals, not "²"
            code = int(key)
            if code in self.places:
                return code
            near = [str(a) for a in self.places if str(a)[:2] == key[:2]][:5]
            hint = f"; places in that province: {', '.join(near)}" if near else ""
            raise TargetingError(f"unknown adcode {value}{hint}", path=path, code="unknown_place")
        hits = self._names.get(key)
        if hits and len(hits) > 1 and level is not None:
            at_level = tuple(a for a in hits if self.places[a].level == level)
            hits = at_level if len(at_level) == 1 else hits
        if hits and len(hits) == 1:
            return hits[0]
        if hits:
            choices = ", ".join(f"{a} {self.full_name(a)}" for a in hits)
            raise TargetingError(
                f"ambiguous place {value!r}: matches {choices}; use the adcode", path=path, code="ambiguous_place"
            )
        close = difflib.get_close_matches(key, list(self._names), n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise TargetingError(f"unknown place {value!r}{hint}", path=path, code="unknown_place")

    def full_name(self, adcode: int) -> str:
        p = self.places[adcode]
        if p.level == "city":
            return self.places[p.province].name + p.name
        return p.name

    def place_leaves(self, adcode: int) -> frozenset[int]:
        """Geo domain indices a place covers: a province covers all its cities."""
        p = self.places[adcode]
        if p.level == "city":
            return frozenset({self._leaf_index[(p.province, adcode)]})
        out = {self._leaf_index[(adcode, 0)]}
        out.update(self._leaf_index[(adcode, c)] for c in self.cities_of(adcode))
        return frozenset(out)

    def geo_leaf(self, province: int | None, city: int | None) -> int:
        """Domain index of a location; 0 when unknown. Raises on unknown adcodes."""
        if city:
            p = self.places.get(city)
            if p is None:
                raise TargetingError(f"unknown city adcode {city}", path="geo.city", code="unknown_place")
            if p.level == "province":  # a municipality given as a city
                return self._leaf_index[(city, 0)]
            if province and province != p.province:
                raise TargetingError(
                    f"city {city} is not in province {province}", path="geo.city", code="invalid"
                )
            return self._leaf_index[(p.province, city)]
        if province:
            p = self.places.get(province)
            if p is None or p.level != "province":
                raise TargetingError(
                    f"unknown province adcode {province}", path="geo.province", code="unknown_place"
                )
            return self._leaf_index[(province, 0)]
        return UNKNOWN

    @property
    def geo_domain(self) -> int:
        return len(self.geo_leaves)

    # -------------------------------------------------------- other domains
    @property
    def tag_ids(self) -> list[str]:
        return list(self.tags)

    def tag_index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tags)}

    @cached_property
    def _scene_index(self) -> dict[str, int]:
        return {s: i + 1 for i, s in enumerate(self.scenes)}

    def scene_index(self) -> dict[str, int]:
        """Scene id → domain index (0 = unknown). Do not mutate: it is shared."""
        return self._scene_index

    @property
    def scene_domain(self) -> int:
        return len(self.scenes) + 1

    def check_tag(self, tag: object, path: str) -> str:
        if isinstance(tag, str) and tag in self.tags:
            return tag
        if isinstance(tag, str):
            by_label = [t for t, label in self.tags.items() if label == tag]
            if by_label:
                return by_label[0]
        close = difflib.get_close_matches(str(tag), list(self.tags), n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else f"; known: {', '.join(self.tags)}"
        raise TargetingError(f"unknown tag {tag!r}{hint}", path=path, code="unknown_tag")

    def check_scene(self, scene: object, path: str) -> str:
        if isinstance(scene, str) and scene in self.scenes:
            return scene
        raise TargetingError(
            f"unknown scene {scene!r}; known: {', '.join(self.scenes)}", path=path, code="unknown_scene"
        )


def gender_index(value: str | None) -> int:
    return GENDERS.index(value) + 1 if value in GENDERS else UNKNOWN


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(line for line in fh if not line.startswith("#"))]
