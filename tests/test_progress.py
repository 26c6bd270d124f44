"""The progress helper: drawn only on a terminal, counted from many threads, closed on error."""

from __future__ import annotations

import io
import threading

from targeting.progress import Progress, close_all


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_not_a_terminal() -> None:
    s = io.StringIO()
    with Progress("score", total=10, stream=s) as bar:
        bar.update(4)
        bar.status("1 rejected")
    assert s.getvalue() == "" and bar.done == 4 and not bar.visible


def test_silent_when_disabled_even_on_a_terminal() -> None:
    s = Terminal()
    with Progress("score", total=10, enabled=False, stream=s) as bar:
        bar.update(10)
    assert s.getvalue() == ""


def test_drawn_on_a_terminal() -> None:
    s = Terminal()
    with Progress("export", total=1000, unit="ids", stream=s) as bar:
        bar.update(1000)
        bar.status("done")
    text = s.getvalue()
    assert bar.visible is False  # closed
    assert "export" in text and "100%" in text and "1.00k/1.00k" in text and "done" in text


def test_unknown_total() -> None:
    s = Terminal()
    with Progress("events", unit="events", stream=s) as bar:
        bar.update(123)
    assert "events: 123" in s.getvalue()


def test_updates_from_many_threads_all_count() -> None:
    s = Terminal()
    with Progress("index", total=8000, stream=s) as bar:
        threads = [threading.Thread(target=lambda: [bar.update(1) for _ in range(1000)]) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert bar.done == 8000
    assert "8.00k/8.00k" in s.getvalue()


def test_close_all_ends_the_line_before_an_error() -> None:
    s = Terminal()
    bar = Progress("score", total=10, stream=s)
    bar.update(3)
    close_all()
    assert not bar.visible and s.getvalue().endswith("\n")


def test_total_learned_late() -> None:
    s = Terminal()
    with Progress("export", unit="ids", stream=s) as bar:
        bar.update(500)
        bar.set_total(2000)
        bar.update(1500)
    assert "2.00k/2.00k" in s.getvalue() and bar.total == 2000
