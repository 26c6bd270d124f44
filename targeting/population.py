"""Synthetic user profiles in the profiles' Parquet schema (docs/files.md), vectorised with numpy.

The model, per user (each draw independent given the ones before it):

* **geo**: province by the 2020 census (``rules/taxonomy/population.csv``); city
  inside it by a weight of 4 for the provincial capital (the ``xx01xx`` city),
  otherwise 1 scaled by a fixed per-city factor in [0.5, 2) so cities differ;
  municipalities have no prefecture cities (city null). 4% of users have a
  province but no city, 3% no geo at all.
* **age**: the 2020 census age pyramid in five-year bands times an internet-use
  factor (few under 10 or over 70); 7% unknown.
* **gender**: 51.2% male among the known; 4% unknown.
* **tags**: each tag has a rate inside an age window, a (much lower) rate
  outside it and a factor per gender (``TAG_MODEL``): ``white_collar_women`` is
  almost only women 22-40, ``car_lover`` mostly men 25-50, ``student`` 15-24,
  ``retiree`` 58+. Unknown age or gender use the average. 5% have no tags (null).
* **daily_impressions**: log-normal around 18 a day, higher for 18-35; 2% null.

``user_id`` is never null: it is the key (a null id is a bad row for the index).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .progress import Progress
from .taxonomy import Taxonomy

SCHEMA = pa.schema([
    ("user_id", pa.string()),
    ("province", pa.int32()),
    ("city", pa.int32()),
    ("gender", pa.string()),
    ("age", pa.int16()),
    ("tags", pa.list_(pa.string())),
    ("daily_impressions", pa.float32()),
])

# 2020 census, % of population per five-year band from 0-4 to 85+
_AGE_BANDS = np.array([5.5, 6.1, 5.7, 5.1, 5.3, 6.5, 8.8, 7.0, 6.6, 8.3, 8.7, 7.2, 5.2, 5.0, 3.4, 2.2,
                       1.4, 0.9])
_ONLINE = np.array([0.05, 0.3, 0.7, 1.0, 1.0, 1.0, 1.0, 1.0, 0.95, 0.9, 0.8, 0.7, 0.55, 0.45, 0.3,
                    0.2, 0.1, 0.05])

# tag: (rate inside the age window, lo, hi, rate outside as a fraction, male factor, female factor)
TAG_MODEL: dict[str, tuple[float, int, int, float, float, float]] = {
    "high_end": (0.06, 30, 55, 0.25, 1.2, 0.8),
    "white_collar_women": (0.32, 22, 40, 0.06, 0.02, 1.0),
    "trendsetter": (0.22, 16, 30, 0.15, 0.8, 1.2),
    "car_lover": (0.24, 25, 50, 0.2, 1.0, 0.2),
    "investor": (0.14, 28, 60, 0.2, 1.2, 0.8),
    "it_fan": (0.16, 16, 40, 0.2, 1.6, 0.4),
    "gamer": (0.30, 12, 32, 0.15, 1.5, 0.5),
    "new_parent": (0.20, 25, 36, 0.05, 0.8, 1.2),
    "traveler": (0.12, 22, 65, 0.3, 1.0, 1.0),
    "foodie": (0.25, 16, 45, 0.4, 0.8, 1.2),
    "fitness": (0.12, 18, 45, 0.2, 1.1, 0.9),
    "student": (0.70, 15, 24, 0.01, 1.0, 1.0),
    "home_buyer": (0.08, 25, 42, 0.1, 1.0, 1.0),
    "beauty": (0.35, 16, 45, 0.2, 0.05, 1.0),
    "luxury_shopper": (0.04, 25, 50, 0.2, 0.6, 1.4),
    "online_shopper": (0.40, 16, 55, 0.3, 0.7, 1.3),
    "reader": (0.10, 15, 70, 0.5, 0.9, 1.1),
    "movie_fan": (0.18, 15, 40, 0.3, 1.0, 1.0),
    "music_fan": (0.20, 12, 35, 0.3, 1.0, 1.0),
    "pet_owner": (0.10, 20, 45, 0.3, 0.8, 1.2),
    "business_traveler": (0.06, 28, 55, 0.1, 1.5, 0.5),
    "sports_fan": (0.16, 14, 50, 0.3, 1.6, 0.4),
    "education_seeker": (0.10, 16, 40, 0.2, 0.9, 1.1),
    "health_conscious": (0.18, 40, 80, 0.25, 0.8, 1.2),
    "newlywed": (0.10, 24, 33, 0.05, 1.0, 1.0),
    "retiree": (0.60, 58, 120, 0.0, 1.0, 1.1),
    "job_seeker": (0.10, 20, 35, 0.15, 1.0, 1.0),
    "anime_fan": (0.20, 12, 28, 0.1, 1.1, 0.9),
    "photographer": (0.05, 20, 60, 0.3, 1.3, 0.7),
    "deal_seeker": (0.25, 25, 70, 0.4, 0.7, 1.3),
    "home_decor": (0.08, 26, 50, 0.2, 0.9, 1.1),
    "mother_baby": (0.22, 24, 38, 0.05, 0.1, 1.0),
}
_DEFAULT_TAG = (0.05, 15, 70, 0.3, 1.0, 1.0)

NO_CITY, NO_GEO, NO_AGE, NO_GENDER, NO_TAGS, NO_IMPRESSIONS = 0.04, 0.03, 0.07, 0.04, 0.05, 0.02
MALE_SHARE = 0.512
ID_DIGITS = 10


def _geo_tables(tx: Taxonomy) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
    provs = np.array(tx.provinces, dtype=np.int32)
    pop = np.array([tx.population.get(int(p), 0) for p in provs], dtype=np.float64)
    if pop.sum() <= 0:
        pop = np.ones(len(provs))
    cities, weights = [], []
    for p in provs.tolist():
        cs = np.array(tx.cities_of(p), dtype=np.int32)
        w = np.where(cs % 10000 // 100 == 1, 4.0, 1.0)
        w = w * (0.5 + 1.5 * ((cs.astype(np.int64) * 2654435761) % 1000) / 1000.0)  # fixed per city
        cities.append(cs)
        weights.append(w / w.sum() if len(w) else w)
    return provs, pop / pop.sum(), cities, weights


def _ids(start: int, n: int) -> pa.Array:
    """``u`` + 10 zero-padded digits, formatted by Arrow compute (no Python strings)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(start, start + n, dtype=np.int64)), pa.string()),
                          width=ID_DIGITS, padding="0")
    return pc.binary_join_element_wise("u", digits, "")


