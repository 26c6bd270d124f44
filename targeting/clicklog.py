"""Synthetic requests and click logs with a documented ground truth (``targeting gen``).

Users
    A pool of ``max(100, rows // 10)`` users, each with fixed attributes:
    province drawn by 2020 census population, a city of it (10% only the
    province), gender (4% unknown), age (13–80, 5% unknown), and tags whose
    probabilities depend on age and gender (students are young, retirees old,
    ``white_collar_women`` are women of 22–45, ...). 3% of requests carry no
    tags at all (null), so profiles or priors have to stand in.

Requests
    Uniform over the ``days`` days before ``end`` with a diurnal shape (evening
    peak); the scene depends on the hour and the user (offices on weekday
    working hours, campuses for students, ...), 5% unknown.

Ground truth (:class:`GroundTruth`)
    ``logit P(click) = logit(prior_ctr[category]) + quality[campaign]
    + Σ_tags TAG[tag, category] + AGE[band, category] + GENDER[gender, category]
    + HOUR[hour] + WEEKDAY[weekday] + SCENE[scene, category]``

    with hour and weekday in Asia/Shanghai, age bands ``unknown, <18, 18–24,
    25–34, 35–44, 45–54, 55–64, 65+``, hand-written affinities (``car_lover ×
    auto`` +1.2, ``gamer × games`` +1.3, ``student × finance`` −0.6, ...; the
    tables below), and ``quality`` ~ N(0, 0.3) drawn from a CRC32 of the
    campaign id (the same campaign keeps its quality across logs).

Campaign choice
    Each logged request shows one campaign drawn uniformly among those eligible
    for it under the engine's rules — exactly the campaigns ``Engine.decide``
    would consider (targeting, time, flight dates, retargeting, caps and
    budgets read from the engine's store) — like an exploration bucket, so the
    log covers every campaign and not only past winners. When no campaign is
    eligible the request shows one drawn uniformly among all active campaigns
    and the row says ``eligible = false``.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import TargetingError
from .model import age_band
from .taxonomy import GENDERS, Taxonomy

TRUTH_ZONE = "Asia/Shanghai"
SLOT_NAMES = ("feed", "banner", "splash", "video", "search")
CHUNK = 100_000

# affinity of users with a tag for a category (logit shift); unlisted pairs are 0
TAG_EFFECTS: dict[str, dict[str, float]] = {
    "high_end": {"auto": 0.5, "travel": 0.4, "finance": 0.4, "real_estate": 0.3, "games": -0.3},
    "white_collar_women": {"fashion": 0.8, "beauty": 0.9, "retail": 0.3, "games": -0.5},
    "trendsetter": {"fashion": 0.7, "tech": 0.4, "beauty": 0.4},
    "car_lover": {"auto": 1.2, "travel": 0.2},
    "investor": {"finance": 1.2, "real_estate": 0.4},
    "it_fan": {"tech": 1.0, "games": 0.5},
    "gamer": {"games": 1.3, "tech": 0.4, "finance": -0.3},
    "new_parent": {"education": 0.6, "health": 0.5, "retail": 0.4, "games": -0.4},
    "traveler": {"travel": 1.1, "food": 0.3},
    "foodie": {"food": 1.0, "travel": 0.2},
    "fitness": {"health": 0.7, "food": -0.2, "fashion": 0.2},
    "student": {"education": 0.9, "games": 0.5, "finance": -0.6, "real_estate": -0.8},
    "home_buyer": {"real_estate": 1.3, "finance": 0.4, "retail": 0.2},
    "beauty": {"beauty": 1.2, "fashion": 0.4},
    "luxury_shopper": {"fashion": 0.6, "auto": 0.4, "travel": 0.3, "beauty": 0.3},
    "online_shopper": {"retail": 1.0, "fashion": 0.3, "food": 0.2},
    "reader": {"education": 0.4},
    "movie_fan": {"games": 0.2, "food": 0.2},
    "business_traveler": {"travel": 0.8, "finance": 0.2},
    "sports_fan": {"health": 0.3, "auto": 0.2},
    "education_seeker": {"education": 1.1},
    "health_conscious": {"health": 0.9, "food": -0.2},
    "newlywed": {"real_estate": 0.6, "travel": 0.4, "retail": 0.3},
    "retiree": {"health": 0.6, "finance": 0.3, "games": -0.8, "fashion": -0.4},
    "job_seeker": {"education": 0.7, "finance": -0.3},
    "anime_fan": {"games": 0.8},
    "photographer": {"tech": 0.6, "travel": 0.4},
    "deal_seeker": {"retail": 0.7, "food": 0.3, "auto": -0.3},
    "home_decor": {"real_estate": 0.5, "retail": 0.4},
    "mother_baby": {"retail": 0.6, "health": 0.4, "education": 0.3},
    "pet_owner": {"retail": 0.4},
}
#                 unknown  <18   18-24  25-34  35-44  45-54  55-64  65+
AGE_EFFECTS: dict[str, tuple[float, ...]] = {
    "games":       (0.0, 0.6, 0.5, 0.1, -0.3, -0.6, -0.8, -1.0),
    "education":   (0.0, 0.5, 0.4, 0.1, 0.1, -0.2, -0.4, -0.6),
    "finance":     (0.0, -0.8, -0.3, 0.1, 0.3, 0.3, 0.2, 0.0),
    "auto":        (0.0, -0.8, -0.1, 0.3, 0.3, 0.0, -0.3, -0.6),
    "health":      (0.0, -0.4, -0.3, -0.1, 0.1, 0.3, 0.5, 0.6),
    "fashion":     (0.0, 0.2, 0.5, 0.3, 0.0, -0.3, -0.5, -0.7),
    "beauty":      (0.0, 0.1, 0.4, 0.4, 0.1, -0.2, -0.4, -0.6),
    "real_estate": (0.0, -1.0, -0.4, 0.4, 0.4, 0.1, -0.2, -0.5),
    "travel":      (0.0, -0.3, 0.1, 0.1, 0.1, 0.2, 0.3, 0.1),
}
GENDER_EFFECTS: dict[str, tuple[float, float, float]] = {  # unknown, male, female
    "auto": (0.0, 0.4, -0.4), "games": (0.0, 0.3, -0.2), "tech": (0.0, 0.3, -0.2),
    "beauty": (0.0, -0.8, 0.5), "fashion": (0.0, -0.3, 0.4), "retail": (0.0, -0.1, 0.2),
    "finance": (0.0, 0.1, 0.0),
}
SCENE_EFFECTS: dict[str, dict[str, float]] = {
    "home": {"games": 0.2, "food": 0.1, "retail": 0.2},
    "office": {"finance": 0.2, "tech": 0.1, "games": -0.4},
    "internet_cafe": {"games": 0.8, "tech": 0.3, "finance": -0.4},
    "campus": {"education": 0.5, "games": 0.3, "real_estate": -0.5},
    "on_the_go": {"travel": 0.4, "food": 0.3, "finance": -0.2},
}
HOUR_AMPLITUDE = 0.25  # HOUR[h] = 0.25 cos(2π (h - 21) / 24): best at 21:00, worst at 09:00
WEEKDAY_EFFECTS = (-0.05, 0.0, 0.0, 0.0, 0.05, 0.12, 0.10)  # mon..sun
QUALITY_SD = 0.3


class GroundTruth:
    """The click probability the synthetic log is drawn from (see the module docstring)."""

    def __init__(self, tx: Taxonomy) -> None:
        cats = list(tx.categories)
        ci = {c: i for i, c in enumerate(cats)}
        n_cat = len(cats)
        prior = np.array([tx.categories[c].prior_ctr for c in cats])
        self.base = np.log(prior / (1 - prior))  # float64[n_cat]
        self.tag = np.zeros((len(tx.tags) + 1, n_cat))  # last row: padding
        for t, row in TAG_EFFECTS.items():
            if t in tx.tags:
                for c, v in row.items():
                    if c in ci:
                        self.tag[tx.tag_ids.index(t), ci[c]] = v
        self.age = np.zeros((8, n_cat))
        for c, vals in AGE_EFFECTS.items():
            if c in ci:
                self.age[:, ci[c]] = vals
        self.gender = np.zeros((3, n_cat))
        for c, vals in GENDER_EFFECTS.items():
            if c in ci:
                self.gender[:, ci[c]] = vals
        self.scene = np.zeros((tx.scene_domain, n_cat))
        for s, row in SCENE_EFFECTS.items():
            if s in tx.scenes:
                for c, v in row.items():
                    if c in ci:
                        self.scene[tx.scene_index()[s], ci[c]] = v
        self.hour = HOUR_AMPLITUDE * np.cos(2 * np.pi * (np.arange(24) - 21) / 24)
        self.weekday = np.array(WEEKDAY_EFFECTS)

    @staticmethod
    def quality(campaign_ids: list[str]) -> np.ndarray:
        """float64[n]: each campaign's own click appeal, fixed by its id."""
        return np.array([
            QUALITY_SD * np.random.default_rng(zlib.crc32(c.encode())).standard_normal() for c in campaign_ids
        ])

    def ctr(self, *, category: np.ndarray, quality: np.ndarray, ts: np.ndarray, gender: np.ndarray,
            age: np.ndarray, scene: np.ndarray, tags: np.ndarray) -> np.ndarray:
        """float64[n]: P(click) of n (request, campaign) rows; ``tags`` int[n, T] padded with -1,
        ``gender``/``age``/``scene`` domain indices, ``category`` taxonomy category index."""
        from .localtime import local_minutes

        lm = local_minutes(ts, TRUTH_ZONE)
        day, minute = np.divmod(lm, 1440)
        hour = minute // 60
        weekday = (day + 3) % 7
        z = self.base[category] + quality + self.hour[hour] + self.weekday[weekday]
        z += self.age[age_band(age), category] + self.gender[gender, category] + self.scene[scene, category]
        pad = self.tag.shape[0] - 1
        for k in range(tags.shape[1]):
            z += self.tag[np.where(tags[:, k] >= 0, tags[:, k], pad), category]
        return 1.0 / (1.0 + np.exp(-z))


