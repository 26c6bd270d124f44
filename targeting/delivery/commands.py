"""The delivery commands of the CLI, as library code: ``targeting report`` and
``targeting train --from-log``. ``targeting.cli`` only registers them
(:func:`add_report` builds the subcommand; ``train`` calls :func:`train_from_log`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from ..errors import TargetingError


def add_report(command: Any) -> None:
    """Register ``report`` with the CLI's ``command(name, fn, help, rules=...)`` helper."""
    s = command("report", cmd_report, "Delivery report from the log: impressions, clicks, CTR, spend, eCPM.",
                rules=False)
    s.add_argument("--log-dir", default="var/log", metavar="DIR", help="delivery log directory (default var/log)")
    s.add_argument("--from", dest="start", metavar="DATE", help="first day, YYYY-MM-DD (default: --to)")
    s.add_argument("--to", dest="end", metavar="DATE", help="last day, inclusive (default: today)")
    s.add_argument("--by", default="day", choices=["hour", "day", "total"])
    s.add_argument("--dims", default="", metavar="D,D", help="breakdown: campaign, advertiser, province, city, "
                   "gender, age_band, tag, scene, slot, hour, weekday")
    s.add_argument("--advertiser")
    s.add_argument("--campaign")
    s.add_argument("--tz", default="Asia/Shanghai", help="time zone of periods and dates (default Asia/Shanghai)")
    s.add_argument("--csv", action="store_true", help="CSV instead of JSON")
    s.add_argument("--compact", action="store_true", help="one-line JSON")


def cmd_report(a: argparse.Namespace) -> int:
    """The operator's view: exact counts (no privacy threshold), every advertiser."""
    from pathlib import Path

    from . import reports

    if not Path(a.log_dir).is_dir():
        raise TargetingError(f"no delivery log at {a.log_dir}", path="--log-dir")
    q = reports.parse_query({"from": a.start, "to": a.end, "by": a.by, "dims": a.dims, "tz": a.tz,
                             "advertiser": a.advertiser, "campaign": a.campaign})
    answer = reports.report(a.log_dir, start=q["start"], end=q["end"], by=q["by"], dims=q["dims"],
                            advertiser=q.get("advertiser"), campaign=q.get("campaign"), tz=q["tz"])
    for f in answer["skipped"]:
        print(f"warning: skipped unreadable file {f}", file=sys.stderr)
    if a.csv:
        sys.stdout.write(reports.to_csv(answer["rows"]))
    else:
        opts = 0 if a.compact else orjson.OPT_INDENT_2
        sys.stdout.write(orjson.dumps({"rows": answer["rows"]}, option=opts).decode() + "\n")
    return 0