def _tag_table(names: list[str]) -> np.ndarray:
    """float32[(1 + 121) * 3, n_tags]: P(tag) per (age code, gender code) cell (0 = unknown)."""
    age = np.arange(-1, 121)[:, None]  # -1 = unknown
    out = np.empty((len(age), 3, len(names)), dtype=np.float32)
    for j, t in enumerate(names):
        rate, lo, hi, outside, mf, ff = TAG_MODEL.get(t, _DEFAULT_TAG)
        p = np.where((age >= lo) & (age <= hi), rate, rate * outside)
        p = np.where(age < 0, rate * 0.3, p)[:, 0]
        out[:, 0, j] = p * (mf + ff) / 2
        out[:, 1, j] = p * mf
        out[:, 2, j] = p * ff
    return out.reshape(-1, len(names))


def _chunk(rng: np.random.Generator, start: int, n: int, tx: Taxonomy,
           geo: tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]) -> pa.Table:
    provs, pweights, cities, cweights = geo
    pi = rng.choice(len(provs), size=n, p=pweights)
    province = provs[pi]
    city = np.zeros(n, dtype=np.int32)
    u = rng.random(n)
    for k in np.unique(pi).tolist():
        if len(cities[k]) == 0:
            continue
        rows = np.flatnonzero(pi == k)
        cum = np.cumsum(cweights[k])
        city[rows] = cities[k][np.minimum(np.searchsorted(cum, u[rows] * cum[-1], side="right"),
                                          len(cum) - 1)]
    no_geo = rng.random(n) < NO_GEO
    no_city = (rng.random(n) < NO_CITY) | no_geo | (city == 0)

    band_p = _AGE_BANDS * _ONLINE
    band = rng.choice(len(band_p), size=n, p=band_p / band_p.sum())
    age = (band * 5 + rng.integers(0, 5, size=n) + np.where(band == len(band_p) - 1,
                                                               rng.integers(0, 12, size=n), 0))
    age = np.minimum(age, 110).astype(np.int16)
    no_age = rng.random(n) < NO_AGE
    g_draw = rng.random(n)
    gender_idx = np.where(g_draw < MALE_SHARE, 0, 1)
    no_gender = rng.random(n) < NO_GENDER

    names = tx.tag_ids
    cell = np.where(no_age, 0, age.astype(np.int32) + 1) * 3 + np.where(no_gender, 0, gender_idx + 1)
    has = rng.random((n, len(names)), dtype=np.float32) < _tag_table(names)[cell]
    no_tags = rng.random(n) < NO_TAGS
    flat = np.flatnonzero(has.ravel())  # far faster than 2-D nonzero
    rows, cols = flat // len(names), flat % len(names)
    counts = np.bincount(rows, minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    values = pa.array(names, type=pa.string()).take(pa.array(cols.astype(np.int32)))
    tags = pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(no_tags))

    young = (age >= 18) & (age <= 35)
    di = rng.lognormal(mean=np.log(18.0) - 0.5, sigma=1.0, size=n) * np.where(young, 1.4, 1.0)
    no_di = rng.random(n) < NO_IMPRESSIONS

    gender = pa.array(["male", "female"], type=pa.string()).take(
        pa.array(gender_idx.astype(np.int32), mask=no_gender))
    return pa.table({
        "user_id": _ids(start, n),
        "province": pa.array(province, type=pa.int32(), mask=no_geo),
        "city": pa.array(city, type=pa.int32(), mask=no_city),
        "gender": gender,
        "age": pa.array(age, type=pa.int16(), mask=no_age),
        "tags": tags,
        "daily_impressions": pa.array(di.astype(np.float32), type=pa.float32(), mask=no_di),
    }, schema=SCHEMA)


