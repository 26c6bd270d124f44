"""The ``targeting`` command (contract §6): a thin shell over :class:`targeting.Engine`.

Bad input (a wrong flag value, an invalid spec or request, a missing file) ends
with exit code 2 and one line per error on stderr, never a traceback. ``validate``
exits 1 when the rules have errors. Commands backed by optional parts of the
product (audience, model, batch scoring, events) import them on use and say so
clearly when they are not installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import orjson

from .errors import RulesError, TargetingError

log = logging.getLogger("targeting.cli")
DEFAULT_RULES = "rules/"


class UsageError(TargetingError):
    """A command-line problem: exit code 2."""


# ------------------------------------------------------------------ helpers
def _one(positional: str | None, option: str | None, name: str) -> str:
    """An input given either as the positional ``name`` or as ``--name``, not both."""
    if positional and option and positional != option:
        raise UsageError(f"give {name} once, as an argument or as --{name.lower()}", path=name)
    if not (positional or option):
        raise UsageError(f"{name} is required", path=name)
    return positional or option or ""


def home() -> Path:
    """Where generated demo data is cached: ``$TARGETING_HOME`` or ``./var``."""
    return Path(os.environ.get("TARGETING_HOME", "var"))


def load_engine(rules: str, profiles: str | None = None, store: str | None = None,
                model: str | None = None) -> Any:
    """``Engine.load`` with command-line errors: unknown store URLs, missing paths.

    """
    from .engine import Engine

    if not (Path(rules) / "taxonomy").is_dir():
        raise UsageError(f"{rules!r} has no taxonomy/ directory: pass --rules DIR (a rules directory)",
                         path="--rules")
    if profiles is not None and not Path(profiles).exists():
        raise UsageError(f"no such profiles file or directory: {profiles}", path="--profiles")
    if model is not None and not Path(model).is_dir():
        raise UsageError(f"no such model directory: {model}", path="--model")
    try:
        return Engine.load(rules, profiles=profiles, store=store, model=model)
    except ValueError as e:
        if store is not None and "store" in str(e):
            raise UsageError(str(e), path="--store") from None
        raise


def demo_profiles(rules: str) -> str:
    """The generated demo population (made on first use, then reused)."""
    from .population import ensure_demo_population
    from .taxonomy import Taxonomy

    tx = Taxonomy.load(Path(rules) / "taxonomy")
    return str(ensure_demo_population(home() / "demo", tx))


def read_text(source: str) -> str:
    """A file's text, or stdin for ``-``."""
    if source == "-":
        return sys.stdin.read()
    p = Path(source)
    if not p.is_file():
        raise UsageError(f"no such file: {source}", path=source)
    return p.read_text(encoding="utf-8")


def read_spec(source: str) -> Any:
    """A spec from a YAML/JSON file, ``-`` (stdin) or inline YAML/JSON text."""
    import yaml

    text = read_text(source) if source == "-" or Path(source).is_file() else source
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UsageError(f"the spec is not valid YAML/JSON: {e}".replace("\n", " "), path="spec") from None


def emit(value: Any, compact: bool = False) -> None:
    opts = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY | (0 if compact else orjson.OPT_INDENT_2)
    sys.stdout.write(orjson.dumps(value, option=opts).decode() + "\n")


def positive_int(text: str) -> int:
    try:
        v = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {v}")
    return v


# ----------------------------------------------------------------- commands
def cmd_serve(a: argparse.Namespace) -> int:
    import uvicorn

    from service.auth import KeyRing

    if a.auth is not None:
        KeyRing.load(a.auth)  # fail now, with the file's problem, not in a worker
    load_engine(a.rules, None, None, None)  # validate rules before binding the port
    profiles = a.profiles
    if profiles is None and not a.no_demo:
        profiles = demo_profiles(a.rules)
    # one privacy-noise secret for all workers of this server (an operator may pin one)
    os.environ.setdefault("TARGETING_PRIVACY_SECRET", secrets.token_hex(32))
    if a.workers > 1:  # a reload answered by one worker reaches the others through this file
        os.environ["TARGETING_RELOAD_SIGNAL"] = str(Path(tempfile.mkdtemp(prefix="targeting-serve-")) / "reload")
    env = {"TARGETING_RULES": a.rules, "TARGETING_PROFILES": profiles, "TARGETING_STORE": a.store,
           "TARGETING_MODEL": a.model, "TARGETING_AUTH": a.auth,
           "TARGETING_LOG_DIR": a.log_dir, "TARGETING_NOTICE_SECRET": a.notice_secret,  # targeting.delivery
           "TARGETING_LOG_ROTATE_S": a.log_rotate_seconds}
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = str(v)
    uvicorn.run("service.main:from_env", factory=True, host=a.host, port=a.port, workers=a.workers,
                log_level=a.log_level, access_log=a.access_log)
    return 0


