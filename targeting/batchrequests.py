"""Requests for batch decisions as aligned arrays, and their local clocks.

:func:`parse_requests` turns a table of batch-scoring requests (docs/files.md) into
:class:`Requests` (domain indices as :mod:`targeting.taxonomy` defines them,
validated the way ``parse_request`` validates one JSON request, profiles
merged the way ``Request.with_profile`` merges them); :func:`clocks` gives
each request's half-hour slot, local date and share of the day in every time
zone of the index, as :func:`targeting.matcher.moment` does for one.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import TargetingError
from .localtime import EPOCH_ORDINAL, MINUTES_PER_DAY, local_minutes
from .request import DEFAULT_LIMIT, Request
from .taxonomy import GENDERS, MAX_AGE, UNKNOWN, Taxonomy

_ADCODE_SPACE = 1_000_000  # 6-digit adcodes


@dataclass
class Requests:
    """A block of validated requests; every array has length ``B`` (``tags``: ``[B, T]``).

    Domain indices follow :mod:`targeting.taxonomy` (0 = unknown). ``tags`` holds
    sorted tag indices padded with -1 on the right. ``row`` is each request's
    row number in the input file, so errors and outputs can point back at it.
    """

    row: np.ndarray  # int64[B]
    request_id: np.ndarray  # object[B]: str or None
    user_id: np.ndarray  # object[B]: str
    ts: np.ndarray  # float64[B]: epoch seconds
    province: np.ndarray  # int32[B]: adcode or 0
    city: np.ndarray  # int32[B]: adcode or 0
    geo: np.ndarray  # int32[B]: geo leaf
    gender: np.ndarray  # int32[B]
    age: np.ndarray  # int32[B]: 1 + age, 0 unknown
    scene: np.ndarray  # int32[B]
    tags: np.ndarray  # int32[B, T]

    def __len__(self) -> int:
        return int(self.ts.size)

    def take(self, sel: np.ndarray | slice) -> Requests:
        """The requests at positions (or mask) ``sel``, same layout."""
        return Requests(*(getattr(self, f)[sel] for f in _FIELDS))

    def request(self, i: int, tx: Taxonomy, *, limit: int = DEFAULT_LIMIT, floor_cpm: float = 0.0) -> Request:
        """Request ``i`` as the :class:`Request` decide would have built."""
        tag_ids = tx.tag_ids
        scenes = list(tx.scenes)
        return Request(
            user_id=str(self.user_id[i]), ts=float(self.ts[i]), request_id=self.request_id[i],
            province=int(self.province[i]) or None, city=int(self.city[i]) or None,
            gender=GENDERS[self.gender[i] - 1] if self.gender[i] else None,
            age=int(self.age[i]) - 1 if self.age[i] else None,
            tags=frozenset(tag_ids[t] for t in self.tags[i] if t >= 0),
            scene=scenes[self.scene[i] - 1] if self.scene[i] else None,
            limit=limit, floor_cpm=floor_cpm,
        )


_FIELDS = ("row", "request_id", "user_id", "ts", "province", "city", "geo", "gender", "age", "scene", "tags")


# ------------------------------------------------------------------ parsing
def request_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One batch-scoring request row (docs/files.md) (as ``pyarrow`` ``to_pylist`` gives it) in the decide JSON
    form: the request's geo nested again, nulls left out."""
    raw: dict[str, Any] = {"request_id": row["request_id"], "user_id": row["user_id"]}
    if row.get("ts") is not None:
        raw["ts"] = row["ts"].isoformat()
    geo = {k: row[k] for k in ("province", "city") if row.get(k)}
    if geo:
        raw["geo"] = geo
    for k in ("gender", "age", "tags", "scene", "slot"):
        if row.get(k) is not None:
            raw[k] = row[k]
    return raw