def generate_population(out: str | Path, users: int, *, taxonomy: Taxonomy, seed: int = 0,
                        shard_rows: int = 1_000_000, progress: bool = True) -> Path:
    """Write ``users`` synthetic profiles; returns the path written.

    ``out`` ending in ``.parquet`` → one file (row groups of ≤ 1M rows); otherwise a
    directory of ``part-NNNNN.parquet`` shards of ``shard_rows`` rows each, in
    ascending ``user_id`` order (so each shard is one user-id range). Written to a
    temporary sibling and renamed at the end: a crash never leaves half a population.
    """
    if not isinstance(users, int) or users < 0:
        raise ValueError(f"users must be a non-negative integer, got {users!r}")
    if shard_rows <= 0:
        raise ValueError("shard_rows must be positive")
    out = Path(out)
    single = out.suffix == ".parquet"
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    geo = _geo_tables(taxonomy)
    chunk = min(shard_rows, 1_000_000)
    writer = None
    try:
        if single:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            writer = pq.ParquetWriter(tmp, SCHEMA, compression="zstd")
        else:
            tmp.mkdir(parents=True)
        with Progress("population", total=users, unit="users", enabled=progress) as bar:
            start = 0
            shard = 0
            while start < users or (start == 0 and users == 0):
                n_shard = min(shard_rows, users - start)
                parts = []
                done = 0
                while done < n_shard:
                    n = min(chunk, n_shard - done)
                    rng = np.random.default_rng([seed, start + done])
                    t = _chunk(rng, start + done, n, taxonomy, geo)
                    if writer is not None:
                        writer.write_table(t)
                    else:
                        parts.append(t)
                    done += n
                    bar.update(n)
                if writer is None:
                    table = pa.concat_tables(parts) if parts else SCHEMA.empty_table()
                    pq.write_table(table, tmp / f"part-{shard:05d}.parquet", compression="zstd",
                                   row_group_size=chunk)
                start += n_shard
                shard += 1
                if users == 0:
                    break
        if writer is not None:
            writer.close()
            writer = None
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    return out


def ensure_demo_population(cache_dir: str | Path, taxonomy: Taxonomy, users: int = 200_000) -> Path:
    """The demo population under ``cache_dir``, generated on first use and reused after."""
    path = Path(cache_dir) / f"population-{users}-seed0"
    if path.is_dir() and any(path.glob("*.parquet")):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    return generate_population(path, users, taxonomy=taxonomy, seed=0, progress=True)


__all__ = ["SCHEMA", "TAG_MODEL", "ensure_demo_population", "generate_population"]
