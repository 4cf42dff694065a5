"""The progress display: plain lines off a terminal, the rich bar on one."""

from __future__ import annotations

import io
import time

from rakka_runtime.batch.progress import BarProgress, NoProgress, PlainProgress, make_progress
from rakka_runtime.batch.records import unsent_record
from rakka_runtime.batch.summary import Summary


def summary_with(ok: int, errors: int) -> Summary:
    summary = Summary()
    for i in range(ok):
        summary.add({"custom_id": f"ok-{i}", "error": None, "cost_usd": 0.001})
    for i in range(errors):
        summary.add(unsent_record(f"bad-{i}", "invalid_request", "x"))
    return summary


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_are_periodic_and_show_rate_eta_spend_and_errors() -> None:
    summary = summary_with(0, 0)
    out = io.StringIO()
    display = make_progress(summary, 100, interval=0.05, stream=out)
    assert isinstance(display, PlainProgress)
    display.update()
    assert out.getvalue() == ""  # not before the first interval
    for i in range(40):
        summary.add({"custom_id": f"r{i}", "error": None, "cost_usd": 0.01})
    summary.add(unsent_record("bad", "invalid_request", "x"))
    time.sleep(0.06)
    display.update()
    line = out.getvalue().strip()
    assert line.startswith("batch: 41/100 (41.0%) · ")
    assert "req/s · ETA " in line and "$0.4000 spent · 1 errors" in line
    display.close()
    assert out.getvalue().count("\n") == 2


def test_unknown_total_shows_no_eta() -> None:
    out = io.StringIO()
    display = PlainProgress(summary_with(5, 0), None, out, 60)
    display.close()
    assert out.getvalue().startswith("batch: 5 done · ") and "ETA" not in out.getvalue()


def test_a_terminal_gets_the_rich_bar_and_off_gets_nothing() -> None:
    summary = summary_with(3, 1)
    out = Terminal()
    display = make_progress(summary, 10, stream=out)
    assert isinstance(display, BarProgress)
    summary.add({"custom_id": "late", "error": None, "cost_usd": 0.5})
    display.update()
    display.close()
    assert "5/10" in out.getvalue() and "1 errors" in out.getvalue()
    assert isinstance(make_progress(summary, 10, mode="off", stream=out), NoProgress)
