"""Every long job draws a bar on a terminal, and nothing with --quiet or when piped."""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import pytest

from targeting.cli import main

from .conftest import REPO


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("jobs")
    rules = str(REPO / "rules")
    assert main(["gen", "population", "--rules", rules, "--users", "3000", "--out", str(d / "p.parquet")]) == 0
    assert main(["gen", "requests", "--rules", rules, "--rows", "2000", "--out", str(d / "r.parquet")]) == 0
    assert main(["gen", "log", "--rules", rules, "--rows", "20000", "--out", str(d / "l.parquet")]) == 0
    (d / "e.jsonl").write_text('{"user_id": "u1", "advertiser": "acme-auto", "event": "visit", "ts": 1767225600}\n')
    return {"dir": d, "rules": REPO / "rules"}


# (job, its command line with {d} for the data directory, the bars it draws)
JOBS = [
    ("gen population", ["gen", "population", "--users", "3000", "--out", "{d}/out/p.parquet"], ["population"]),
    ("gen requests", ["gen", "requests", "--rows", "2000", "--out", "{d}/out/r.parquet"], ["requests"]),
    ("gen log", ["gen", "log", "--rows", "2000", "--out", "{d}/out/l.parquet"], ["click log"]),
    ("index build", ["reach", "{}", "--profiles", "{d}/out/fresh.parquet"], ["profiles", "index"]),
    ("export", ["export", "{}", "--profiles", "{d}/p.parquet", "--out", "{d}/out/a.parquet"], ["export"]),
    ("score", ["score", "{d}/r.parquet", "--out", "{d}/out/s.parquet"], ["score"]),
    ("train", ["train", "{d}/l.parquet", "--out", "{d}/out/model"], ["train"]),
    ("events load", ["events", "load", "{d}/e.jsonl", "--dry-run"], ["events"]),
]


@pytest.mark.parametrize("quiet", [False, True], ids=["bar", "quiet"])
@pytest.mark.parametrize("argv,bars", [j[1:] for j in JOBS], ids=[j[0] for j in JOBS])
def test_long_jobs_draw_bars(argv: list[str], bars: list[str], quiet: bool, data: dict[str, Path],
                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    d = data["dir"]
    out = d / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    shutil.copy(d / "p.parquet", out / "fresh.parquet")  # not indexed yet
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    args = [a.replace("{d}", str(d)) for a in argv] + ["--rules", str(data["rules"])] + (["--quiet"] if quiet else [])
    assert main(args) == 0, term.getvalue()
    drawn = term.getvalue()
    if quiet:
        assert drawn == ""
    else:
        for label in bars:
            assert f"{label}: " in drawn and "100%" in drawn or label == "events" and "events: 1" in drawn, drawn
    capsys.readouterr()


def test_no_bar_when_piped(data: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    d = data["dir"]
    assert main(["score", str(d / "r.parquet"), "--out", str(d / "piped.parquet"), "--rules", str(data["rules"])]) == 0
    assert capsys.readouterr().err == ""