def cmd_validate(a: argparse.Namespace) -> int:
    from .rules import load_rules
    from .taxonomy import Taxonomy

    tdir = Path(a.rules) / "taxonomy"
    if not tdir.is_dir():
        raise UsageError(f"{a.rules!r} has no taxonomy/ directory", path="--rules")
    tx = Taxonomy.load(tdir)
    try:
        rs = load_rules(a.rules, tx)
    except RulesError as e:
        for p in e.problems:
            print(f"{p.file or '-'}: {p.campaign or '-'}: {p.path or '-'}: {p.reason}", file=sys.stderr)
        print(f"{len(e.problems)} error(s); nothing loaded", file=sys.stderr)
        return 1
    cs = rs.campaigns
    active = sum(c.status == "active" for c in cs)
    files = len({c.source for c in cs})
    print(f"ok: {len(cs)} campaigns in {files} file(s) ({active} active, {len(cs) - active} paused), "
          f"{len({c.advertiser for c in cs})} advertisers, "
          f"{sum(len(c.clauses) for c in cs)} clauses; index version {rs.version}")
    return 0


def cmd_decide(a: argparse.Namespace) -> int:
    text = read_text(a.request)
    try:
        raw: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:  # JSON lines: one request per line
            raw = [orjson.loads(line) for line in text.splitlines() if line.strip()]
        except orjson.JSONDecodeError as e:
            raise UsageError(f"the request is not JSON (an object, a list, or JSON lines): {e}",
                             path="request") from None
    engine = load_engine(a.rules, a.profiles, a.store, a.model)
    if a.explain and isinstance(raw, dict):
        raw = {**raw, "explain": True}
    emit(engine.decide_batch(raw) if isinstance(raw, list) else engine.decide(raw), a.compact)
    return 0


def cmd_reach(a: argparse.Namespace) -> int:
    spec = read_spec(a.spec)
    engine = load_engine(a.rules, a.profiles, a.store, None)
    breakdown = [d for part in a.breakdown for d in part.split(",") if d]
    emit(engine.reach(spec, breakdown=breakdown, advertiser=a.advertiser), a.compact)
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    spec = read_spec(a.spec)
    engine = load_engine(a.rules, a.profiles, a.store, None)
    fmt = a.format or ("csv" if a.out.endswith(".csv") else "parquet")
    n = engine.export(spec, a.out, advertiser=a.advertiser, fmt=fmt, hash_salt=a.hash_salt,
                      scheduler=a.scheduler, progress=not a.quiet, min_size=a.min_size)
    print(f"wrote {n} users to {a.out}")
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    from . import batch

    requests = _one(a.requests_pos, a.requests, "REQUESTS")
    engine = load_engine(a.rules, a.profiles, a.store, a.model)
    result = batch.score(engine, requests, a.out, scheduler=a.scheduler, summary=a.summary,
                         progress=not a.quiet, limit=a.limit, floor_cpm=a.floor_cpm)
    emit(result)
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from . import model

    if a.from_log is not None:  # the delivery log (targeting/delivery/train.py)
        from .delivery.train import train_from_log

        emit(train_from_log(a.from_log, rules_dir=a.rules, out_dir=a.out, progress=not a.quiet))
        return 0
    a.log = _one(a.log_pos, a.log, "LOG")
    if not Path(a.log).exists():
        raise UsageError(f"no such click log: {a.log}", path="--log")
    emit(model.train(a.log, rules_dir=a.rules, out_dir=a.out, progress=not a.quiet))
    return 0


def cmd_gen(a: argparse.Namespace) -> int:
    from .taxonomy import Taxonomy

    tx = Taxonomy.load(Path(a.rules) / "taxonomy")
    if a.what == "campaigns":
        from .gen import generate_campaigns, write_campaigns

        paths = write_campaigns(generate_campaigns(a.n, tx, seed=a.seed), a.out)
        print(f"wrote {a.n} campaigns to {len(paths)} file(s) in {a.out}")
    elif a.what == "population":
        from . import population as pop

        path = pop.generate_population(a.out, a.users, taxonomy=tx, seed=a.seed, shard_rows=a.shard_rows,
                                       progress=not a.quiet)
        print(f"wrote {a.users} profiles to {path}")
    elif a.what == "log":
        from . import clicklog

        engine = load_engine(a.rules)
        emit(clicklog.generate_log(a.out, a.rows, engine=engine, seed=a.seed, progress=not a.quiet))
    else:
        from . import clicklog

        clicklog.generate_requests(a.out, a.rows, taxonomy=tx, seed=a.seed, progress=not a.quiet)
        print(f"wrote {a.rows} requests to {a.out}")
    return 0


