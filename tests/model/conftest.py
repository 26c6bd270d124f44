"""A small click log and a model trained on it, shared by the model tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from targeting.engine import Engine

RULES = Path(__file__).resolve().parents[2] / "rules"


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine.load(RULES)


@pytest.fixture(scope="session")
def click_log(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> tuple[Path, dict[str, Any]]:
    from targeting.clicklog import generate_log

    p = tmp_path_factory.mktemp("log") / "clicks.parquet"
    info = generate_log(p, 60_000, engine=engine, seed=3, progress=False)
    return p, info


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, click_log: tuple[Path, dict[str, Any]]) -> tuple[Path, dict]:
    from targeting.model import train

    out = tmp_path_factory.mktemp("model") / "m"
    metrics = train(click_log[0], rules_dir=RULES, out_dir=out, progress=False)
    return out, metrics


@pytest.fixture
def model_copy(trained: tuple[Path, dict], tmp_path: Path) -> Path:
    """A private copy of the trained model directory, free to corrupt."""
    return Path(shutil.copytree(trained[0], tmp_path / "m"))
