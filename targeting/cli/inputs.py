"""What the commands read, checked at the door: every problem becomes a :class:`UsageError`
naming the flag (or argument) and the file, so ``main`` prints one ``error:`` line.

Each reader takes the name to blame (``--profiles``, ``SPEC``) and refuses, in that
order, a missing path, the wrong kind of path (a directory for a file and back), an
empty file and a file of the wrong format, before any real work starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .. import progress
from ..errors import TargetingError

CAMPAIGN_DOCS = "docs/campaigns.md"  # the campaign and targeting-spec reference


class UsageError(TargetingError):
    """A command-line problem: exit code 2."""


def home() -> Path:
    """Where generated demo data is cached: ``$TARGETING_HOME`` or ``./var``."""
    return Path(os.environ.get("TARGETING_HOME", "var"))


# ------------------------------------------------------------------ paths
def existing_file(path: str, flag: str) -> Path:
    """``path`` as a non-empty regular file."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such file: {path}", path=flag)
    if p.is_dir():
        raise UsageError(f"{path} is a directory, not a file", path=flag)
    if p.stat().st_size == 0:
        raise UsageError(f"{path} is empty", path=flag)
    return p


def existing_dir(path: str, flag: str, what: str = "directory") -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such {what}: {path}", path=flag)
    if not p.is_dir():
        raise UsageError(f"{path} is a file, not a {what}", path=flag)
    return p


def parquet(path: str, flag: str, *, recursive: bool = False) -> list[Path]:
    """The Parquet file at ``path``, or the ``*.parquet`` files of the directory ``path``
    (``recursive``: at any depth), each with a readable footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in (p.rglob if recursive else p.glob)("*.parquet")
                       if f.is_file() and not f.name.startswith("."))
        if not files:
            raise UsageError(f"no .parquet files in the directory {path}", path=flag)
    else:
        files = [existing_file(path, flag)]
    for f in files:
        if f.stat().st_size == 0:
            raise UsageError(f"{f} is empty", path=flag)
        try:
            pq.read_schema(f)
        except (OSError, ValueError, pa.ArrowException) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UsageError(f"{f} is not a Parquet file ({reason})", path=flag) from None
    return files


def rules_dir(path: str) -> str:
    d = existing_dir(path, "--rules", "rules directory")
    if not (d / "taxonomy").is_dir():
        raise UsageError(f"{path} has no taxonomy/ directory: pass --rules DIR, a directory with "
                         "taxonomy/ and campaigns/", path="--rules")
    return path


def empty_campaign_files(rules: str) -> list[Path]:
    """Campaign files with nothing in them but blanks, comments or ``[]`` (they load as no
    campaigns, which is rarely what was meant)."""
    cdir = Path(rules) / "campaigns"
    if not cdir.is_dir():
        return []
    empty = []
    for f in sorted(p for p in cdir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()):
        try:
            lines = f.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue  # load_rules reports it
        body = "".join(line.split("#", 1)[0].strip() for line in lines).replace("---", "")
        if body in ("", "[]", "~", "null"):
            empty.append(f)
    return empty


def warn(message: str) -> None:
    progress.write(f"warning: {message}")  # above any progress bar, not into it


def warn_empty_campaign_files(rules: str) -> None:
    for f in empty_campaign_files(rules):
        warn(f"{f}: no campaigns in this file (it is empty); see {CAMPAIGN_DOCS} for the format")


# ------------------------------------------------------------------ text inputs
def _looks_inline(text: str) -> bool:
    """Inline YAML/JSON rather than a file name: braces, brackets, a key or several lines."""
    t = text.strip()
    return t.startswith(("{", "[")) or "\n" in t or ": " in t or t.endswith(":")


def read_source(source: str, flag: str, what: str) -> str:
    """Text from a file, ``-`` (stdin) or the argument itself when it is inline YAML/JSON.

    A name that is no file and does not look like YAML/JSON is a missing file, not a spec."""
    if source == "-":
        return sys.stdin.read()
    p = Path(source)
    if p.exists() or not _looks_inline(source):
        existing_file(source, flag)
        try:
            return p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{source} is not a text file (a {what} is YAML or JSON)", path=flag) from None
    return source


def _origin(source: str) -> str:
    """How an input is named in its errors: the file, or "the inline spec"."""
    return "stdin" if source == "-" else source if Path(source).is_file() else "the inline text"


def read_spec(source: str, flag: str = "SPEC") -> Any:
    """A targeting spec from a YAML/JSON file, ``-`` or inline YAML/JSON."""
    import yaml

    text = read_source(source, flag, "targeting spec")
    where = _origin(source)
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as e:
        reason = " ".join(str(e).split())
        raise UsageError(f"{where} is not valid YAML/JSON: {reason}", path=flag) from None
    if spec is None:
        raise UsageError(f"{where} has no spec (use {{}} to match everyone; see {CAMPAIGN_DOCS})", path=flag)
    if not isinstance(spec, dict):
        raise UsageError(f"{where}: a targeting spec is a mapping such as '{{gender: female}}', not "
                         f"{type(spec).__name__} (see {CAMPAIGN_DOCS})", path=flag)
    return spec


def read_requests(source: str, flag: str = "REQUEST") -> Any:
    """One decide request (a JSON object), a list of them, or JSON lines; from a file,
    ``-`` or inline JSON."""
    text = read_source(source, flag, "request")
    where = _origin(source)
    if not text.strip():
        raise UsageError(f"{where} has no request: expected a JSON object, a list or JSON lines", path=flag)
    try:
        raw: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:  # JSON lines: one request per line
            raw = [orjson.loads(line) for line in text.splitlines() if line.strip()]
        except orjson.JSONDecodeError as e:
            raise UsageError(f"{where} is not JSON (an object, a list, or JSON lines): {e}", path=flag) from None
    if not isinstance(raw, (dict, list)):
        raise UsageError(f"{where}: a request is a JSON object (or a list of them), not {type(raw).__name__}",
                         path=flag)
    return raw


EVENT_COLUMNS = ("user_id", "advertiser", "event", "ts")


def events_file(path: str, flag: str = "FILE") -> Path:
    """A Parquet (``.parquet``/``.pq``) or JSON-lines events file whose first row parses."""
    p = existing_file(path, flag)
    if p.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        parquet(path, flag)
        missing = [c for c in EVENT_COLUMNS if c not in pq.read_schema(p).names]
        if missing:
            raise UsageError(f"{path} has no {', '.join(missing)} column(s); events have "
                             f"{', '.join(EVENT_COLUMNS)}", path=flag)
        return p
    with p.open("rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                raise UsageError(f"{path} is not JSON lines (line {n} is not JSON); events come as JSON lines "
                                 "or a .parquet file", path=flag) from None
            break
    return p


# ------------------------------------------------------------------ option values
def breakdown(values: list[str]) -> list[str]:
    """``--breakdown 'province, age' --breakdown tag`` → ``["province", "age", "tag"]``."""
    dims = [d.strip() for part in values for d in part.split(",")]
    return list(dict.fromkeys(d for d in dims if d))


def whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in ``[minimum, maximum]`` (``1_000`` allowed)."""
    def parse(text: str) -> int:
        try:
            v = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if v < minimum or (maximum is not None and v > maximum):
            raise argparse.ArgumentTypeError(
                f"must be >= {minimum}, not {v}" if maximum is None else f"must be {minimum}..{maximum}, not {v}")
        return v

    parse.__name__ = "whole number"  # argparse names the type in its message
    return parse