def cmd_events_load(a: argparse.Namespace) -> int:
    from . import events

    if not Path(a.file).is_file():
        raise UsageError(f"no such events file: {a.file}", path="FILE")
    from .delivery import attach, ingest

    engine = load_engine(a.rules, None, a.store, None)
    # rows with an impression_id are clicks (targeting.delivery.ingest): signed with the service's key,
    # logged under --log-dir
    def delivery() -> Any:
        return attach(engine, log_dir=a.log_dir, secret_file=a.notice_secret or home() / "notice-secret")

    accepted, errors, clicks = 0, 0, 0
    for batch in events.load_events_file(a.file):
        result = ingest.record_rows(engine, batch, attach=delivery)
        accepted += result["accepted"]
        clicks += result["clicks"]
        for err in result["errors"][: max(0, 20 - errors)]:
            print(f"{a.file}: {err.get('path') or '-'}: {err.get('message')}", file=sys.stderr)
        errors += len({e.get("index") for e in result["errors"]})  # rows, not problems
        if not a.quiet:
            print(f"\revents: {accepted:,} stored, {errors:,} rejected", end="", file=sys.stderr, flush=True)
    if not a.quiet:
        print(file=sys.stderr)
    if engine.delivery is not None:
        engine.delivery.close()
    clicked = f" ({clicks} of them clicks)" if clicks else ""
    print(f"loaded {accepted} events{clicked} from {a.file}; {errors} row(s) rejected")
    return 0 if accepted or not errors else 2