# ------------------------------------------------------------------ requests
class _Users:
    """A fixed pool of synthetic users (attributes as arrays of length ``n``)."""

    def __init__(self, n: int, tx: Taxonomy, rng: np.random.Generator, seed: int) -> None:
        provinces = tx.provinces
        weight = np.array([tx.population.get(p, 1_000_000) for p in provinces], dtype=np.float64)
        prov = np.array(provinces)[rng.choice(len(provinces), n, p=weight / weight.sum())]
        city = np.zeros(n, dtype=np.int32)
        for p in np.unique(prov):
            cities = tx.cities_of(int(p))
            sel = np.flatnonzero(prov == p)
            if cities:
                city[sel] = rng.choice(cities, sel.size)
        city[rng.random(n) < 0.10] = 0
        self.id = np.array([f"u{seed}-{i:07d}" for i in range(n)], dtype=object)
        self.province = prov.astype(np.int32)
        self.city = city
        self.gender = rng.choice(np.array([1, 2], dtype=np.int8), n)
        self.gender[rng.random(n) < 0.04] = 0
        age = np.clip(np.round(rng.gamma(6.0, 6.0, n) + 10), 13, 80).astype(np.int16)
        self.age = np.where(rng.random(n) < 0.05, 0, age + 1).astype(np.int16)  # domain index
        self.tags = self._tags(tx, rng, age, self.gender)

    @staticmethod
    def _tags(tx: Taxonomy, rng: np.random.Generator, age: np.ndarray, gender: np.ndarray) -> np.ndarray:
        n = age.size
        female, male = gender == 2, gender == 1
        young, student_age = age < 30, (age >= 15) & (age <= 23)
        prob = np.full((n, len(tx.tags)), 0.07)
        boost = {
            "student": np.where(student_age, 0.6, 0.01),
            "retiree": np.where(age >= 60, 0.6, 0.0),
            "white_collar_women": np.where(female & (age >= 22) & (age <= 45), 0.35, 0.0),
            "car_lover": np.where(male, 0.18, 0.05),
            "gamer": np.where(young & male, 0.45, np.where(young, 0.2, 0.05)),
            "new_parent": np.where((age >= 25) & (age <= 38), 0.2, 0.01),
            "mother_baby": np.where(female & (age >= 25) & (age <= 38), 0.3, 0.01),
            "beauty": np.where(female, 0.3, 0.02),
            "investor": np.where(age >= 30, 0.15, 0.04),
            "home_buyer": np.where((age >= 26) & (age <= 45), 0.15, 0.02),
        }
        for t, p in boost.items():
            if t in tx.tags:
                prob[:, tx.tag_ids.index(t)] = p
        return rng.random(prob.shape) < prob  # bool[n, n_tags]


_HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 1, 2, 4, 6, 6, 5, 5, 7, 6, 5, 5, 5, 6, 7, 8, 9, 9, 7, 4], dtype=float)


def _sample_requests(n: int, tx: Taxonomy, rng: np.random.Generator, users: _Users, *,
                     end: float, days: int, first: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    """(contract §5 requests table, int64[n] user positions)."""
    who = rng.integers(0, users.id.size, n)
    day = rng.integers(0, days, n)
    hour = rng.choice(24, n, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    sec = rng.integers(0, 3600, n)
    midnight = (math.floor((end + 8 * 3600) / 86400) - days) * 86400 - 8 * 3600  # Shanghai midnight
    ts = (midnight + day * 86400 + hour * 3600 + sec).astype(np.int64)
    weekday = ((ts + 8 * 3600) // 86400 + 3) % 7
    age = users.age[who].astype(np.int64) - 1
    work = (weekday < 5) & (hour >= 9) & (hour < 18)
    scenes = list(tx.scenes)
    scene_p = np.select(
        [(age >= 15) & (age <= 23) & (hour < 18), work, (hour >= 7) & (hour < 9) | (hour >= 17) & (hour < 19)],
        [0, 1, 2], 3,
    )
    dists = np.array([  # home office internet_cafe campus on_the_go
        [0.25, 0.02, 0.15, 0.50, 0.08],
        [0.15, 0.70, 0.02, 0.03, 0.10],
        [0.30, 0.05, 0.05, 0.05, 0.55],
        [0.75, 0.03, 0.10, 0.02, 0.10],
    ])
    u = rng.random(n)
    scene_idx = (u[:, None] > np.cumsum(dists[scene_p], axis=1)).sum(axis=1).clip(0, 4)
    scene = np.array(scenes, dtype=object)[scene_idx]
    scene[rng.random(n) < 0.05] = None
    gender = np.array([None, *GENDERS], dtype=object)[users.gender[who]]
    age_col = pa.array(np.where(age >= 0, age, 0).astype(np.int16), mask=age < 0)
    null_tags = rng.random(n) < 0.03
    tag_bits = users.tags[who] & ~null_tags[:, None]
    _, c = np.nonzero(tag_bits)
    offsets = np.concatenate([[0], np.cumsum(tag_bits.sum(axis=1))]).astype(np.int32)
    tags = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.array(tx.tag_ids, dtype=object)[c]),
                                    mask=pa.array(null_tags))
    prov = users.province[who]
    city = users.city[who]
    table = pa.table({
        "request_id": pa.array([f"r{seed}-{first + i:09d}" for i in range(n)]),
        "user_id": pa.array(users.id[who].tolist(), pa.string()),
        "ts": pa.array(ts * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz=TRUTH_ZONE)),
        "province": pa.array(prov, pa.int32()),
        "city": pa.array(city, pa.int32(), mask=city == 0),
        "gender": pa.array(gender.tolist(), pa.string()),
        "age": age_col,
        "tags": tags,
        "scene": pa.array(scene.tolist(), pa.string()),
        "slot": pa.array(np.array(SLOT_NAMES, dtype=object)[rng.integers(0, len(SLOT_NAMES), n)].tolist()),
    })
    return table, who


