"""The commands but ``serve``: each reads its checked inputs, calls the library, prints.

Results go to stdout (JSON, or one ``wrote …`` line); progress bars and warnings to
stderr. Every command returns its exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from ..errors import RulesError, TargetingError
from ..progress import Progress
from . import inputs
from .inputs import CAMPAIGN_DOCS, UsageError
from .loading import demo_profiles, load_engine


def emit(value: Any, compact: bool = False) -> None:
    opts = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY | (0 if compact else orjson.OPT_INDENT_2)
    sys.stdout.write(orjson.dumps(value, option=opts).decode() + "\n")


def _one(positional: str | None, option: str | None, name: str) -> str:
    """An input given either as the positional ``name`` or as ``--name``, not both."""
    if positional and option and positional != option:
        raise UsageError(f"give {name} once, as an argument or as --{name.lower()}", path=name)
    if not (positional or option):
        raise UsageError(f"{name} is required", path=name)
    return positional or option or ""


def _audience_profiles(a: argparse.Namespace) -> str:
    """``--profiles``, else the demo population (``serve``'s), unless ``--no-demo``."""
    if a.profiles is not None:
        return str(a.profiles)
    if a.no_demo:
        raise UsageError("no profiles: pass --profiles PATH (or drop --no-demo to use the demo population)",
                         path="--profiles")
    return demo_profiles(a.rules)


def cmd_validate(a: argparse.Namespace) -> int:
    from ..rules import load_rules
    from ..taxonomy import Taxonomy

    tx = Taxonomy.load(Path(inputs.rules_dir(a.rules)) / "taxonomy")
    empty = inputs.empty_campaign_files(a.rules)
    for f in empty:
        inputs.warn(f"{f}: no campaigns in this file (it is empty); see {CAMPAIGN_DOCS} for the format")
    try:
        rs = load_rules(a.rules, tx)
    except RulesError as e:
        for p in e.problems:
            print(f"{p.file or '-'}: {p.campaign or '-'}: {p.path or '-'}: {p.reason}", file=sys.stderr)
        print(f"{len(e.problems)} error(s); nothing loaded (campaign format: {CAMPAIGN_DOCS})", file=sys.stderr)
        return 1
    cs = rs.campaigns
    active = sum(c.status == "active" for c in cs)
    files = len({c.source for c in cs})
    print(f"ok: {len(cs)} campaigns in {files} file(s) ({active} active, {len(cs) - active} paused), "
          f"{len({c.advertiser for c in cs})} advertisers, "
          f"{sum(len(c.clauses) for c in cs)} clauses; index version {rs.version}"
          + (f"; {len(empty)} empty file(s)" if empty else ""))
    return 0


def cmd_decide(a: argparse.Namespace) -> int:
    raw = inputs.read_requests(a.request)
    inputs.warn_empty_campaign_files(inputs.rules_dir(a.rules))
    engine = load_engine(a.rules, a.profiles, a.store, a.model, progress=not a.quiet)
    if a.explain and isinstance(raw, dict):
        raw = {**raw, "explain": True}
    emit(engine.decide_batch(raw) if isinstance(raw, list) else engine.decide(raw), a.compact)
    return 0


def cmd_reach(a: argparse.Namespace) -> int:
    spec = inputs.read_spec(a.spec)
    dims = inputs.breakdown(a.breakdown)
    engine = load_engine(a.rules, _audience_profiles(a), a.store, None, progress=not a.quiet)
    emit(engine.reach(spec, breakdown=dims, advertiser=a.advertiser), a.compact)
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    spec = inputs.read_spec(a.spec)
    # locally --out is one file; on Dask a directory of part-NNNNN files
    fmt = inputs.export_format(a.out, a.format, default="parquet" if a.scheduler else None)
    if Path(a.out).is_dir() and not a.scheduler:
        raise UsageError(f"{a.out} is a directory; --out names the file to write", path="--out")
    engine = load_engine(a.rules, _audience_profiles(a), a.store, None, progress=not a.quiet)
    client = inputs.scheduler(a.scheduler)
    bar = Progress("export", unit="ids", enabled=client is not None and not a.quiet)

    def shards_done(done: int, total: int) -> None:  # the Dask path reports whole shards
        if bar.total != total:
            bar.set_total(total)
        bar.update(done - bar.done)

    try:
        n = engine.export(spec, a.out, advertiser=a.advertiser, fmt=fmt, hash_salt=a.hash_salt,
                          scheduler=client, progress=client is None and not a.quiet, min_size=a.min_size,
                          on_progress=shards_done if client is not None else None)
    finally:
        bar.close()
        if client is not None:
            client.close()
    print(f"wrote {n} users to {a.out}")
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    from .. import batch

    requests = _one(a.requests_pos, a.requests, "REQUESTS")
    inputs.parquet(requests, "REQUESTS", recursive=True)
    inputs.warn_empty_campaign_files(inputs.rules_dir(a.rules))
    engine = load_engine(a.rules, a.profiles, a.store, a.model, progress=not a.quiet)
    client = inputs.scheduler(a.scheduler)
    try:
        result = batch.score(engine, requests, a.out, scheduler=client, summary=a.summary,
                             progress=not a.quiet, limit=a.limit, floor_cpm=a.floor_cpm)
    finally:
        if client is not None:
            client.close()
    emit(result)
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    if a.from_log is not None:  # the delivery log (targeting/delivery/train.py)
        inputs.existing_dir(a.from_log, "--from-log")
        from ..delivery.train import train_from_log

        emit(train_from_log(a.from_log, rules_dir=inputs.rules_dir(a.rules), out_dir=a.out, progress=not a.quiet))
        return 0
    log = _one(a.log_pos, a.log, "LOG")
    inputs.parquet(log, "LOG")
    inputs.rules_dir(a.rules)
    try:
        import sklearn  # noqa: F401  (the [train] extra)
    except ImportError:
        raise UsageError("train needs scikit-learn: pip install 'targeting[train]'", path="train") from None
    from .. import model

    try:
        metrics = model.train(log, rules_dir=a.rules, out_dir=a.out, progress=not a.quiet)
    except TargetingError as e:
        if e.code in ("missing_column", "one_class") or e.path == "log":  # the log's fault: name it
            raise UsageError(f"{log}: {e.message}", path="LOG") from None
        raise
    emit(metrics)
    return 0


def cmd_gen(a: argparse.Namespace) -> int:
    from ..taxonomy import Taxonomy

    tx = Taxonomy.load(Path(inputs.rules_dir(a.rules)) / "taxonomy")
    if a.what == "campaigns":
        from ..gen import generate_campaigns, write_campaigns

        paths = write_campaigns(generate_campaigns(a.n, tx, seed=a.seed), a.out)
        print(f"wrote {a.n} campaigns to {len(paths)} file(s) in {a.out}")
    elif a.what == "population":
        from .. import population as pop

        path = pop.generate_population(a.out, a.users, taxonomy=tx, seed=a.seed, shard_rows=a.shard_rows,
                                       progress=not a.quiet)
        print(f"wrote {a.users} profiles to {path}")
    elif a.what == "log":
        from .. import clicklog

        engine = load_engine(a.rules)
        emit(clicklog.generate_log(a.out, a.rows, engine=engine, seed=a.seed, progress=not a.quiet))
    else:
        from .. import clicklog

        clicklog.generate_requests(a.out, a.rows, taxonomy=tx, seed=a.seed, progress=not a.quiet)
        print(f"wrote {a.rows} requests to {a.out}")
    return 0


MAX_SHOWN_REJECTS = 20


def cmd_events_load(a: argparse.Namespace) -> int:
    from .. import events

    path = inputs.events_file(a.file)
    if a.store in (None, "", "memory", "memory://") and not a.dry_run:
        raise UsageError("events loaded into the in-memory store vanish when this command exits: pass "
                         "--store redis://host:port/db (the store `serve` uses), or --dry-run to only check "
                         "the file", path="--store")
    from ..delivery import attach, ingest

    engine = load_engine(a.rules, None, None if a.dry_run else a.store, None)

    def delivery() -> Any:  # rows with an impression_id are clicks: signed with the service's key
        return attach(engine, log_dir=a.log_dir, secret_file=a.notice_secret or inputs.home() / "notice-secret")

    accepted = rejected = clicks = 0
    with Progress("events", unit="events", enabled=not a.quiet) as bar:
        for rows in events.load_events_file(path):
            # a dry run records into a throwaway in-memory store
            result = ingest.record_rows(engine, rows, attach=delivery)
            errors, n_ok = result["errors"], result["accepted"]
            accepted += n_ok
            clicks += result["clicks"]
            for err in errors[: max(0, MAX_SHOWN_REJECTS - rejected)]:
                inputs.warn(f"{a.file}: {err.get('path') or '-'}: {err.get('message')}")
            rejected += len({e.get("index") for e in errors})  # rows, not problems
            bar.update(len(rows))
            bar.status(f"{rejected:,} rejected")
    if engine.delivery is not None:
        engine.delivery.close()
    verb = "checked" if a.dry_run else "loaded"
    if rejected and not accepted:
        raise UsageError(f"{a.file}: no valid event; {rejected} row(s) rejected", path="FILE")
    clicked = f" ({clicks} of them clicks)" if clicks else ""
    print(f"{verb} {accepted} events{clicked} from {a.file}; {rejected} row(s) rejected")
    return 0


__all__ = ["cmd_decide", "cmd_events_load", "cmd_export", "cmd_gen", "cmd_reach", "cmd_score", "cmd_train",
           "cmd_validate", "emit"]
