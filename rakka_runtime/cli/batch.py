"""``rakka batch``: run a JSONL file of chat requests into a JSONL file of results.

Exit codes: 0 every input line has its record (failed requests included: see the summary);
1 a fatal error stopped the batch (the output could not be written, the input could not be
read past some point), or lines were refused by the deployment's own limits before being
sent (``backpressure``: a 429 pause, a full queue) and have no record yet; 2 bad usage,
config or input file (nothing was sent); 130 stopped by SIGINT, 143 by SIGTERM (128 + the
signal number, as shells report it). Every exit except 2 prints the command that resumes the batch.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import click

from rakka_runtime.cli.common import (
    EXIT_FAILED,
    compiled_option,
    config_dir_option,
    fail,
    open_runtime,
)

if TYPE_CHECKING:
    from rakka_runtime.batch.progress import ProgressMode
    from rakka_runtime.batch.runner import BatchRunner, RunOutcome
    from rakka_runtime.batch.summary import Summary


@click.command()
@click.argument("input_path", metavar="INPUT")
@click.argument("overrides", nargs=-1)
@click.option(
    "-o",
    "--output",
    "output_path",
    required=True,
    metavar="OUTPUT",
    help="JSONL results, appended to; an existing file is resumed.",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 20000),
    default=8,
    show_default=True,
    help="Requests in flight at once (thousands on the async driver).",
)
@click.option(
    "--driver",
    type=click.Choice(["async", "thread"]),
    default="async",
    show_default=True,
    help="async: every request a task on one event loop; thread: a thread per request.",
)
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the summary to this file as JSON.",
)
@click.option(
    "--grace",
    default="10s",
    show_default=True,
    help="On Ctrl-C/SIGTERM, how long in-flight requests may finish.",
)
@click.option(
    "--read-ahead",
    type=click.IntRange(1),
    default=None,
    help="Lines read ahead of the workers (default: 2 x concurrency, at least 16).",
)
@click.option(
    "--progress",
    type=click.Choice(["auto", "bar", "plain", "off"]),
    default="auto",
    show_default=True,
    help="auto: a bar on a terminal, plain lines otherwise.",
)
@click.option(
    "--progress-interval",
    default="5s",
    show_default=True,
    help="How often plain progress lines are printed.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this loopback port while the batch runs.",
)
@config_dir_option
@compiled_option
def batch(
    input_path: str,
    overrides: tuple[str, ...],
    output_path: str,
    concurrency: int,
    driver: str,
    summary_json: str | None,
    grace: str,
    read_ahead: int | None,
    progress: str,
    progress_interval: str,
    metrics_port: int | None,
    config_dir: str | None,
    compiled: str | None,
) -> None:
    """Send every request in INPUT (JSONL) and write one result line per request to OUTPUT.

    INPUT lines are OpenAI Batch API lines ({custom_id, method, url, body}) or plain
    requests ({custom_id?, messages, model?, ...}); `-` reads stdin. Running again with the
    same OUTPUT skips the custom_ids it already holds. OVERRIDES are Hydra overrides;
    `policy=batch` applies unless another policy is named (with --compiled, compile with
    `policy=batch` for that).
    """
    from rakka_runtime.batch.api import batch_overrides
    from rakka_runtime.batch.input import InputError, count_requests, open_input, read_items
    from rakka_runtime.batch.output import RecordWriter, scan_output
    from rakka_runtime.batch.progress import make_progress
    from rakka_runtime.batch.runner import BatchRunner
    from rakka_runtime.batch.summary import Summary
    from rakka_runtime.config.durations import parse_duration

    try:
        grace_s = parse_duration(grace)
        interval_s = parse_duration(progress_interval)
    except ValueError as exc:
        fail(str(exc))
    resume_command = _resume_command(
        input_path,
        output_path,
        concurrency,
        summary_json,
        grace,
        read_ahead,
        [
            *(["--driver", driver] if driver != "async" else []),
            *(["--config-dir", config_dir] if config_dir is not None else []),
            *(["--compiled", compiled] if compiled is not None else []),
        ],
        overrides,
    )
    _check_paths(input_path, output_path)
    try:
        stream = open_input(input_path)
    except InputError as exc:
        fail(str(exc))
    with stream:
        if compiled is not None:
            runtime = open_runtime(overrides, config_dir, compiled)
        else:
            runtime = open_runtime(batch_overrides(overrides), config_dir)
        metrics = _serve_metrics(metrics_port)
        summary = Summary()
        try:
            try:
                resume = scan_output(output_path, summary.add_resumed)
                total = count_requests(input_path)
                writer = RecordWriter(output_path)
            except OSError as exc:
                fail(f"cannot use {output_path}: {exc.strerror or exc}")
            _report_resume(output_path, resume.records, resume.repaired_bytes, resume.unreadable)

            def sink(_line: int, record: dict[str, Any], encoded: bytes) -> None:
                writer.write(encoded)
                summary.add(record)

            display = make_progress(
                summary, total, mode=cast("ProgressMode", progress), interval=interval_s
            )
            runner = BatchRunner(
                runtime,
                sink,
                concurrency=concurrency,
                read_ahead=read_ahead,
                grace=grace_s,
                resume=resume,
                driver=driver,
            )
            started = time.monotonic()
            signals = _StopOnSignals(runner)
            try:
                with signals:
                    outcome = runner.run(
                        read_items(stream), tick=_tick(display.update, runner, signals, grace_s)
                    )
            finally:
                display.close()
                writer.close()
        finally:
            if metrics is not None:
                metrics.stop()
            runtime.close()
    elapsed = time.monotonic() - started
    for line in summary.render():
        click.echo(line, err=True)
    status = (
        "complete"
        if outcome.complete
        else "interrupted"
        if signals.received is not None
        else "failed"
    )
    if summary_json is not None:
        _write_summary(
            summary_json,
            summary,
            outcome,
            status=status,
            total=total,
            elapsed=elapsed,
            input_path=input_path,
            output_path=output_path,
            signum=signals.received,
        )
    if outcome.complete:
        return
    left = "" if total is None else f" ({summary.records:,} of {total:,} lines done)"
    if outcome.fatal is not None and signals.received is None:
        click.echo(f"error: the batch stopped: {outcome.fatal}{left}", err=True)
        click.echo(f"resume with: {resume_command}", err=True)
        raise SystemExit(EXIT_FAILED)
    if signals.received is None and outcome.refused:
        click.echo(
            f"error: {outcome.refused:,} lines were refused by the deployment's rate limits "
            f"(backpressure) and not sent{left}",
            err=True,
        )
        click.echo(f"resume with: {resume_command}", err=True)
        raise SystemExit(EXIT_FAILED)
    signum = signals.received or signal.SIGTERM
    name = signal.Signals(signum).name
    abandoned = (
        f"; {outcome.abandoned:,} in-flight requests abandoned after the grace period"
        if outcome.abandoned
        else ""
    )
    click.echo(f"stopped by {name}{left}{abandoned}", err=True)
    click.echo(f"resume with: {resume_command}", err=True)
    raise SystemExit(128 + int(signum))


class _StopOnSignals:
    """SIGINT/SIGTERM: the first stops dispatching (grace period), a second cancels now.

    The handler only sets attributes (see BatchRunner.request_stop); printing happens on
    the next progress tick, since writing to stderr inside a handler can re-enter a write.
    """

    def __init__(self, runner: BatchRunner) -> None:
        self._runner = runner
        self.received: int | None = None
        self.count = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.received is None:
            self.received = signum
        self._runner.request_stop(force=self.count > 1)

    def __enter__(self) -> _StopOnSignals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.received is not None:
            # Stopping already, and the process exits with 128 + the first signal: ignore
            # any further one. Restoring the default handler here let a second Ctrl-C a
            # moment after the run ended kill the process by the signal instead; so would
            # our handler, which the interpreter resets to the default while it finalizes
            # (it leaves SIG_IGN alone).
            for signum in self._previous:
                signal.signal(signum, signal.SIG_IGN)
            return
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def _tick(
    update: Callable[[], None], runner: BatchRunner, signals: _StopOnSignals, grace: float
) -> Callable[[], None]:
    announced = [False]

    def tick() -> None:
        update()
        if runner.stopping and not announced[0] and signals.received is not None:
            announced[0] = True
            name = signal.Signals(signals.received).name
            click.echo(
                f"{name}: no new requests; waiting up to {grace:g}s for "
                f"{runner.in_flight()} in flight (signal again to stop now)",
                err=True,
            )

    return tick


def _check_paths(input_path: str, output_path: str) -> None:
    if os.path.isdir(output_path):
        fail(f"cannot use {output_path}: it is a directory")
    if (
        input_path != "-"
        and os.path.exists(output_path)
        and os.path.exists(input_path)
        and os.path.samefile(input_path, output_path)
    ):
        fail("INPUT and OUTPUT are the same file")


def _serve_metrics(port: int | None) -> Any:
    if port is None:
        return None
    from rakka_runtime.metrics import MetricsUnavailable, serve_metrics

    try:
        server = serve_metrics(port)
    except (MetricsUnavailable, OSError) as exc:
        fail(f"--metrics-port: {exc}")
    click.echo(f"metrics: {server.url}", err=True)
    return server


def _report_resume(path: str, records: int, repaired: int, unreadable: int) -> None:
    if repaired:
        click.echo(f"{path}: removed a torn last line ({repaired} bytes) left by a crash", err=True)
    if unreadable:
        click.echo(f"{path}: {unreadable} lines are not records and were ignored", err=True)
    if records:
        click.echo(f"resuming: {records:,} records already in {path} are kept", err=True)


def _resume_command(
    input_path: str,
    output_path: str,
    concurrency: int,
    summary_json: str | None,
    grace: str,
    read_ahead: int | None,
    config_words: list[str],
    overrides: tuple[str, ...],
) -> str:
    # Rebuilt from the parsed options rather than sys.argv, which may be `python -m ...`.
    words = ["rakka", "batch", input_path, "-o", output_path, "--concurrency", str(concurrency)]
    if summary_json is not None:
        words += ["--summary-json", summary_json]
    if grace != "10s":
        words += ["--grace", grace]
    if read_ahead is not None:
        words += ["--read-ahead", str(read_ahead)]
    return shlex.join([*words, *config_words, *overrides])


def _write_summary(
    path: str,
    summary: Summary,
    outcome: RunOutcome,
    *,
    status: str,
    total: int | None,
    elapsed: float,
    input_path: str,
    output_path: str,
    signum: int | None,
) -> None:
    data = {
        "status": status,
        "signal": None if signum is None else signal.Signals(signum).name,
        "input": input_path,
        "output": output_path,
        "input_lines": total,
        **summary.to_dict(),
        "this_run": {
            "written": outcome.written,
            "skipped": outcome.skipped,
            "unsent": outcome.unsent,
            "abandoned": outcome.abandoned,
            "refused": outcome.refused,
            "elapsed_s": round(elapsed, 3),
        },
    }
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.replace(temporary, path)  # readers never see half a summary
    except OSError as exc:
        click.echo(f"error: cannot write {path}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_FAILED)
