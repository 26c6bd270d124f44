"""The synthetic population: schema, unknowns, realism of the correlations, determinism."""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.parquet as pq

from targeting.population import SCHEMA, ensure_demo_population, generate_population


def test_schema_and_unknowns_in_every_attribute_column(population):
    t = pq.read_table(population)
    assert t.schema.equals(SCHEMA)
    assert t.column("user_id").null_count == 0
    for name in ("province", "city", "gender", "age", "tags", "daily_impressions"):
        assert 0 < t.column(name).null_count < 0.2 * t.num_rows, name
    ids = t.column("user_id").to_pylist()
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_geo_follows_the_census_and_cities_sit_in_their_province(rows, tx):
    by_prov: dict[int, int] = {}
    for r in rows:
        if r["province"]:
            by_prov[r["province"]] = by_prov.get(r["province"], 0) + 1
            if r["city"]:
                assert tx.places[r["city"]].province == r["province"]
    # Guangdong (126M) far ahead of Tibet (3.6M)
    assert by_prov[440000] > 10 * by_prov.get(540000, 0)


def test_tags_correlate_with_age_and_gender(rows):
    def share(tag, pred):
        grp = [r for r in rows if pred(r)]
        return sum(1 for r in grp if tag in (r["tags"] or ())) / max(1, len(grp))

    wcw = [r for r in rows if "white_collar_women" in (r["tags"] or ())]
    assert sum(r["gender"] == "female" for r in wcw) > 0.85 * len(wcw)
    assert share("white_collar_women", lambda r: r["gender"] == "female" and r["age"] and 22 <= r["age"] <= 40) \
        > 5 * share("white_collar_women", lambda r: r["gender"] == "female" and r["age"] and r["age"] > 50)
    assert share("car_lover", lambda r: r["gender"] == "male") > 3 * share("car_lover", lambda r: r["gender"] == "female")
    assert share("student", lambda r: r["age"] is not None and 15 <= r["age"] <= 24) \
        > 10 * share("student", lambda r: r["age"] is not None and r["age"] > 40)


def test_same_seed_same_population_and_single_file_mode(tx, tmp_path):
    a = generate_population(tmp_path / "a.parquet", 3000, taxonomy=tx, seed=3, shard_rows=1000, progress=False)
    b = generate_population(tmp_path / "b", 3000, taxonomy=tx, seed=3, shard_rows=1000, progress=False)
    assert a.is_file() and len(list(b.glob("*.parquet"))) == 3
    assert pq.read_table(a).equals(pq.read_table(b))
    c = generate_population(tmp_path / "c.parquet", 3000, taxonomy=tx, seed=4, shard_rows=1000, progress=False)
    assert not pq.read_table(a).equals(pq.read_table(c))
    assert pc.sum(pc.list_value_length(pq.read_table(a).column("tags"))).as_py() > 3000


def test_demo_population_is_generated_once_and_reused(tx, tmp_path):
    p1 = ensure_demo_population(tmp_path, tx, users=2000)
    mtime = max(f.stat().st_mtime_ns for f in p1.glob("*.parquet"))
    p2 = ensure_demo_population(tmp_path, tx, users=2000)
    assert p1 == p2 and max(f.stat().st_mtime_ns for f in p2.glob("*.parquet")) == mtime
    assert pq.read_table(p2).num_rows == 2000