# ------------------------------------------------------------------ parser
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="targeting", description="Ad targeting: decide, reach, export, score, serve.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, fn: Callable[[argparse.Namespace], int], help_: str,
                *, rules: bool = True, profiles: bool = False, store: bool = False,
                parent: Any = None) -> argparse.ArgumentParser:
        sp = (parent or sub).add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        if rules:
            sp.add_argument("--rules", default=DEFAULT_RULES, metavar="DIR",
                            help="rules directory with taxonomy/ and campaigns/ (default: rules/)")
        if profiles:
            sp.add_argument("--profiles", metavar="PATH", help="profiles Parquet file or directory of shards")
        if store:
            sp.add_argument("--store", metavar="URL",
                            help="state store: memory:// (default) or redis://host:port/db")
        return sp

    s = command("serve", cmd_serve, "Serve the HTTP API (contract §4).", profiles=True, store=True)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    s.add_argument("--model", metavar="DIR", help="click model directory written by `targeting train`")
    s.add_argument("--auth", metavar="FILE",
                   help="API keys (YAML/JSON list of {key, role}); without it the service runs open")
    s.add_argument("--no-demo", action="store_true",
                   help="without --profiles, serve no profiles instead of the generated demo population")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.add_argument("--access-log", action="store_true", help="log every request")
    s.add_argument("--log-dir", default="var/log", metavar="DIR",
                   help="delivery log directory (default var/log; 'off': no log)")
    s.add_argument("--log-rotate-seconds", type=float, metavar="S", help="finish log files this often (default 60)")
    s.add_argument("--notice-secret", metavar="FILE",
                   help="key that signs impression ids (made once when absent; default $TARGETING_HOME/notice-secret)")

    command("validate", cmd_validate, "Check every campaign file; list every error (exit 1 on errors).")

    s = command("decide", cmd_decide, "Decide one request (JSON object), or a list / JSON lines of them.",
                profiles=True, store=True)
    s.add_argument("request", nargs="?", default="-", help="JSON file (default: stdin)")
    s.add_argument("--model", metavar="DIR", help="click model directory")
    s.add_argument("--explain", action="store_true", help="add explain: true to the request")
    s.add_argument("--compact", action="store_true", help="one-line JSON")

    for name, fn, help_ in (("reach", cmd_reach, "Exact audience size of a spec (operator view)."),
                            ("export", cmd_export, "Write the audience of a spec to Parquet or CSV.")):
        s = command(name, fn, help_, profiles=True, store=True)
        s.add_argument("spec", help="spec: a YAML/JSON file, - for stdin, or inline YAML/JSON")
        s.add_argument("--advertiser", help="whose retargeting events the spec may use")
        if name == "reach":
            s.add_argument("--breakdown", action="append", default=[], metavar="DIMS",
                           help="break counts down by dimension(s), e.g. province,gender (repeatable)")
            s.add_argument("--compact", action="store_true", help="one-line JSON")
        else:
            s.add_argument("--out", required=True, metavar="PATH", help="output file (.parquet or .csv)")
            s.add_argument("--format", choices=["parquet", "csv"], help="default: from --out's suffix")
            s.add_argument("--hash-salt", help="write salted SHA-256 of user ids instead of the ids")
            s.add_argument("--min-size", type=positive_int, default=0, help="refuse audiences smaller than this")
            s.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler address")
            s.add_argument("--quiet", action="store_true", help="no progress bar")

    s = command("score", cmd_score, "Decide a Parquet file of requests in batch.", profiles=True, store=True)
    s.add_argument("requests_pos", nargs="?", metavar="REQUESTS", help="requests Parquet (contract §5)")
    s.add_argument("--requests", metavar="PATH", help="the same, as an option")
    s.add_argument("--out", required=True, metavar="PATH", help="decisions Parquet to write")
    s.add_argument("--limit", type=positive_int, default=10, help="decisions per request (default 10)")
    s.add_argument("--floor-cpm", type=float, default=0.0, help="drop decisions under this eCPM")
    s.add_argument("--model", metavar="DIR", help="click model directory")
    s.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler address")
    s.add_argument("--summary", action="store_true", help="print per-campaign totals")
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    s = command("train", cmd_train, "Train the click model from a click log.")
    s.add_argument("log_pos", nargs="?", metavar="LOG", help="click log Parquet (contract §5)")
    s.add_argument("--log", metavar="PATH", help="the same, as an option")
    s.add_argument("--from-log", metavar="DIR", help="train on a delivery log directory (served impressions "
                   "joined with their clicks) instead of a click log")
    s.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    g = sub.add_parser("gen", help="Generate synthetic data.", description="Generate synthetic data.")
    gsub = g.add_subparsers(dest="what", metavar="WHAT", parser_class=_Parser)
    gsub.required = True
    s = command("campaigns", cmd_gen, "Random valid campaigns (YAML files).", parent=gsub)
    s.add_argument("--n", type=positive_int, required=True, help="number of campaigns")
    s.add_argument("--out", required=True, metavar="DIR", help="directory to write YAML files into")
    s.add_argument("--seed", type=int, default=0)
    s = command("population", cmd_gen, "Synthetic user profiles (Parquet).", parent=gsub)
    s.add_argument("--users", type=positive_int, required=True)
    s.add_argument("--out", required=True, metavar="PATH", help="a .parquet file or a directory of shards")
    s.add_argument("--shard-rows", type=positive_int, default=1_000_000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true")
    for what, help_ in (("log", "A synthetic click log for training (Parquet)."),
                        ("requests", "Synthetic requests for batch scoring (Parquet).")):
        s = command(what, cmd_gen, help_, parent=gsub)
        s.add_argument("--rows", type=positive_int, required=True)
        s.add_argument("--out", required=True, metavar="PATH")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--quiet", action="store_true")

    e = sub.add_parser("events", help="Retargeting events.", description="Retargeting events.")
    esub = e.add_subparsers(dest="what", metavar="ACTION", parser_class=_Parser)
    esub.required = True
    s = command("load", cmd_events_load, "Load events from Parquet or JSON lines into the store.",
                store=True, parent=esub)
    s.add_argument("file", metavar="FILE")
    s.add_argument("--quiet", action="store_true", help="no progress line")
    s.add_argument("--log-dir", default="var/log", metavar="DIR", help="delivery log for clicks (default var/log)")
    s.add_argument("--notice-secret", metavar="FILE", help="the service's impression id key (for clicks)")

    from .delivery.commands import add_report

    add_report(command)  # `targeting report` (targeting/delivery/commands.py)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.fn(args))
    except RulesError as e:
        for p in e.problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    except TargetingError as e:
        for path, reason in getattr(e, "problems", None) or [(e.path, e.message)]:
            print(f"error: {path}: {reason}" if path else f"error: {reason}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "load_engine", "main"]
