"""User profiles (contract §5 Parquet schema) with lookup by ``user_id``: a test double of the
profile store (``targeting.audience.AudienceIndex`` is the real one): the simple columnar
lookup decide needs, built from a table in memory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PROFILE_COLUMNS = ("user_id", "province", "city", "gender", "age", "tags")


class Profiles:
    """Columns as arrays plus a ``user_id → row`` map. Build with :meth:`from_table` or :meth:`load`."""

    def __init__(self, table: pa.Table) -> None:
        self.user_id = table.column("user_id").to_pylist()
        self.row = {u: i for i, u in enumerate(self.user_id)}
        self.province = _ints(table, "province")
        self.city = _ints(table, "city")
        self.age = _ints(table, "age")
        self.gender = table.column("gender").to_pylist() if "gender" in table.column_names else [None] * len(self)
        self.tags = table.column("tags").to_pylist() if "tags" in table.column_names else [None] * len(self)

    def __len__(self) -> int:
        return len(self.user_id)

    @classmethod
    def load(cls, path: str | Path) -> Profiles:
        """A Parquet file or a directory of Parquet shards."""
        p = Path(path)
        files = sorted(p.glob("*.parquet")) if p.is_dir() else [p]
        tables = [pq.read_table(f, columns=[c for c in PROFILE_COLUMNS if c in pq.read_schema(f).names]) for f in files]
        return cls(pa.concat_tables(tables) if len(tables) > 1 else tables[0])

    def lookup(self, user_id: str) -> dict[str, Any] | None:
        i = self.row.get(user_id)
        if i is None:
            return None
        return {
            "province": _opt(self.province[i]),
            "city": _opt(self.city[i]),
            "gender": self.gender[i],
            "age": _opt(self.age[i]),
            "tags": self.tags[i] or (),
        }


def _ints(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        return np.full(table.num_rows, -1, dtype=np.int64)
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)  # nulls → nan


def _opt(v: float) -> int | None:
    return None if math.isnan(v) or v < 0 else int(v)
