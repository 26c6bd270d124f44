"""pyproject.toml declares what the code imports, and the core runs without the optional extras."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXTRAS = ("dask", "train")  # the optional parts; everything else is core (dev is for the tests)
OPTIONAL_MODULES = ("sklearn", "scipy", "dask", "distributed", "cloudpickle")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, set[str]]:
    """{"core" | extra: distribution names}, a requirement's own extras counted in (dask[distributed])."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **{e: project["optional-dependencies"][e] for e in EXTRAS}}
    out: dict[str, set[str]] = {}
    for group, reqs in groups.items():
        names: set[str] = set()
        for req in reqs:
            m = re.match(r"([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?", req)
            assert m, req
            names.add(_norm(m.group(1)))
            names.update(_norm(x) for x in (m.group(2) or "").split(",") if x.strip() and m.group(1) == "dask")
        out[group] = names
    return out


def _imports() -> list[tuple[Path, str, bool]]:
    """(file, top-level module, imported at module level) for every absolute import of the package."""
    found = []
    for f in [*(REPO / "targeting").rglob("*.py"), *(REPO / "service").rglob("*.py")]:
        tree = ast.parse(f.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(f, a.name.split(".")[0], id(node) in top) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.append((f, node.module.split(".")[0], id(node) in top))
    return found


def test_every_import_is_declared() -> None:
    declared = _declared()
    dists = packages_distributions()
    missing, eager = [], []
    for f, mod, module_level in _imports():
        if mod in sys.stdlib_module_names or mod in ("targeting", "service", "__future__"):
            continue
        names = {_norm(d) for d in dists.get(mod, [mod])}
        where = [g for g, ds in declared.items() if names & ds]
        if not where:
            missing.append(f"{f.relative_to(REPO)}: {mod}")
        elif module_level and "core" not in where:  # an extra imported at import time breaks the core
            eager.append(f"{f.relative_to(REPO)}: {mod} ({', '.join(where)})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert not eager, f"optional modules imported at module level: {eager}"


BLOCK = f"""
import sys
for name in {OPTIONAL_MODULES!r}:
    sys.modules[name] = None  # import fails as if not installed
from targeting.cli import main
sys.exit(main(sys.argv[1:]))
"""


def without_extras(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK, *argv], cwd=REPO, capture_output=True, text=True,
                          check=False)


def test_the_core_runs_without_the_extras(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from targeting.cli import main

    rules = str(REPO / "rules")
    log, model = tmp_path / "log.parquet", tmp_path / "model"  # a model trained with the extra ...
    assert main(["gen", "log", "--rules", rules, "--rows", "20000", "--out", str(log), "--quiet"]) == 0
    assert main(["train", str(log), "--rules", rules, "--out", str(model), "--quiet"]) == 0
    steps = [  # ... and everything else without it, the model included
        ["validate", "--rules", rules],
        ["gen", "population", "--rules", rules, "--users", "1000", "--out", str(tmp_path / "p.parquet")],
        ["gen", "requests", "--rules", rules, "--rows", "500", "--out", str(tmp_path / "r.parquet")],
        ["reach", "gender: female", "--rules", rules, "--profiles", str(tmp_path / "p.parquet")],
        ["export", "{}", "--rules", rules, "--profiles", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "a.csv")],
        ["score", str(tmp_path / "r.parquet"), "--rules", rules, "--model", str(model), "--out", str(tmp_path / "d.parquet")],
        ["decide", '{"user_id": "u1", "age": 30}', "--rules", rules, "--model", str(model)],
    ]
    for argv in steps:
        p = without_extras(*argv)
        assert p.returncode == 0, (argv, p.stderr)


@pytest.mark.parametrize("argv,needle", [
    (["train", "LOG", "--out", "OUT"], "error: train: train needs scikit-learn: pip install 'targeting[train]'"),
    (["score", "REQS", "--out", "OUT", "--scheduler", "tcp://127.0.0.1:1"],
     "error: --scheduler: --scheduler needs Dask: pip install 'targeting[dask]'"),
], ids=["train", "scheduler"])
def test_the_optional_parts_say_what_to_install(argv: list[str], needle: str, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data.parquet"
    pq.write_table(pa.table({"user_id": ["u1"]}), data)
    argv = [{"LOG": str(data), "REQS": str(data), "OUT": str(tmp_path / "out")}.get(a, a) for a in argv]
    p = without_extras(*argv, "--rules", str(REPO / "rules"))
    assert p.returncode == 2 and p.stderr.strip() == needle
