"""Bad profile input: reported with counts and examples; skipped or refused; never half-built."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from targeting.audience import AudienceIndex, ProfileError, read_profiles
from targeting.errors import TargetingError

GOOD = {"user_id": "g0", "province": 440000, "city": 440300, "gender": "female", "age": 30,
        "tags": ["beauty"], "daily_impressions": 12.0}
SCHEMA = pa.schema([("user_id", pa.string()), ("province", pa.int32()), ("city", pa.int32()),
                    ("gender", pa.string()), ("age", pa.int16()), ("tags", pa.list_(pa.string())),
                    ("daily_impressions", pa.float32())])


def write(path: Path, rows: list[dict], schema: pa.Schema = SCHEMA) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def good_rows(n: int) -> list[dict]:
    return [{**GOOD, "user_id": f"g{i:05d}"} for i in range(n)]


# each case: one bad row among good ones, and the problem it must be reported as
BAD_ROWS = [
    ({"province": 990000}, "unknown province adcode"),  # no such province
    ({"city": 449999}, "unknown city adcode"),  # no such city
    ({"province": 310000, "city": 440300}, "city not in province"),  # Shenzhen is not in Shanghai
    ({"age": -3}, "age outside 0..120"),
    ({"age": 130}, "age outside 0..120"),
    ({"gender": "M"}, "unknown gender (expected male, female or null)"),
    ({"tags": ["beauty", "astronaut"]}, "unknown tag"),
    ({"daily_impressions": -1.0}, "daily_impressions negative or not finite"),
    ({"user_id": None}, "missing or empty user_id (or one containing NUL)"),
    ({"user_id": ""}, "missing or empty user_id (or one containing NUL)"),
]


@pytest.mark.parametrize("change,reason", BAD_ROWS, ids=[r for _, r in BAD_ROWS[:1]] + [
    "unknown-city", "city-outside-province", "negative-age", "age-130", "gender-M", "unknown-tag",
    "negative-impressions", "null-id", "empty-id"])
def test_bad_rows_are_counted_with_examples_and_skipped(change, reason, tx, tmp_path):
    rows = good_rows(300)
    rows[17] = {**rows[17], **change}
    path = write(tmp_path / "p.parquet", rows)
    cols = read_profiles(path, tx, max_bad_fraction=0.05)
    assert len(cols) == 299
    problem = cols.report["problems"][reason]
    assert problem["rows"] == 1
    assert problem["examples"][0]["row"] == 17
    with pytest.raises(ProfileError) as e:
        read_profiles(path, tx, on_error="refuse")
    assert e.value.report["problems"][reason]["rows"] == 1
    assert e.value.status == 400 and e.value.code == "bad_profiles"


def test_duplicate_user_ids_keep_the_first_row_and_are_reported(tx, tmp_path):
    rows = good_rows(10)
    rows.append({**GOOD, "user_id": "g00003", "age": 77})
    rows.reverse()  # unsorted input: the index sorts ids itself
    cols = read_profiles(write(tmp_path / "p.parquet", rows), tx, max_bad_fraction=0.1)
    assert len(cols) == 10
    assert cols.report["problems"]["duplicate user_id (later rows dropped)"]["rows"] == 1
    idx = AudienceIndex.build(cols, tx)
    assert idx.lookup("g00003")["age"] == 77  # the first occurrence in file order wins


def test_many_bad_rows_refuse_the_load_even_when_skipping(tx, tmp_path):
    rows = good_rows(100)
    for r in rows[:10]:
        r["age"] = -1
    with pytest.raises(ProfileError, match="10 bad rows"):
        read_profiles(write(tmp_path / "p.parquet", rows), tx)


@pytest.mark.parametrize("column,arrow_type", [
    ("province", pa.string()),  # adcodes as text
    ("age", pa.float64()),
    ("tags", pa.string()),  # a comma-joined string instead of a list
    ("user_id", pa.int64()),
], ids=["province-string", "age-float", "tags-string", "user_id-int"])
def test_a_wrong_column_type_refuses_the_whole_load(column, arrow_type, tx, tmp_path):
    schema = SCHEMA.set(SCHEMA.get_field_index(column), pa.field(column, arrow_type))
    value = {"province": "440000", "age": 30.0, "tags": "beauty", "user_id": 7}[column]
    path = write(tmp_path / "p.parquet", [{**GOOD, column: value}], schema)
    with pytest.raises(ProfileError) as e:
        AudienceIndex.open(path, tx, cache=False)
    assert e.value.path == f"profiles.{column}"
    assert column in e.value.message


def test_a_refused_directory_leaves_no_index_behind(tx, tmp_path):
    d = tmp_path / "profiles"
    d.mkdir()
    write(d / "a.parquet", good_rows(50))
    bad = good_rows(50)
    for r in bad:
        r["user_id"] = "b" + r["user_id"]
        r["gender"] = "robot"
    write(d / "b.parquet", bad)
    with pytest.raises(ProfileError):
        AudienceIndex.open(d, tx)
    assert not (tmp_path / "profiles.index").exists()


def test_missing_optional_columns_mean_unknown(tx, tmp_path):
    path = write(tmp_path / "p.parquet", [{"user_id": "x1"}, {"user_id": "x2"}],
                 pa.schema([("user_id", pa.string())]))
    idx = AudienceIndex.open(path, tx, cache=False)
    assert idx.lookup("x1") == {"province": None, "city": None, "gender": None, "age": None, "tags": []}


def test_municipality_given_as_city_is_its_province(tx, tmp_path):
    path = write(tmp_path / "p.parquet", [{**GOOD, "province": None, "city": 110000}])
    idx = AudienceIndex.open(path, tx, cache=False)
    assert (idx.lookup("g0")["province"], idx.lookup("g0")["city"]) == (110000, None)


def test_missing_profiles_path_is_a_clear_error(tx, tmp_path):
    with pytest.raises(TargetingError, match="not found"):
        AudienceIndex.open(tmp_path / "nope.parquet", tx)
