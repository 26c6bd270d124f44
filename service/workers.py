"""Reloads reach every worker.

``targeting serve --workers N`` runs N processes, each with its own engine. The
worker that answers ``POST /v1/campaigns/reload`` writes the new index version to
a signal file shared by the server's workers; every worker checks that file once
a second and reloads from disk when it changes, so a reload is everywhere within
about a second. A bad rules directory never gets announced: the refusing worker
answers 422 and the others keep their index.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from targeting.errors import TargetingError

log = logging.getLogger("targeting.service")


class ReloadSignal:
    def __init__(self, path: str | Path, interval: float = 1.0) -> None:
        self.path = Path(path)
        self.interval = interval
        self._seen = self._token()

    def _token(self) -> tuple[int, str] | None:
        try:
            st = self.path.stat()
            return st.st_mtime_ns, self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return None

    def announce(self, version: str) -> None:
        """Tell the other workers (atomically: they never read half a file)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(version, encoding="utf-8")
        tmp.replace(self.path)
        self._seen = self._token()

    async def follow(self, engine: Any) -> None:
        """Run until cancelled: reload ``engine`` whenever another worker announced."""
        while True:
            await asyncio.sleep(self.interval)
            token = self._token()
            if token is None or token == self._seen:
                continue
            self._seen = token
            if token[1] == engine.index.version:
                continue
            try:
                result = await run_in_threadpool(engine.reload)
                log.info("reloaded after another worker did: %s", result["index_version"])
            except TargetingError as e:  # the files changed again, to something bad
                log.error("could not follow a reload announced by another worker: %s", e.message)
