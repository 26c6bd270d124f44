"""A tiny progress bar on stderr (no dependency): ``with Progress(total, "build") as p: p.update(n)``.

Redraws at most every 0.2 s; silent when ``enabled`` is false, so library code can
take ``progress=False`` and tests stay quiet. When stderr is not a terminal it
prints one line per 10% instead of redrawing.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Self, TextIO


class Progress:
    def __init__(self, total: int, label: str, *, enabled: bool = True, unit: str = "rows",
                 stream: TextIO | None = None) -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.enabled = enabled
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._start = time.perf_counter()
        self._last = 0.0
        self._last_decile = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()  # shards and files report from worker threads

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.enabled and exc is None:
            self._draw(final=True)

    def update(self, n: int) -> None:
        with self._lock:
            self.done += int(n)
            if self.enabled:
                self._maybe_draw()

    def _maybe_draw(self) -> None:
        now = time.perf_counter()
        if self._tty and now - self._last >= 0.2:
            self._last = now
            self._draw()
        elif not self._tty and self.total:
            decile = min(10, self.done * 10 // self.total)
            if decile > self._last_decile and decile < 10:
                self._last_decile = decile
                self._draw(newline=True)

    def _draw(self, final: bool = False, newline: bool = False) -> None:
        elapsed = time.perf_counter() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        frac = self.done / self.total if self.total else 1.0
        width = 24
        fill = int(width * min(frac, 1.0))
        bar = "#" * fill + "-" * (width - fill)
        line = (f"{self.label} [{bar}] {self.done:,}/{self.total:,} {self.unit} "
                f"{100 * frac:5.1f}% {rate:,.0f}/s {elapsed:.1f}s")
        if self._tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        elif final or newline:
            self.stream.write(line + "\n")
        self.stream.flush()
