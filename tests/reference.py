"""The targeting language's reference evaluator: a spec against one user, straight from the
language's rules (contract §2), with none of the compiler's or matcher's machinery. The
property tests hold the compiled matcher, reach and export to it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from targeting.spec import Spec
from targeting.taxonomy import Taxonomy


@dataclass(frozen=True)
class Features:
    """One user at one moment, as plain values (the reference evaluator's input)."""

    province: int | None = None
    city: int | None = None
    gender: str | None = None
    age: int | None = None
    tags: frozenset[str] = frozenset()
    scene: str | None = None
    slot: int | None = None  # half-hour of week in the spec's time zone; None = ignore time
    retargeting: Callable[[str, int], bool] | None = field(default=None, compare=False)


def matches(spec: Spec, f: Features, taxonomy: Taxonomy) -> bool:
    """Brute-force evaluation of ``spec`` for ``f``, straight from the language's rules.

    With ``f.slot`` None, time constrains nothing (reach counts users, not
    impressions); with ``f.retargeting`` None, retargeting rules never pass
    (``any``) and never block (``none``) -- callers that care pass a function.
    """

    def place_in(places: frozenset[int]) -> bool:
        for a in places:
            pl = taxonomy.places[a]
            if pl.level == "province" and f.province == a:
                return True
            if pl.level == "city" and f.city == a:
                return True
        return False

    if spec.geo_include is not None and not place_in(spec.geo_include):
        return False
    if spec.geo_exclude and place_in(spec.geo_exclude):
        return False
    if spec.slots is not None and f.slot is not None and f.slot not in spec.slots:
        return False
    if spec.gender is not None and f.gender not in spec.gender:
        return False
    if spec.age is not None and (f.age is None or not any(lo <= f.age <= hi for lo, hi in spec.age)):
        return False
    if spec.tags_any is not None and not (spec.tags_any & f.tags):
        return False
    if not spec.tags_all <= f.tags or spec.tags_none & f.tags:
        return False
    if spec.scene_include is not None and f.scene not in spec.scene_include:
        return False
    if f.scene in spec.scene_exclude:
        return False
    rt = f.retargeting or (lambda e, d: False)
    if spec.rt_any is not None and not any(rt(e, d) for e, d in spec.rt_any):
        return False
    if any(rt(e, d) for e, d in spec.rt_none):
        return False
    return not spec.any_of or any(matches(s, f, taxonomy) for s in spec.any_of)
