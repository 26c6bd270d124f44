"""The ``targeting`` argument parser: every command, its flags and its help."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from .commands import (
    cmd_decide,
    cmd_events_load,
    cmd_export,
    cmd_gen,
    cmd_reach,
    cmd_score,
    cmd_train,
    cmd_validate,
)
from .inputs import CAMPAIGN_DOCS, whole
from .serve import cmd_serve

DEFAULT_RULES = "rules/"
DEMO = "the generated demo population, made on first use under $TARGETING_HOME/demo (./var/demo)"
SPEC_HELP = f"targeting spec: a YAML/JSON file, - for stdin, or inline YAML/JSON (format: {CAMPAIGN_DOCS})"
REQUEST_COLUMNS = "request_id, user_id, ts, province, city, gender, age, tags, scene, slot"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, as every other error
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="targeting", description="Ad targeting: decide, reach, export, score, serve.",
                epilog=f"Campaign files and targeting specs: {CAMPAIGN_DOCS}.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, fn: Callable[[argparse.Namespace], int], help_: str,
                *, rules: bool = True, profiles: str | None = None, store: bool = False, quiet: bool = True,
                parent: Any = None) -> argparse.ArgumentParser:
        sp = (parent or sub).add_parser(name, help=help_, description=help_,
                                        epilog=f"Campaign files and targeting specs: {CAMPAIGN_DOCS}.")
        sp.set_defaults(fn=fn)
        if rules:
            sp.add_argument("--rules", default=DEFAULT_RULES, metavar="DIR",
                            help="rules directory with taxonomy/ and campaigns/ (default: rules/)")
        if profiles is not None:
            sp.add_argument("--profiles", metavar="PATH",
                            help=f"profiles Parquet file or directory of shards (default: {profiles})")
        if store:
            sp.add_argument("--store", metavar="URL",
                            help="state store: memory:// (default) or redis://host:port/db")
        if quiet:
            sp.add_argument("--quiet", action="store_true",
                            help="no progress bars (they are drawn only on a terminal anyway)")
        return sp

    s = command("serve", cmd_serve, "Serve the HTTP API (endpoints: /docs once it runs).", profiles=DEMO,
                store=True, quiet=False)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=whole(1, 65535), default=8000, help="port (default 8000)")
    s.add_argument("--workers", type=whole(1), default=1, help="worker processes, at least 1 (default 1)")
    s.add_argument("--model", metavar="DIR", help="click model directory written by `targeting train`")
    s.add_argument("--auth", metavar="FILE",
                   help="API keys (YAML/JSON list of {key, role}, keys of 16+ characters); without it the "
                        "service runs open")
    s.add_argument("--no-demo", action="store_true",
                   help="without --profiles, serve no profiles instead of the generated demo population")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.add_argument("--access-log", action="store_true", help="log every request")
    s.add_argument("--log-dir", default="var/log", metavar="DIR",
                   help="delivery log directory (default var/log; 'off': no log); docs/delivery.md")
    s.add_argument("--log-rotate-seconds", type=float, metavar="S", help="finish log files this often (default 60)")
    s.add_argument("--notice-secret", metavar="FILE",
                   help="key that signs impression ids (made once when absent; default var/notice-secret)")

    command("validate", cmd_validate, "Check every campaign file; list every error (exit 1 on errors).",
            quiet=False)

    s = command("decide", cmd_decide, "Decide one request (JSON object), or a list / JSON lines of them.",
                profiles="none: requests carry their attributes", store=True)
    s.add_argument("request", nargs="?", default="-", metavar="REQUEST",
                   help="a JSON file, - for stdin (the default), or inline JSON")
    s.add_argument("--model", metavar="DIR", help="click model directory")
    s.add_argument("--explain", action="store_true", help="add explain: true to the request")
    s.add_argument("--compact", action="store_true", help="one-line JSON")

    for name, fn, help_ in (("reach", cmd_reach, "Exact audience size of a spec (operator view)."),
                            ("export", cmd_export, "Write the audience of a spec to Parquet or CSV.")):
        s = command(name, fn, help_, profiles=DEMO, store=True)
        s.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
        s.add_argument("--advertiser", help="whose retargeting events the spec may use")
        s.add_argument("--no-demo", action="store_true",
                       help="without --profiles, refuse instead of using the demo population `serve` uses")
        if name == "reach":
            s.add_argument("--breakdown", action="append", default=[], metavar="DIMS",
                           help="break counts down by province, city, gender, age or tag: "
                                "'province,gender' or repeat the flag; places and tags come keyed by "
                                "code, with their names in breakdown_names")
            s.add_argument("--compact", action="store_true", help="one-line JSON")
        else:
            s.add_argument("--out", required=True, metavar="PATH",
                           help="file to write: .parquet or .csv (another name needs --format); "
                                "with --scheduler, a directory of part files")
            s.add_argument("--format", choices=["parquet", "csv"], help="default: from --out's suffix")
            s.add_argument("--hash-salt", help="write salted SHA-256 of user ids instead of the ids")
            s.add_argument("--min-size", type=whole(0), default=0, help="refuse audiences smaller than this")
            s.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler address (needs targeting[dask])")

    s = command("score", cmd_score, "Decide a Parquet file of requests in batch.",
                profiles="none: requests carry their attributes", store=True)
    s.add_argument("requests_pos", nargs="?", metavar="REQUESTS",
                   help=f"requests Parquet file or directory; columns {REQUEST_COLUMNS}")
    s.add_argument("--requests", metavar="PATH", help="the same, as an option")
    s.add_argument("--out", required=True, metavar="PATH", help="decisions Parquet to write")
    s.add_argument("--limit", type=whole(1), default=10, help="decisions per request (default 10)")
    s.add_argument("--floor-cpm", type=float, default=0.0, help="drop decisions under this eCPM")
    s.add_argument("--model", metavar="DIR", help="click model directory")
    s.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler address (needs targeting[dask])")
    s.add_argument("--summary", action="store_true", help="print per-campaign totals")

    s = command("train", cmd_train, "Train the click model from a click log (needs targeting[train]).")
    s.add_argument("log_pos", nargs="?", metavar="LOG", help="click log Parquet: the request columns plus campaign_id, clicked (0/1)")
    s.add_argument("--log", metavar="PATH", help="the same, as an option")
    s.add_argument("--from-log", metavar="DIR", help="train on a delivery log directory (served impressions "
                   "joined with their clicks; docs/delivery.md) instead of a click log")
    s.add_argument("--out", required=True, metavar="DIR", help="model directory to write")

    g = sub.add_parser("gen", help="Generate synthetic data.", description="Generate synthetic data.")
    gsub = g.add_subparsers(dest="what", metavar="WHAT", parser_class=_Parser)
    gsub.required = True
    s = command("campaigns", cmd_gen, "Random valid campaigns (YAML files).", parent=gsub, quiet=False)
    s.add_argument("--n", type=whole(1), required=True, help="number of campaigns")
    s.add_argument("--out", required=True, metavar="DIR", help="directory to write YAML files into")
    s.add_argument("--seed", type=int, default=0)
    s = command("population", cmd_gen, "Synthetic user profiles (Parquet).", parent=gsub)
    s.add_argument("--users", type=whole(1), required=True)
    s.add_argument("--out", required=True, metavar="PATH", help="a .parquet file or a directory of shards")
    s.add_argument("--shard-rows", type=whole(1), default=1_000_000)
    s.add_argument("--seed", type=int, default=0)
    for what, help_ in (("log", "A synthetic click log for training (Parquet)."),
                        ("requests", "Synthetic requests for batch scoring (Parquet).")):
        s = command(what, cmd_gen, help_, parent=gsub)
        s.add_argument("--rows", type=whole(1), required=True)
        s.add_argument("--out", required=True, metavar="PATH")
        s.add_argument("--seed", type=int, default=0)

    e = sub.add_parser("events", help="Retargeting events.", description="Retargeting events.")
    esub = e.add_subparsers(dest="what", metavar="ACTION", parser_class=_Parser)
    esub.required = True
    s = command("load", cmd_events_load, "Load events from Parquet or JSON lines into the store.",
                store=True, parent=esub)
    s.add_argument("file", metavar="FILE", help="events: JSON lines or .parquet of {user_id, advertiser, event, ts}; "
                   "rows with an impression_id are clicks")
    s.add_argument("--dry-run", action="store_true",
                   help="check the file only (nothing is stored); needed to run without a --store")
    s.add_argument("--log-dir", default="var/log", metavar="DIR", help="delivery log for clicks (default var/log)")
    s.add_argument("--notice-secret", metavar="FILE",
                   help="the service's impression id key, for clicks (default var/notice-secret)")

    from ..delivery.commands import add_report

    add_report(command)  # `targeting report` (targeting/delivery/commands.py)
    return p


__all__ = ["DEFAULT_RULES", "build_parser"]