def _end_default() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def generate_requests(out: str | Path, rows: int, *, taxonomy: Taxonomy, seed: int = 0, days: int = 7,
                      end: float | None = None, progress: bool = True) -> Path:
    """Write ``rows`` synthetic requests (contract §5 columns) to the Parquet file ``out``.

    Timestamps fall in the ``days`` days before ``end`` (default now). Returns the path."""
    if rows < 1:
        raise TargetingError("rows must be >= 1", path="rows")
    from .progress import Progress

    rng = np.random.default_rng(seed)
    users = _Users(max(100, rows // 10), taxonomy, rng, seed)
    end = _end_default() if end is None else end
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = Progress("requests", total=rows, enabled=progress)
    writer = None
    try:
        for first in range(0, rows, CHUNK):
            n = min(CHUNK, rows - first)
            table, _ = _sample_requests(n, taxonomy, rng, users, end=end, days=days, first=first, seed=seed)
            writer = writer or pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
            bar.update(n)
    finally:
        if writer is not None:
            writer.close()
        bar.close()
    return out


def generate_log(out: str | Path, rows: int, *, engine: Any, seed: int = 0, days: int = 14,
                 end: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Write a synthetic click log of ``rows`` impressions to the Parquet file ``out``.

    Columns: the request columns of contract §5, ``campaign_id``, ``clicked``
    (int8 0/1), ``true_ctr`` (the ground-truth probability the click was drawn
    from) and ``eligible`` (whether the campaign was eligible, see the module
    docstring). Returns ``{"path", "rows", "clicks", "ctr", "truth_mean_ctr",
    "ineligible_rows", "campaigns"}``.
    """
    from .batchmatch import campaign_pairs, matched_pairs
    from .batchrequests import clocks, parse_requests
    from .layout import Layout
    from .progress import Progress
    from .storecheck import store_checks

    if rows < 1:
        raise TargetingError("rows must be >= 1", path="rows")
    index, tx = engine.index, engine.taxonomy
    if index.n_campaigns == 0:
        raise TargetingError("the rule set has no campaigns to log impressions for", path="rules")
    rng = np.random.default_rng(seed)
    users = _Users(max(100, rows // 10), tx, rng, seed)
    end = float(engine.clock()) if end is None else end
    truth = GroundTruth(tx)
    quality = truth.quality(list(index.ids))
    eligibility = Layout.identity(index)
    fallback = np.flatnonzero(index.active)
    if fallback.size == 0:
        fallback = np.arange(index.n_campaigns)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = Progress("click log", total=rows, enabled=progress)
    clicks = ineligible = 0
    ctr_sum = 0.0
    writer = None
    try:
        for first in range(0, rows, CHUNK):
            n = min(CHUNK, rows - first)
            table, _ = _sample_requests(n, tx, rng, users, end=end, days=days, first=first, seed=seed)
            reqs, errors = parse_requests(table, tx, now=end)
            if errors:  # generated requests are valid by construction
                raise RuntimeError(f"generated an invalid request: {errors[0]}")
            chosen = np.empty(n, dtype=np.int64)
            elig = np.empty(n, dtype=bool)
            clk = clocks(index.zones, reqs.ts)
            for s in range(0, n, 2048):
                sub = reqs.take(slice(s, s + 2048))
                sub_clk = _slice_clocks(clk, s, s + 2048)
                rb, clause = matched_pairs(eligibility, sub, sub_clk)
                ok, _ = store_checks(index, sub, rb, clause, engine.store, sub_clk)
                req, camp = campaign_pairs(eligibility, rb[ok], clause[ok])
                counts = np.bincount(req, minlength=len(sub))
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
                pick = starts + np.floor(rng.random(len(sub)) * np.maximum(counts, 1)).astype(np.int64)
                got = counts > 0
                part = np.empty(len(sub), dtype=np.int64)
                part[got] = camp[pick[got]]
                part[~got] = fallback[rng.integers(0, fallback.size, int((~got).sum()))]
                chosen[s:s + len(sub)] = part
                elig[s:s + len(sub)] = got
                ineligible += int((~got).sum())
            cat = index.category[chosen].astype(np.int64)
            p = truth.ctr(category=cat, quality=quality[chosen], ts=reqs.ts, gender=reqs.gender.astype(np.int64),
                          age=reqs.age, scene=reqs.scene.astype(np.int64), tags=reqs.tags)
            clicked = (rng.random(n) < p).astype(np.int8)
            clicks += int(clicked.sum())
            ctr_sum += float(p.sum())
            table = table.append_column("campaign_id", pa.array([index.ids[c] for c in chosen.tolist()]))
            table = table.append_column("clicked", pa.array(clicked, pa.int8()))
            table = table.append_column("true_ctr", pa.array(p, pa.float64()))
            table = table.append_column("eligible", pa.array(elig, pa.bool_()))
            writer = writer or pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
            bar.update(n)
    finally:
        if writer is not None:
            writer.close()
        bar.close()
    return {
        "path": str(out), "rows": rows, "clicks": clicks, "ctr": clicks / rows if rows else 0.0,
        "truth_mean_ctr": ctr_sum / rows if rows else 0.0, "ineligible_rows": ineligible,
        "campaigns": index.n_campaigns,
    }


def _slice_clocks(clk: Any, s: int, e: int) -> Any:
    from .batchrequests import Clocks

    return Clocks(clk.slots[s:e], clk.days[s:e], clk.day_fraction[s:e])


__all__ = ["GroundTruth", "generate_log", "generate_requests"]
