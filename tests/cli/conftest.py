"""Rules directories, small data files and a runner for the CLI tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from targeting.cli import main
from targeting.population import generate_population
from targeting.taxonomy import Taxonomy

REPO = Path(__file__).resolve().parents[2]
GOOD = [
    {"id": "acme-spring", "advertiser": "acme", "bid": {"cpm": 12.5}, "category": "auto",
     "targeting": {"geo": {"include": ["广东"]}, "gender": "female"}},
    {"id": "bobco-cpc", "advertiser": "bobco", "bid": {"cpc": 0.8}, "category": "finance",
     "targeting": {"age": [[20, 40]]}},
]


def make_rules(root: Path, campaigns: Any = GOOD) -> Path:
    """A rules directory: the repository's taxonomy and one campaign file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "taxonomy").symlink_to(REPO / "rules" / "taxonomy")
    (root / "campaigns").mkdir()
    (root / "campaigns" / "c.yaml").write_text(yaml.safe_dump(campaigns, allow_unicode=True), encoding="utf-8")
    return root


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run(*argv)`` → (exit code, stdout, stderr) of ``targeting argv…`` in-process."""
    def go(*argv: str) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return go


@pytest.fixture(scope="session")
def tx() -> Taxonomy:
    return Taxonomy.load(REPO / "rules" / "taxonomy")


@pytest.fixture(scope="session")
def profiles(tx: Taxonomy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 generated profiles in one Parquet file."""
    return generate_population(tmp_path_factory.mktemp("pop") / "profiles.parquet", 2000, taxonomy=tx, seed=3,
                               progress=False)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    return make_rules(tmp_path / "rules")
