"""A small generated population and its index, shared by the audience tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from reference import Features

from targeting.audience import AudienceIndex
from targeting.population import generate_population
from targeting.taxonomy import Taxonomy

USERS = 6000
SHARD_ROWS = 1500  # several shards, so cross-shard code paths run


@pytest.fixture(scope="session")
def tx() -> Taxonomy:
    return Taxonomy.load("rules/taxonomy")


@pytest.fixture(scope="session")
def population(tx: Taxonomy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pop") / "profiles"
    return generate_population(out, USERS, taxonomy=tx, seed=7, shard_rows=2500, progress=False)


@pytest.fixture(scope="session")
def index(population: Path, tx: Taxonomy) -> AudienceIndex:
    return AudienceIndex.open(population, tx, cache=False, shard_rows=SHARD_ROWS)


class Rows(list):
    """Profile rows with a short repr (Hypothesis prints arguments of failing examples)."""

    def __repr__(self) -> str:
        return f"<{len(self)} profile rows>"


@pytest.fixture(scope="session")
def rows(population: Path) -> Rows:
    """The population as plain rows (the reference side of the tests)."""
    return Rows(pq.read_table(population).to_pylist())


def features(row: dict) -> Features:
    return Features(province=row["province"], city=row["city"], gender=row["gender"], age=row["age"],
                    tags=frozenset(row["tags"] or ()))


def sample_ids(rows: list[dict], k: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [rows[i]["user_id"] for i in rng.choice(len(rows), size=k, replace=False)]
