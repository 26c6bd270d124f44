"""``targeting serve``: check every input, then hand the app factory to uvicorn.

The only command that touches the ``service`` package, and only once it runs: the
rest of the CLI imports no web code. Inputs are checked here, before the port is
bound, so a bad file is one ``error:`` line rather than a traceback in a worker.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
from pathlib import Path

from ..errors import TargetingError
from . import inputs
from .inputs import UsageError
from .loading import demo_profiles, load_engine


def check_auth(path: str) -> None:
    """The API key file, read as the service will read it."""
    from service.auth import KeyRing  # the service's own reader: one parser for the format

    inputs.existing_file(path, "--auth")
    try:
        KeyRing.load(path)
    except TargetingError as e:
        where = f"{e.path}: " if e.path and e.path != "auth" else ""
        raise UsageError(f"{path}: {where}{e.message}", path="--auth") from None


def cmd_serve(a: argparse.Namespace) -> int:
    import uvicorn

    if a.auth is not None:
        check_auth(a.auth)
    inputs.warn_empty_campaign_files(inputs.rules_dir(a.rules))
    profiles = a.profiles
    if profiles is None and not a.no_demo:
        profiles = demo_profiles(a.rules)
    # rules, model and profiles loaded once here (profiles indexed and cached for the workers)
    load_engine(a.rules, profiles, None, a.model, progress=True)
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


__all__ = ["check_auth", "cmd_serve"]
