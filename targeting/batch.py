"""Batch scoring (``targeting score``): decide a Parquet file of requests, streaming.

Placeholder until the scorer lands; holds the progress line shared by the
generators and training.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A one-line progress report on stderr (``label: done/total rows, rate``), at most
    every half second; silent when ``enabled`` is false."""

    def __init__(self, label: str, total: int | None, *, enabled: bool = True, stream: TextIO | None = None):
        self.label = label
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and now - self._last >= 0.5:
            self._last = now
            self._write(final=False)

    def close(self) -> None:
        if self.enabled:
            self._write(final=True)

    def _write(self, final: bool) -> None:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        of = f"/{self.total:,}" if self.total else ""
        pct = f" {100 * self.done / self.total:5.1f}%" if self.total else ""
        line = f"{self.label}: {self.done:,}{of} rows{pct}  {self.done / elapsed:,.0f} rows/s  {elapsed:.1f}s"
        self.stream.write(("\r" + line + ("\n" if final else "")) if self.stream.isatty() or final else "")
        if not self.stream.isatty() and not final:
            self.stream.write(line + "\n")
        self.stream.flush()
