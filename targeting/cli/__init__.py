"""The ``targeting`` command: a thin shell over :class:`targeting.Engine`.

Bad input (a wrong flag value, an invalid spec or request, a missing, empty or
wrong-kind file) ends with exit code 2 and one ``error: WHERE: WHY`` line on
stderr, never a traceback. ``validate`` exits 1 when the rules have errors.
Commands backed by optional extras (``targeting[dask]``, ``targeting[train]``)
say which to install when it is missing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from ..errors import RulesError, TargetingError
from ..progress import close_all
from .inputs import UsageError as UsageError
from .loading import load_engine as load_engine
from .parser import build_parser as build_parser

log = logging.getLogger("targeting.cli")


def _fail(where: str | None, reason: str) -> None:
    reason = " ".join(str(reason).split())  # one line, whatever the library's message
    print(f"error: {where}: {reason}" if where else f"error: {reason}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.fn(args))
    except RulesError as e:
        close_all()
        for p in e.problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    except TargetingError as e:
        close_all()
        for path, reason in getattr(e, "problems", None) or [(e.path, e.message)]:
            _fail(path, reason)
        return 2
    except OSError as e:
        close_all()
        _fail(str(e.filename) if e.filename else None, e.strerror or str(e) or type(e).__name__)
        return 2
    except KeyboardInterrupt:
        close_all()
        return 130
    except Exception as e:  # a bug, not bad input: one line, the traceback with --verbose
        close_all()
        if args.verbose:
            raise
        _fail(None, f"internal error {type(e).__name__}: {e} (run with --verbose for the traceback)")
        return 1


__all__ = ["UsageError", "build_parser", "load_engine", "main"]