def export_format(out: str, fmt: str | None, default: str | None = None) -> str:
    """The export format: ``--format``, else ``--out``'s suffix (.parquet/.pq or .csv), else
    ``default`` (a Dask export writes a directory of parts, often named without a suffix)."""
    suffix = Path(out).suffix.lower()
    by_suffix = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}.get(suffix)
    if fmt is not None:
        if by_suffix is not None and by_suffix != fmt:
            raise UsageError(f"--format {fmt} does not match the file name {out}", path="--out")
        return fmt
    if by_suffix is None and default is not None:
        return default
    if by_suffix is None:
        raise UsageError(f"cannot tell the format of {out}: name it .parquet or .csv, or pass --format",
                         path="--out")
    return by_suffix


def scheduler(address: str | None) -> Any:
    """A connected ``distributed.Client`` for ``--scheduler`` (None without one)."""
    if address is None:
        return None
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs Dask: pip install 'targeting[dask]'", path="--scheduler") from None
    try:
        return Client(address, timeout="5s")
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {reason}", path="--scheduler") from None


__all__ = [
    "CAMPAIGN_DOCS", "UsageError", "breakdown", "empty_campaign_files", "events_file", "existing_dir",
    "existing_file", "export_format", "home", "parquet", "read_requests", "read_source", "read_spec",
    "rules_dir", "scheduler", "warn", "warn_empty_campaign_files", "whole",
]