def parse_requests(
    table: pa.Table | pa.RecordBatch, tx: Taxonomy, *, now: float, profiles: Any = None, first_row: int = 0,
) -> tuple[Requests, list[dict[str, Any]]]:
    """Validate a table of batch-scoring requests (docs/files.md) into :class:`Requests`.

    Returns the valid requests and one error per bad row, ``{"row", "request_id",
    "error": {"code", "message", "path"}}`` (paths as in ``decide_batch``:
    ``requests[row].field``). A null ``ts`` means ``now``, as in decide.
    Attributes missing from a request are filled from ``profiles.lookup`` the
    way :meth:`Request.with_profile` does (the request's values win).
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    n = table.num_rows
    names = set(table.column_names)
    if "user_id" not in names:
        raise TargetingError("requests need a user_id column", path="user_id", code="missing_column")
    bad: dict[int, TargetingError] = {}

    def fail(rows: np.ndarray, field: str, message: Any) -> None:
        for i in np.flatnonzero(rows) if rows.dtype == bool else rows:
            i = int(i)
            if i not in bad:
                msg = message(i) if callable(message) else message
                bad[i] = TargetingError(msg, path=f"requests[{first_row + i}].{field}")

    user_id = _objects(table, "user_id", n)
    ucol = table.column("user_id")
    if pa.types.is_string(ucol.type) or pa.types.is_large_string(ucol.type):  # the usual case, in Arrow
        no_user = np.asarray(pc.fill_null(pc.equal(pc.utf8_length(ucol), 0), True).to_numpy(zero_copy_only=False))
    else:
        no_user = np.array([not isinstance(u, str) or not u for u in user_id], dtype=bool)
    fail(no_user, "user_id", "user_id is required: a non-empty string")
    request_id = _objects(table, "request_id", n)
    if "request_id" in names and not pa.types.is_string(table.column("request_id").type):
        request_id = np.array([None if r is None else str(r) for r in request_id], dtype=object)
    ts = _timestamps(table, n, now, fail)
    province = _adcodes(table, "province", n, tx, fail)
    city = _adcodes(table, "city", n, tx, fail)
    gender = _codes(table, "gender", n, {g: i + 1 for i, g in enumerate(GENDERS)}, fail,
                    "gender is male or female")
    scene = _codes(table, "scene", n, tx.scene_index(), fail, f"scene is one of {', '.join(tx.scenes)}")
    age = _ages(table, n, fail)
    tags, tags_null = _tag_matrix(table, n, tx, fail)

    # request-side geo rules (parse_request): a province column holds provinces only
    prov_level = _LEVELS.get(tx)[0]
    not_prov = (province > 0) & (prov_level[province] != 1)
    fail(not_prov, "province", lambda i: f"{province[i]} is a city, not a province")

    if profiles is not None:
        province, city, gender, age, tags = _merge_profiles(
            profiles, tx, user_id, no_user, province, city, gender, age, tags, tags_null
        )
    geo = _geo_leaves(tx, province, city, fail)
    ok = np.ones(n, dtype=bool)
    ok[list(bad)] = False
    reqs = Requests(
        row=np.arange(first_row, first_row + n, dtype=np.int64), request_id=request_id, user_id=user_id,
        ts=ts, province=province, city=city, geo=geo, gender=gender, age=age, scene=scene, tags=tags,
    )
    errors = [
        {"row": first_row + i, "request_id": request_id[i], "error": bad[i].to_dict()} for i in sorted(bad)
    ]
    return (reqs if ok.all() else reqs.take(ok)), errors


def _objects(table: pa.Table, name: str, n: int) -> np.ndarray:
    if name not in table.column_names:
        return np.full(n, None, dtype=object)
    return np.asarray(table.column(name).to_pylist(), dtype=object).reshape(n)


def _timestamps(table: pa.Table, n: int, now: float, fail: Any) -> np.ndarray:
    if "ts" not in table.column_names:
        return np.full(n, float(now))
    col = table.column("ts")
    if pa.types.is_timestamp(col.type):
        if col.type.tz is None:
            fail(~np.asarray(col.is_null().to_numpy(zero_copy_only=False)), "ts",
                 "ts has no time zone; write it as timestamp with time zone (UTC)")
        micros = pc.cast(col, pa.timestamp("us", tz=col.type.tz)).cast(pa.int64())
        values = micros.to_numpy(zero_copy_only=False)
        nulls = np.asarray(col.is_null().to_numpy(zero_copy_only=False))
        out = np.where(nulls, 0, values).astype(np.float64) / 1e6
        out[nulls] = now
        return out
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        vals = col.to_numpy(zero_copy_only=False).astype(np.float64)
        vals[np.isnan(vals)] = now
        fail(~np.isfinite(vals), "ts", "ts must be a finite number of epoch seconds")
        return np.where(np.isfinite(vals), vals, now)
    from .request import parse_ts

    out = np.empty(n)
    for i, v in enumerate(col.to_pylist()):
        try:
            out[i] = now if v is None else parse_ts(v)
        except TargetingError as e:
            fail(np.array([i]), "ts", e.message)
            out[i] = now
    return out


def _adcodes(table: pa.Table, name: str, n: int, tx: Taxonomy, fail: Any) -> np.ndarray:
    """int32[n] adcodes (0 = null); names are resolved like the JSON API resolves them."""
    if name not in table.column_names:
        return np.zeros(n, dtype=np.int32)
    col = table.column(name)
    if pa.types.is_integer(col.type):
        codes = pc.fill_null(col, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        codes = np.zeros(n, dtype=np.int64)
        values = col.to_pylist()
        resolved: dict[Any, int | TargetingError] = {}
        for i, v in enumerate(values):
            if v is None:
                continue
            if v not in resolved:
                try:
                    resolved[v] = tx.resolve_place(v)
                except TargetingError as e:
                    resolved[v] = e
            r = resolved[v]
            if isinstance(r, TargetingError):
                fail(np.array([i]), name, r.message)
            else:
                codes[i] = r
    unknown = (codes != 0) & ((codes < 0) | (codes >= _ADCODE_SPACE))
    codes[unknown] = -1
    level = _LEVELS.get(tx)[0]
    unknown |= (codes > 0) & (level[np.clip(codes, 0, _ADCODE_SPACE - 1)] == 0)
    fail(unknown, name, lambda i: f"unknown adcode {_value_at(col, i)}")
    return np.where(unknown, 0, codes).astype(np.int32)


def _value_at(col: pa.ChunkedArray, i: int) -> Any:
    return col[i].as_py()


def _codes(table: pa.Table, name: str, n: int, mapping: Mapping[str, int], fail: Any, hint: str) -> np.ndarray:
    """int32[n] domain indices of a categorical string column (0 = null)."""
    if name not in table.column_names:
        return np.zeros(n, dtype=np.int32)
    col = table.column(name)
    enc = pc.dictionary_encode(col)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.unify_dictionaries().combine_chunks() if enc.num_chunks != 1 else enc.chunk(0)
    vocab = enc.dictionary.to_pylist()
    lut = np.array([mapping.get(v, -1) if isinstance(v, str) else -1 for v in vocab] + [0], dtype=np.int16)
    idx = pc.fill_null(enc.indices, len(vocab)).to_numpy(zero_copy_only=False)
    out = lut[idx]
    fail(out < 0, name, lambda i: f"{hint}, not {vocab[idx[i]]!r}")
    return np.where(out < 0, 0, out).astype(np.int32)


def _ages(table: pa.Table, n: int, fail: Any) -> np.ndarray:
    if "age" not in table.column_names:
        return np.zeros(n, dtype=np.int32)
    col = table.column("age")
    nulls = np.asarray(col.is_null().to_numpy(zero_copy_only=False))
    raw = pc.fill_null(col, 0).to_numpy(zero_copy_only=False)
    if raw.dtype.kind == "f":
        whole = np.isfinite(raw) & (raw == np.floor(raw))
        fail(~nulls & ~whole, "age", lambda i: f"age is a whole number of years, not {raw[i]!r}")
        raw = np.where(whole, raw, 0)
    elif raw.dtype.kind not in "iu":
        raise TargetingError(f"age column must be integer, not {col.type}", path="age", code="bad_column")
    vals = raw.astype(np.int64)
    out_of_range = ~nulls & ((vals < 0) | (vals > MAX_AGE))
    fail(out_of_range, "age", lambda i: f"age is a whole number of years 0..{MAX_AGE}, not {vals[i]}")
    return np.where(nulls | out_of_range, UNKNOWN, vals + 1).astype(np.int32)


def _tag_matrix(table: pa.Table, n: int, tx: Taxonomy, fail: Any) -> tuple[np.ndarray, np.ndarray]:
    """(int32[n, T] sorted unique tag indices padded with -1, bool[n] tags null)."""
    if "tags" not in table.column_names:
        return np.full((n, 0), -1, dtype=np.int32), np.ones(n, dtype=bool)
    col = table.column("tags")
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        raise TargetingError(f"tags column must be list<string>, not {col.type}", path="tags", code="bad_column")
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
    offsets = arr.offsets.to_numpy()
    values = arr.values.slice(offsets[0], offsets[-1] - offsets[0]) if n else arr.values
    offsets = offsets - offsets[0]
    lengths = np.diff(offsets)
    ti = tx.tag_index()
    labels = {label: ti[t] for t, label in tx.tags.items()}
    enc = pc.dictionary_encode(values)
    vocab = enc.dictionary.to_pylist()
    lut = np.array([ti.get(v, labels.get(v, -1)) for v in vocab] + [-1], dtype=np.int32)
    flat = lut[pc.fill_null(enc.indices, len(vocab)).to_numpy(zero_copy_only=False)] if len(values) else \
        np.zeros(0, dtype=np.int32)
    row_of = np.repeat(np.arange(n), lengths)
    hidden = nulls[row_of]  # a null list may still span values in Arrow; they are not the request's
    flat = np.where(hidden, np.iinfo(np.int32).max, flat)
    bad_rows = np.unique(row_of[flat < 0])  # hidden values are int32 max, never < 0
    if bad_rows.size:
        codes = pc.fill_null(enc.indices, len(vocab)).to_numpy(zero_copy_only=False)
        first_bad = {int(r): k for k, r in zip(np.flatnonzero(flat < 0)[::-1], row_of[flat < 0][::-1])}
        vocab_n = vocab + [None]
        fail(bad_rows, "tags", lambda i: f"unknown tag {vocab_n[codes[first_bad[i]]]!r}")
    width = int(lengths.max()) if n and lengths.size else 0
    mat = np.full((n, width), np.iinfo(np.int32).max, dtype=np.int32)
    if width:
        col_of = np.arange(len(flat)) - np.repeat(offsets[:-1], lengths)
        mat[row_of, col_of] = np.where(flat < 0, np.iinfo(np.int32).max, flat)
    if nulls.any():
        mat[nulls] = np.iinfo(np.int32).max
    return _normalize_tags(mat), nulls


def _normalize_tags(mat: np.ndarray) -> np.ndarray:
    """Sort each row, drop duplicates, pad with -1 (input padding: int32 max)."""
    big = np.iinfo(np.int32).max
    mat = np.where(mat < 0, big, mat)
    mat.sort(axis=1)
    if mat.shape[1] > 1:
        dup = np.zeros(mat.shape, dtype=bool)
        dup[:, 1:] = mat[:, 1:] == mat[:, :-1]
        mat[dup] = big
        mat.sort(axis=1)
    width = int((mat != big).sum(axis=1).max()) if mat.size else 0
    mat = mat[:, :width]
    return np.where(mat == big, -1, mat).astype(np.int32)


class _LevelTables:
    """Per taxonomy: adcode → level (0 unknown, 1 province, 2 city), province, geo leaf."""

    def __init__(self) -> None:
        # keyed by id(): Taxonomy is a frozen dataclass of dicts, so it does not hash
        self._cache: dict[int, tuple[weakref.ref[Taxonomy], tuple[np.ndarray, ...]]] = {}

    def get(self, tx: Taxonomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        entry = self._cache.get(id(tx))
        hit = entry[1] if entry is not None and entry[0]() is tx else None
        if hit is None:
            level = np.zeros(_ADCODE_SPACE, dtype=np.int8)
            prov = np.zeros(_ADCODE_SPACE, dtype=np.int32)
            leaf = np.zeros(_ADCODE_SPACE, dtype=np.int32)
            for code, pl in tx.places.items():
                level[code] = 1 if pl.level == "province" else 2
                prov[code] = pl.province
                leaf[code] = tx.geo_leaf(None, code) if pl.level == "city" else tx.geo_leaf(code, None)
            hit = (level, prov, leaf)
            if len(self._cache) > 8:
                self._cache = {k: v for k, v in self._cache.items() if v[0]() is not None}
            self._cache[id(tx)] = (weakref.ref(tx), hit)
        return cast(tuple[np.ndarray, np.ndarray, np.ndarray], hit)


_LEVELS = _LevelTables()


def _geo_leaves(tx: Taxonomy, province: np.ndarray, city: np.ndarray, fail: Any) -> np.ndarray:
    """int32[n] geo leaf, the vector form of ``Taxonomy.geo_leaf`` (a municipality given
    as a city wins over the province; a city must lie in the given province)."""
    level, prov, leaf = _LEVELS.get(tx)
    city_is_prov = (city > 0) & (level[city] == 1)
    mismatch = (city > 0) & ~city_is_prov & (province > 0) & (prov[city] != province)
    fail(mismatch, "city", lambda i: f"city {city[i]} is not in province {province[i]}")
    prov_bad = (city == 0) & (province > 0) & (level[province] != 1)
    fail(prov_bad, "province", lambda i: f"unknown province adcode {province[i]}")
    out = np.where(city > 0, leaf[city], np.where(province > 0, leaf[province], UNKNOWN))
    return np.where(mismatch | prov_bad, UNKNOWN, out).astype(np.int32)


def _merge_profiles(
    profiles: Any, tx: Taxonomy, user_id: np.ndarray, no_user: np.ndarray, province: np.ndarray,
    city: np.ndarray, gender: np.ndarray, age: np.ndarray, tags: np.ndarray, tags_null: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Fill missing attributes from profiles like :meth:`Request.with_profile` (request wins)."""
    geo_missing = (province == 0) & (city == 0)
    need = ~no_user & (geo_missing | (gender == 0) | (age == 0) | tags_null)
    if not need.any():
        return province, city, gender, age, tags
    province, city, gender, age = province.copy(), city.copy(), gender.copy(), age.copy()
    ti = tx.tag_index()
    patched: dict[int, tuple[int, ...]] = {}
    for i in np.flatnonzero(need).tolist():
        prof = profiles.lookup(user_id[i])
        if not prof:
            continue
        if geo_missing[i]:
            province[i] = prof.get("province") or 0
            city[i] = prof.get("city") or 0
        if gender[i] == 0 and prof.get("gender") in GENDERS:
            gender[i] = GENDERS.index(prof["gender"]) + 1
        if age[i] == 0 and prof.get("age") is not None:
            age[i] = int(prof["age"]) + 1
        if tags_null[i]:
            patched[i] = tuple(sorted({ti[t] for t in (prof.get("tags") or ()) if t in ti}))
    if patched:
        width = max(tags.shape[1], max(len(t) for t in patched.values()))
        wide = np.full((tags.shape[0], width), -1, dtype=np.int32)
        wide[:, : tags.shape[1]] = tags
        for i, t in patched.items():
            wide[i] = -1
            wide[i, : len(t)] = t
        tags = wide
    return province, city, gender, age, tags


# ------------------------------------------------------------------ clocks
@dataclass
class Clocks:
    """Local time of each request in each of the index's zones: arrays ``[B, Z]``."""

    slots: np.ndarray  # int16: half-hour of the week, Monday 00:00 = 0
    days: np.ndarray  # int32: local date ordinal
    day_fraction: np.ndarray  # float64


def clocks(zones: tuple[str, ...], ts: np.ndarray) -> Clocks:
    """What :func:`targeting.matcher.moment` computes, for every request and zone."""
    b = ts.size
    slots = np.empty((b, len(zones)), dtype=np.int16)
    days = np.empty((b, len(zones)), dtype=np.int32)
    frac = np.empty((b, len(zones)), dtype=np.float64)
    for z, zone in enumerate(zones):
        lm = local_minutes(ts, zone)
        day, minute = np.divmod(lm, MINUTES_PER_DAY)
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        slots[:, z] = weekday * 48 + minute // 30
        days[:, z] = day + EPOCH_ORDINAL
        frac[:, z] = minute / MINUTES_PER_DAY
    return Clocks(slots, days, frac)


__all__ = ["Clocks", "Requests", "clocks", "parse_requests", "request_from_row"]
