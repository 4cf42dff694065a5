"""Progress on stderr: a rich bar on a terminal, a plain line every few seconds otherwise.

Both show done/total (total from a pre-count of the input; unknown for stdin, and then no
ETA), the rate of this run, the ETA, the spend so far and the errors. rich rather than tqdm:
its columns take our own fields (spend, errors) without a custom formatter, and it was
already installed (a dependency now, ``rich>=13``); it is imported only on a terminal.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Literal, Protocol

from rakka_runtime.batch.summary import Summary

ProgressMode = Literal["auto", "bar", "plain", "off"]


class Progress(Protocol):
    def update(self) -> None: ...

    def close(self) -> None: ...


class _Figures:
    """The numbers both displays show, read from the summary (racy reads of ints are fine)."""

    def __init__(self, summary: Summary, total: int | None) -> None:
        self.summary = summary
        self.total = total
        self.started = time.monotonic()
        self.start_records = summary.records

    def line(self) -> str:
        summary = self.summary
        done = summary.records
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (done - self.start_records) / elapsed
        if self.total is None:
            head, eta = f"{done:,} done", ""
        else:
            percent = 100.0 * done / self.total if self.total else 100.0
            head = f"{done:,}/{self.total:,} ({percent:.1f}%)"
            left = max(self.total - done, 0)
            if not left:
                eta = " · ETA 0:00"
            else:
                eta = f" · ETA {_clock(left / rate)}" if rate > 0 else " · ETA -"
        return (
            f"{head} · {rate:,.1f} req/s{eta} · ${summary.cost_usd:.4f} spent · "
            f"{summary.errors:,} errors"
        )


class PlainProgress:
    """One line every ``interval`` seconds (for logs and CI), and one at the end."""

    def __init__(
        self, summary: Summary, total: int | None, stream: IO[str], interval: float
    ) -> None:
        self._figures = _Figures(summary, total)
        self._stream = stream
        self._interval = interval
        self._next = time.monotonic() + interval

    def update(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._interval
            self._print()

    def close(self) -> None:
        self._print()

    def _print(self) -> None:
        self._stream.write(f"batch: {self._figures.line()}\n")
        self._stream.flush()


class BarProgress:
    def __init__(self, summary: Summary, total: int | None, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._figures = _Figures(summary, total)
        self._bar = RichProgress(
            TextColumn("batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
        )
        self._task = self._bar.add_task("batch", total=total, completed=summary.records, figures="")
        self._bar.start()

    def update(self) -> None:
        figures = self._figures
        self._bar.update(
            self._task,
            completed=figures.summary.records,
            figures=figures.line().split(" · ", 1)[-1],  # the bar shows done/total itself
        )

    def close(self) -> None:
        self.update()
        self._bar.stop()


class NoProgress:
    def update(self) -> None:
        pass

    def close(self) -> None:
        pass


def make_progress(
    summary: Summary,
    total: int | None,
    *,
    mode: ProgressMode = "auto",
    interval: float = 5.0,
    stream: IO[str] | None = None,
) -> Progress:
    out: IO[str] = stream if stream is not None else sys.stderr
    if mode == "auto":
        mode = "bar" if _is_terminal(out) else "plain"
    if mode == "bar":
        return BarProgress(summary, total, out)
    if mode == "plain":
        return PlainProgress(summary, total, out, interval)
    return NoProgress()


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
