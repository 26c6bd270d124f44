"""``service.main:from_env``: the app factory ``targeting serve`` hands to uvicorn.

Each uvicorn worker process calls it once; configuration comes from the
environment the CLI set (``TARGETING_RULES``, ``TARGETING_PROFILES``,
``TARGETING_STORE``, ``TARGETING_MODEL``, ``TARGETING_AUTH``, ``TARGETING_BENCH``,
``TARGETING_OFFLOAD``, ``TARGETING_RELOAD_SIGNAL`` (a file the workers share, see
workers.py), ``TARGETING_PRIVACY_SECRET`` (hex; the CLI makes one per
``serve`` so every worker adds the same noise to the same reach query),
``TARGETING_AUDIENCE_POOL`` (``process`` or ``thread``: where reach runs, see
offload.py) and ``TARGETING_AUDIENCE_WORKERS``, ``TARGETING_EXPORT_TTL`` (seconds a
finished export file is kept), ``TARGETING_EXPORT_CONCURRENT`` and ``TARGETING_EXPORT_DAILY``
(per-advertiser export job quotas; see targeting/audience/jobs.py)).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from .app import Settings, create_app
from .auth import KeyRing


def from_env(env: Mapping[str, str] | None = None) -> FastAPI:
    from targeting.cli import load_engine

    env = os.environ if env is None else env
    engine = load_engine(env.get("TARGETING_RULES", "rules/"), env.get("TARGETING_PROFILES") or None,
                         env.get("TARGETING_STORE") or None, env.get("TARGETING_MODEL") or None)
    from targeting.delivery import attach_from_env

    attach_from_env(engine, env)  # impression ids and the delivery log (TARGETING_LOG_DIR, TARGETING_NOTICE_SECRET)
    auth = env.get("TARGETING_AUTH")
    settings = Settings(
        auth=KeyRing.load(auth) if auth else None,
        bench=env.get("TARGETING_BENCH", "") not in ("", "0", "false"),
        offload={"1": True, "0": False}.get(env.get("TARGETING_OFFLOAD", ""), None),
        privacy_secret=bytes.fromhex(env["TARGETING_PRIVACY_SECRET"]) if env.get("TARGETING_PRIVACY_SECRET") else None,
        export_dir=Path(env.get("TARGETING_HOME", "var")) / "exports",
        reload_signal=Path(env["TARGETING_RELOAD_SIGNAL"]) if env.get("TARGETING_RELOAD_SIGNAL") else None,
        close_engine=True,
        **_audience_pool(env),
    )
    return create_app(engine, settings)


def _audience_pool(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if env.get("TARGETING_AUDIENCE_POOL"):
        out["audience_pool"] = env["TARGETING_AUDIENCE_POOL"]
    if env.get("TARGETING_AUDIENCE_WORKERS"):
        out["audience_workers"] = int(env["TARGETING_AUDIENCE_WORKERS"])
    if any(env.get(name) for name in ("TARGETING_EXPORT_TTL", "TARGETING_EXPORT_CONCURRENT", "TARGETING_EXPORT_DAILY")):
        from targeting.audience.jobs import ExportLimits

        base = ExportLimits()
        out["export_limits"] = dataclasses.replace(
            base,
            ttl_s=float(env.get("TARGETING_EXPORT_TTL") or base.ttl_s),
            max_concurrent=int(env.get("TARGETING_EXPORT_CONCURRENT") or base.max_concurrent),
            max_daily=int(env.get("TARGETING_EXPORT_DAILY") or base.max_daily),
        )
    return out
