"""Delivery: signed impression ids, clicks, the Parquet delivery log, reports, training from it.

``attach(engine, log_dir=..., secret_file=...)`` turns it on for an engine (the
service does it at start-up); see docs/delivery.md.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from .ids import BadId as BadId
from .ids import Impression as Impression
from .ids import Signer as Signer
from .ids import load_secret as load_secret
from .log import LogWriter as LogWriter
from .recorder import Delivery as Delivery

DEFAULT_LOG_DIR = "var/log"
DEFAULT_SECRET = "var/notice-secret"


def attach(engine: Any, *, log_dir: str | Path | None = DEFAULT_LOG_DIR,
           secret_file: str | Path | None = DEFAULT_SECRET, key: bytes | None = None,
           **writer_options: Any) -> Delivery:
    """Give ``engine`` impression ids and (unless ``log_dir`` is None) a delivery log.

    The key is ``key``, else the hex key in ``secret_file`` (made once when absent).
    The log is flushed at exit; call ``engine.delivery.close()`` to flush it sooner."""
    if key is None:
        if secret_file is None:
            raise ValueError("impression ids need a key or a secret file")
        key = load_secret(secret_file)
    writer = LogWriter(log_dir, **writer_options) if log_dir is not None else None
    if writer is not None:
        atexit.register(writer.close)
    delivery = Delivery(Signer(key), writer, store=engine.store, clock=engine.clock)
    old = getattr(engine, "delivery", None)
    engine.delivery = delivery
    if old is not None:
        old.close()
    return delivery


def attach_from_env(engine: Any, env: Any) -> Delivery:
    """``attach`` as ``targeting serve`` configures it: ``TARGETING_LOG_DIR`` (``off``: no log),
    ``TARGETING_NOTICE_SECRET`` (default ``$TARGETING_HOME/notice-secret``), ``TARGETING_LOG_ROTATE_S``."""
    log_dir = env.get("TARGETING_LOG_DIR", DEFAULT_LOG_DIR)
    home = Path(env.get("TARGETING_HOME", "var"))
    options: dict[str, Any] = {}
    if env.get("TARGETING_LOG_ROTATE_S"):
        options["rotate_seconds"] = float(env["TARGETING_LOG_ROTATE_S"])
    return attach(engine, log_dir=None if log_dir in ("", "off") else log_dir,
                  secret_file=env.get("TARGETING_NOTICE_SECRET") or home / "notice-secret", **options)


__all__ = ["DEFAULT_LOG_DIR", "DEFAULT_SECRET", "BadId", "Delivery", "Impression", "LogWriter", "Signer",
           "attach", "attach_from_env", "load_secret"]
