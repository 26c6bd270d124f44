"""The CLI rough edges of issue 14, one test (or a small table) each."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from targeting.cli import build_parser, main
from targeting.population import generate_population
from targeting.taxonomy import Taxonomy

from .conftest import REPO, Run


def test_truncated_profiles_are_one_error_line(tmp_path: Path, rules: Path, profiles: Path, run: Run) -> None:
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(profiles.read_bytes()[: profiles.stat().st_size // 2])
    for argv in (["reach", "{}"], ["export", "{}", "--out", str(tmp_path / "a.parquet")],
                 ["decide", '{"user_id": "u1"}']):
        code, _, err = run(*argv, "--rules", rules, "--profiles", cut)
        assert code == 2 and err.startswith(f"error: --profiles: {cut} is not a Parquet file"), err


@pytest.mark.parametrize("spec,needle", [
    ("nosuch.yaml", "error: SPEC: no such file: nosuch.yaml"),       # a name, not YAML: a missing file
    ("female", "error: SPEC: no such file: female"),                 # a bare word is a file name too
    ("gender: [", "error: SPEC: the inline text is not valid YAML"),  # looks inline: parsed, and refused
], ids=["missing-file", "bare-word", "broken-inline"])
def test_spec_that_is_no_file(spec: str, needle: str, rules: Path, profiles: Path, run: Run) -> None:
    code, _, err = run("reach", spec, "--rules", rules, "--profiles", profiles)
    assert code == 2 and err.startswith(needle), err


def test_specs_and_requests_are_file_stdin_or_inline_everywhere(tmp_path: Path, rules: Path, profiles: Path,
                                                                run: Run) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("gender: female\n")
    counts = {run("reach", s, "--rules", rules, "--profiles", profiles, "--compact")[1] for s in
              (str(spec), "gender: female", '{"gender": "female"}')}
    assert len(counts) == 1 and orjson.loads(counts.pop())["users"] > 0
    req = tmp_path / "req.json"
    req.write_text('{"user_id": "u1", "age": 30}')
    answers = {run("decide", r, "--rules", rules, "--compact")[1] for r in (str(req), '{"user_id": "u1", "age": 30}')}
    assert len(answers) == 1 and orjson.loads(answers.pop())["decisions"][0]["campaign_id"] == "bobco-cpc"


@pytest.mark.parametrize("out,fmt,written", [
    ("a.parquet", None, "parquet"),
    ("a.csv", None, "csv"),         # the format follows the suffix
    ("a.txt", "csv", "csv"),        # any name with --format
    ("a.txt", None, None),          # no guess: refused
    ("a.csv", "parquet", None),     # a contradiction: refused
], ids=["parquet", "csv", "txt-format-csv", "txt-refused", "mismatch-refused"])
def test_export_format(out: str, fmt: str | None, written: str | None, tmp_path: Path, rules: Path,
                       profiles: Path, run: Run) -> None:
    path = tmp_path / out
    code, text, err = run("export", "{}", "--out", path, "--rules", rules, "--profiles", profiles,
                          *(["--format", fmt] if fmt else []))
    if written is None:
        assert code == 2 and err.startswith("error: --out: ") and not path.exists()
        return
    assert code == 0 and text.startswith("wrote 2000 users"), err
    rows = pq.read_table(path) if written == "parquet" else pcsv.read_csv(path)
    assert rows.num_rows == 2000 and rows.column_names == ["user_id"]


def test_breakdown_takes_spaces_and_repeats(rules: Path, profiles: Path, run: Run) -> None:
    code, out, err = run("reach", "{}", "--rules", rules, "--profiles", profiles,
                         "--breakdown", "province, age", "--breakdown", " gender ,tag")
    assert code == 0, err
    assert list(orjson.loads(out)["breakdown"]) == ["province", "age", "gender", "tag"]


def test_breakdown_names(rules: Path, profiles: Path, run: Run, tx: Taxonomy) -> None:
    code, out, _ = run("reach", "{}", "--rules", rules, "--profiles", profiles, "--breakdown", "province,city,tag")
    assert code == 0
    answer = orjson.loads(out)
    names = answer["breakdown_names"]
    assert names["province"]["440000"] == "广东省" and names["tag"]["investor"] == "投资理财"
    for dim in ("province", "city"):
        coded = [k for k in answer["breakdown"][dim] if k != "unknown"]
        assert coded and names[dim] == {k: tx.places[int(k)].name for k in coded}
    assert names["tag"] == {t: tx.tags[t] for t in answer["breakdown"]["tag"]}


def test_breakdown_names_survive_the_advertiser_view() -> None:
    from targeting.audience.privacy import advertiser_view

    exact = {"users": 5000, "est_daily_impressions": 100.0, "population": 10_000, "funnel": None,
             "breakdown": {"province": {"440000": 4000, "110000": 40}},
             "breakdown_names": {"province": {"440000": "广东省", "110000": "北京市"}}, "audience_key": "k"}
    view = advertiser_view(exact, "spec", secret=b"s")
    assert view["breakdown_names"] == exact["breakdown_names"] and view["breakdown"]["province"]["110000"] is None


@pytest.mark.parametrize("argv", [
    ["serve", "--workers", "0"],
    ["serve", "--workers", "-2"],
    ["serve", "--port", "0"],
    ["serve", "--port", "70000"],
    ["score", "x.parquet", "--out", "y.parquet", "--limit", "0"],
    ["gen", "campaigns", "--n", "0", "--out", "x"],
], ids=lambda a: " ".join(a))
def test_counts_out_of_range(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: argument --")


def test_empty_campaign_file_warns(tmp_path: Path, rules: Path, run: Run) -> None:
    (rules / "campaigns" / "todo.yaml").write_text("# spring campaigns go here\n")
    code, out, err = run("validate", "--rules", rules)
    assert code == 0 and out.rstrip().endswith("; 1 empty file(s)")
    assert err == f"warning: {rules / 'campaigns' / 'todo.yaml'}: no campaigns in this file (it is empty); " \
                  "see docs/campaigns.md for the format\n"
    code, _, err = run("decide", '{"user_id": "u1"}', "--rules", rules)
    assert code == 0 and err.startswith("warning: ") and "todo.yaml" in err


def test_events_into_the_in_memory_store_are_refused(tmp_path: Path, rules: Path, run: Run) -> None:
    f = tmp_path / "events.jsonl"
    f.write_text('{"user_id": "u1", "advertiser": "acme", "event": "visit", "ts": 1767225600}\n')
    for store in ([], ["--store", "memory://"]):
        code, out, err = run("events", "load", f, "--rules", rules, *store)
        assert code == 2 and out == "" and err.startswith("error: --store: events loaded into the in-memory store")


def test_dead_scheduler_names_itself(tmp_path: Path, rules: Path, profiles: Path, run: Run) -> None:
    pytest.importorskip("distributed")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run("export", "{}", "--out", tmp_path / "a.parquet", "--rules", rules, "--profiles", profiles,
                       "--scheduler", f"tcp://127.0.0.1:{port}")
    assert code == 2 and err.startswith(f"error: --scheduler: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}")
    assert len(err.strip().splitlines()) == 1


def test_reach_and_export_fall_back_to_the_demo_population(tmp_path: Path, rules: Path, run: Run, tx: Taxonomy,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARGETING_HOME", str(tmp_path / "home"))
    # the demo population serve makes on first use, made small here ahead of time
    generate_population(tmp_path / "home" / "demo" / "population-200000-seed0", 700, taxonomy=tx, seed=0,
                        shard_rows=400, progress=False)
    code, out, err = run("reach", "{}", "--rules", rules, "--compact")
    assert code == 0 and orjson.loads(out)["users"] == 700, err
    code, out, _ = run("export", "{}", "--out", tmp_path / "a.csv", "--rules", rules)
    assert code == 0 and out.startswith("wrote 700 users")


def _help_texts() -> list[str]:
    texts = []

    def walk(parser: object) -> None:
        texts.append(parser.format_help())  # type: ignore[attr-defined]
        for action in parser._actions:  # type: ignore[attr-defined]
            for sub in (getattr(action, "choices", None) or {}).values() if hasattr(action, "add_parser") else ():
                walk(sub)

    walk(build_parser())
    return texts


def test_help_points_at_docs_never_at_the_contract() -> None:
    texts = _help_texts()
    assert len(texts) >= 14
    assert not [t for t in texts if "contract" in t.lower() or "§" in t]
    assert all("docs/campaigns.md" in t for t in texts if "SPEC" in t)
    sources = "".join(p.read_text(encoding="utf-8") for p in (REPO / "targeting" / "cli").glob("*.py"))
    assert "§" not in sources and "contract" not in sources.lower()


def test_cli_does_not_import_the_service() -> None:
    """Only serve reaches the service, and only when it runs (a thin CLI)."""
    for f in (REPO / "targeting").rglob("*.py"):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom) and not n.level]
        assert not [m for m in names if m.split(".")[0] == "service"], f
    code = ("import sys, targeting.cli; rc = targeting.cli.main(['validate', '--rules', 'rules']); "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('service', 'fastapi', 'uvicorn')], "
            "sorted(sys.modules); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr


def test_internal_errors_are_one_line_too(rules: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from targeting.engine import Engine

    def boom(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(Engine, "decide", boom)
    code, _, err = run("decide", '{"user_id": "u1"}', "--rules", rules)
    assert code == 1 and err == ("error: internal error ZeroDivisionError: oops "
                                 "(run with --verbose for the traceback)\n")



def test_train_on_a_log_without_clicks_names_the_file(tmp_path: Path, rules: Path, run: Run) -> None:
    import pyarrow as pa

    log = tmp_path / "requests.parquet"
    pq.write_table(pa.table({"user_id": ["u1"], "campaign_id": ["acme-spring"]}), log)
    code, _, err = run("train", log, "--out", tmp_path / "m", "--rules", rules)
    assert code == 2 and err == (f"error: LOG: {log}: the click log has no 'clicked' column (a click log has the "
                                 "request columns, campaign_id, clicked 0/1)\n")


def test_export_on_a_dask_cluster_with_a_bar(tmp_path: Path, rules: Path, profiles: Path, run: Run,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    distributed = pytest.importorskip("distributed")
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        term = Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        code, out, _ = run("export", "{}", "--out", tmp_path / "aud", "--rules", rules, "--profiles", profiles,
                           "--scheduler", cluster.scheduler_address)
    assert code == 0 and out.startswith("wrote 2000 users"), term.getvalue()
    assert "export: 100%" in term.getvalue()
    parts = sorted((tmp_path / "aud").glob("part-*.parquet"))
    assert parts and sum(pq.read_metadata(p).num_rows for p in parts) == 2000
