"""Every command, every file it reads, four ways wrong: one ``error: FLAG: …`` line, exit 2.

Each row names a command line with ``@`` where the bad path goes and the flag (or
argument) the error must blame; each bad path is one of: missing, a directory where a
file belongs (or an empty directory where a directory of data belongs), an empty
file, and a file of the wrong kind (text for Parquet, Parquet for JSON/YAML, a file
for a directory).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .conftest import Run

# (command line, flag blamed, what the slot expects: parquet | text | dir)
ROWS = [
    # rules directories, for every command that reads them
    (["validate", "--rules", "@"], "--rules", "dir"),
    (["serve", "--no-demo", "--rules", "@"], "--rules", "dir"),
    (["decide", "--rules", "@", '{"user_id": "u1"}'], "--rules", "dir"),
    (["reach", "--rules", "@", "{}"], "--rules", "dir"),
    (["export", "--rules", "@", "{}", "--out", "OUT/a.parquet"], "--rules", "dir"),
    (["score", "--rules", "@", "REQS", "--out", "OUT/d.parquet"], "--rules", "dir"),
    (["train", "--rules", "@", "LOG", "--out", "OUT/m"], "--rules", "dir"),
    (["gen", "campaigns", "--rules", "@", "--n", "3", "--out", "OUT/c"], "--rules", "dir"),
    (["gen", "population", "--rules", "@", "--users", "3", "--out", "OUT/p.parquet"], "--rules", "dir"),
    (["gen", "requests", "--rules", "@", "--rows", "3", "--out", "OUT/r.parquet"], "--rules", "dir"),
    (["gen", "log", "--rules", "@", "--rows", "3", "--out", "OUT/l.parquet"], "--rules", "dir"),
    (["events", "load", "--rules", "@", "EVENTS", "--dry-run"], "--rules", "dir"),
    # profiles: a Parquet file or a directory of them
    (["serve", "--rules", "RULES", "--profiles", "@"], "--profiles", "parquet"),
    (["decide", "--rules", "RULES", "--profiles", "@", '{"user_id": "u1"}'], "--profiles", "parquet"),
    (["reach", "--rules", "RULES", "--profiles", "@", "{}"], "--profiles", "parquet"),
    (["export", "--rules", "RULES", "--profiles", "@", "{}", "--out", "OUT/a.parquet"], "--profiles", "parquet"),
    (["score", "--rules", "RULES", "--profiles", "@", "REQS", "--out", "OUT/d.parquet"], "--profiles", "parquet"),
    # the other data files
    (["score", "--rules", "RULES", "@", "--out", "OUT/d.parquet"], "REQUESTS", "parquet"),
    (["train", "--rules", "RULES", "@", "--out", "OUT/m"], "LOG", "parquet"),
    (["decide", "--rules", "RULES", "@"], "REQUEST", "text"),
    (["reach", "--rules", "RULES", "--profiles", "PROFILES", "@"], "SPEC", "text"),
    (["export", "--rules", "RULES", "--profiles", "PROFILES", "@", "--out", "OUT/a.parquet"], "SPEC", "text"),
    (["events", "load", "--rules", "RULES", "@", "--dry-run"], "FILE", "text"),
    (["serve", "--no-demo", "--rules", "RULES", "--auth", "@"], "--auth", "text"),
    # model directories
    (["serve", "--no-demo", "--rules", "RULES", "--model", "@"], "--model", "dir"),
    (["decide", "--rules", "RULES", "--model", "@", '{"user_id": "u1"}'], "--model", "dir"),
    (["score", "--rules", "RULES", "--model", "@", "REQS", "--out", "OUT/d.parquet"], "--model", "dir"),
]
KINDS = ["missing", "directory", "empty", "wrong-kind"]


def bad_path(tmp: Path, kind: str, expects: str) -> Path:
    if kind == "missing":
        return tmp / "missing"
    if kind == "directory":  # a directory in place of a file, or an empty one in place of a data directory
        (tmp / "adir").mkdir()
        return tmp / "adir"
    if kind == "empty":
        (tmp / "empty").touch()
        return tmp / "empty"
    if expects == "text":  # Parquet bytes where YAML or JSON belongs
        pq.write_table(pa.table({"x": [1, 2]}), tmp / "data.parquet")
        return tmp / "data.parquet"
    (tmp / "notes.txt").write_text("these are not the rows you are looking for\n")
    return tmp / "notes.txt"


@pytest.fixture
def slots(tmp_path: Path, rules: Path, profiles: Path) -> dict[str, str]:
    """Good values for the slots a row does not test."""
    events = tmp_path / "events.jsonl"
    events.write_text('{"user_id": "u1", "advertiser": "acme", "event": "visit", "ts": 1767225600}\n')
    reqs = tmp_path / "requests.parquet"
    pq.write_table(pa.table({"user_id": ["u1"]}), reqs)
    return {"RULES": str(rules), "PROFILES": str(profiles), "EVENTS": str(events), "REQS": str(reqs),
            "LOG": str(reqs), "OUT": str(tmp_path / "out")}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("argv,flag,expects", ROWS, ids=[f"{' '.join(r[0][:2])}-{r[1]}" for r in ROWS])
def test_one_error_line(argv: list[str], flag: str, expects: str, kind: str, tmp_path: Path, run: Run,
                        slots: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("serve started on a bad input")

    monkeypatch.setattr(uvicorn, "run", no_server)
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = bad_path(bad_dir, kind, expects)
    args = []
    for a in argv:
        for slot, value in slots.items():
            a = a.replace(slot, value) if a == slot or a.startswith(f"{slot}/") else a
        args.append(str(bad) if a == "@" else a)
    code, out, err = run(*args)
    assert (code, out) == (2, ""), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}: "), err
    assert bad.name in lines[0]
