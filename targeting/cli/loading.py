"""``load_engine``: :meth:`targeting.Engine.load` with every path checked first and every
failure turned into a :class:`UsageError` naming its flag.

Profiles are opened here before the engine (with a progress bar while Parquet is read
and indexed); ``AudienceIndex.open`` keeps the built index next to the Parquet, so the
engine (and ``serve``'s workers) map it back instead of building it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import TargetingError
from .inputs import UsageError, existing_dir, home, parquet, rules_dir


def check_profiles(path: str) -> None:
    """Refuse a missing path, a directory without Parquet, an empty or non-Parquet file."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such profiles file or directory: {path}", path="--profiles")
    if not (p / "manifest.json").exists():  # else: an index saved by a previous run
        parquet(path, "--profiles")


def open_profiles(path: str, rules: str, *, progress: bool = False) -> None:
    """Validate and index the profiles at ``path`` (kept as ``<path>.index/`` for the engine)."""
    from ..audience import AudienceIndex
    from ..taxonomy import Taxonomy

    check_profiles(path)
    try:
        AudienceIndex.open(path, Taxonomy.load(Path(rules) / "taxonomy"), progress=progress)
    except TargetingError as e:
        raise UsageError(f"{path}: {e.message}", path="--profiles") from None


def load_engine(rules: str, profiles: str | None = None, store: str | None = None,
                model: str | None = None, *, progress: bool = False) -> Any:
    """An :class:`Engine` over checked inputs; ``progress``: bars while profiles are indexed."""
    from ..engine import Engine

    rules_dir(rules)
    if model is not None:
        existing_dir(model, "--model", "model directory")
    if profiles is not None:
        open_profiles(profiles, rules, progress=progress)
    try:
        return Engine.load(rules, profiles=profiles, store=store, model=model)
    except ValueError as e:
        if store is not None and "store" in str(e):
            raise UsageError(str(e), path="--store") from None
        raise
    except TargetingError as e:
        if e.code == "bad_model":
            raise UsageError(e.message, path="--model") from None
        raise


def demo_profiles(rules: str) -> str:
    """The generated demo population ``serve``, ``reach`` and ``export`` fall back to
    without ``--profiles`` (made under ``$TARGETING_HOME/demo`` on first use, then reused)."""
    from ..population import ensure_demo_population
    from ..taxonomy import Taxonomy

    tx = Taxonomy.load(Path(rules_dir(rules)) / "taxonomy")
    return str(ensure_demo_population(home() / "demo", tx))


__all__ = ["check_profiles", "demo_profiles", "load_engine", "open_profiles"]
