"""The ``targeting`` commands on good input, and their exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from targeting.cli import main

from .conftest import GOOD, REPO
from .conftest import make_rules as rules


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--rules", str(rules(tmp_path / "r")))
    assert code == 0
    assert out.startswith("ok: 2 campaigns in 1 file(s) (2 active, 0 paused), 2 advertisers")


def test_validate_lists_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = GOOD + [
        {"id": "x1", "advertiser": "acme", "bid": {"cpm": 1}, "category": "auto",
         "targeting": {"geo": {"include": ["atlantis"]}, "age": [[40, 30]]}},
        {"id": "x2", "advertiser": "acme", "bid": {"cpm": 1}, "category": "cars"},
    ]
    code, out, err = run(capsys, "validate", "--rules", str(rules(tmp_path / "r", bad)))
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert any(line.endswith("c.yaml: x1: targeting.geo.include[0]: unknown place 'atlantis'") or
               ("c.yaml: x1: targeting.geo.include[0]: unknown place" in line) for line in lines)
    assert any("c.yaml: x1: targeting.age[0]: inverted age range" in line for line in lines)
    assert any("c.yaml: x2: category: unknown category 'cars'" in line for line in lines)
    assert lines[-1] == "3 error(s); nothing loaded (campaign format: docs/campaigns.md)"


def test_validate_without_taxonomy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate", "--rules", str(tmp_path))
    assert code == 2 and err.startswith("error: --rules:") and "Traceback" not in err


def test_decide_from_file_and_stdin(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    r = str(rules(tmp_path / "r"))
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"user_id": "u1", "geo": {"city": "深圳"}, "gender": "female", "age": 30}))
    code, out, _ = run(capsys, "decide", "--rules", r, str(req), "--explain")
    assert code == 0
    answer = json.loads(out)
    assert [d["campaign_id"] for d in answer["decisions"]] == ["acme-spring", "bobco-cpc"]
    assert answer["explain"]["eligible"] == ["acme-spring", "bobco-cpc"]
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"user_id": "u1", "age": 30}\n{"user_id": "u2", "age": 70}\n'))
    code, out, _ = run(capsys, "decide", "--rules", r, "--compact")
    answers = json.loads(out)
    assert code == 0 and [len(a["decisions"]) for a in answers] == [1, 0]


@pytest.mark.parametrize("text,needle", [
    ('{"user_id": "u1", "age": -3}', "error: age: age is a whole number"),
    ('{"user_id": "u1", "ts": "2026-11-24T10:00:00"}', "error: ts: ts '2026-11-24T10:00:00' has no time zone"),
    ('{"user_id": "u1", "geo": {"city": "atlantis"}}', "error: geo.city: unknown place 'atlantis'"),
    ("{not json", "error: REQUEST: stdin is not JSON"),
], ids=["age", "ts-zone", "city", "json"])
def test_decide_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                          text: str, needle: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code, out, err = run(capsys, "decide", "--rules", str(rules(tmp_path / "r")))
    assert code == 2 and out == ""
    assert err.startswith(needle) and len(err.strip().splitlines()) == 1


def test_reach_without_profiles_or_demo_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "reach", "--rules", str(rules(tmp_path / "r")), '{"gender": "female"}', "--no-demo")
    assert code == 2 and err.startswith("error: --profiles: no profiles: pass --profiles PATH")


def test_reach_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "reach", "--rules", str(rules(tmp_path / "r")), "{age: [[40, 30]]}",
                       "--profiles", str(tmp_path / "missing.parquet"))
    assert code == 2 and err.startswith("error: --profiles: no such profiles file")


def test_gen_campaigns_writes_valid_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = rules(tmp_path / "r", [])
    code, out, _ = run(capsys, "gen", "campaigns", "--n", "250", "--out", str(r / "campaigns"), "--seed", "7")
    assert code == 0 and out.startswith("wrote 250 campaigns")
    code, out, _ = run(capsys, "validate", "--rules", str(r))
    assert code == 0 and out.startswith("ok: 250 campaigns")


@pytest.mark.parametrize("argv", [[], ["serve"], ["validate"], ["decide"], ["reach"], ["export"], ["score"],
                                  ["train"], ["gen"], ["gen", "campaigns"], ["gen", "population"], ["gen", "log"],
                                  ["gen", "requests"], ["events"], ["events", "load"]],
                         ids=lambda a: " ".join(a) or "top")
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    assert "usage: targeting" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["frobnicate"], ["gen", "campaigns", "--n", "many", "--out", "x"], ["serve", "--port", "http"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert "error:" in capsys.readouterr().err


def test_real_exit_code_and_no_traceback(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "targeting.cli", "decide", "--rules", str(rules(tmp_path / "r"))],
                       input='{"user_id": "u", "age": "old"}', capture_output=True, text=True, cwd=REPO, check=False)
    assert p.returncode == 2
    assert p.stderr.strip() == "error: age: age is a whole number of years 0..120, not 'old'"


EVENTS = (f'{{"user_id": "u1", "advertiser": "acme", "event": "visit", "ts": {time.time() - 3600:.0f}}}\n'
          '{"user_id": "", "advertiser": "nobody", "event": "visit"}\n')


def test_events_load_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "events.jsonl"
    f.write_text(EVENTS)
    code, out, err = run(capsys, "events", "load", "--rules", str(rules(tmp_path / "r")), str(f), "--dry-run")
    assert code == 0 and out.strip() == f"checked 1 events from {f}; 1 row(s) rejected"
    assert f"warning: {f}: events[1].user_id:" in err


@pytest.mark.redis
def test_events_load_into_redis(tmp_path: Path, capsys: pytest.CaptureFixture[str], fresh_redis: str) -> None:
    from targeting.stores import open_store

    f = tmp_path / "events.jsonl"
    f.write_text(EVENTS)
    code, out, _ = run(capsys, "events", "load", "--rules", str(rules(tmp_path / "r")), str(f), "--store", fresh_redis)
    assert code == 0 and out.strip() == f"loaded 1 events from {f}; 1 row(s) rejected"
    store = open_store(fresh_redis)
    assert "u1" in store.users_with_events("acme", {"visit"}, 0.0)


def test_gen_population(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("targeting.population")
    out = tmp_path / "pop.parquet"
    code, text, _ = run(capsys, "gen", "population", "--rules", str(rules(tmp_path / "r")), "--users", "500",
                        "--out", str(out), "--quiet")
    assert code == 0 and text.startswith("wrote 500 profiles")
    import pyarrow.parquet as pq

    assert pq.read_metadata(out).num_rows == 500


def test_score_takes_requests_as_argument_or_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = rules(tmp_path / "rules")
    reqs = tmp_path / "requests.parquet"
    assert run(capsys, "gen", "requests", "--rows", "50", "--out", str(reqs), "--rules", str(root))[0] == 0
    for i, how in enumerate(([str(reqs)], ["--requests", str(reqs)])):
        out = tmp_path / f"decisions-{i}.parquet"
        code, _, err = run(capsys, "score", *how, "--out", str(out), "--rules", str(root), "--limit", "1", "--quiet")
        assert code == 0, err
        assert out.exists()
    code, _, err = run(capsys, "score", "--out", str(tmp_path / "x.parquet"), "--rules", str(root))
    assert code == 2 and "REQUESTS is required" in err
    code, _, err = run(capsys, "train", "--out", str(tmp_path / "m"), "--rules", str(root))
    assert code == 2 and "LOG is required" in err
