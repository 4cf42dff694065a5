"""``execute_batch``: the Python face of ``rakka batch`` (records in memory, no file)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rakka_runtime.batch.input import BatchItem, parse_request
from rakka_runtime.batch.records import Record
from rakka_runtime.batch.runner import BatchRunner, RunOutcome
from rakka_runtime.batch.summary import Summary
from rakka_runtime.types import ExecuteBatch

if TYPE_CHECKING:
    from rakka_runtime.runtime import Runtime

BatchRequest = Mapping[str, Any] | ExecuteBatch


@dataclass(slots=True)
class BatchResult:
    """``records`` in input order (output-file format), the totals, and how the run ended."""

    records: list[Record]
    summary: Summary
    outcome: RunOutcome


def batch_overrides(overrides: Sequence[str]) -> list[str]:
    """Batch traffic uses ``policy=batch`` (queue, long retries) unless a policy is named."""
    if any(o.lstrip("+~").startswith("policy=") for o in overrides):
        return list(overrides)
    return ["policy=batch", *overrides]


def execute_batch(
    requests: Iterable[BatchRequest],
    *,
    concurrency: int = 8,
    runtime: Runtime | None = None,
    overrides: Sequence[str] = (),
    config_dir: str | None = None,
    read_ahead: int | None = None,
    on_record: Callable[[Record], None] | None = None,
    driver: str = "async",
) -> BatchResult:
    """Send ``requests`` with ``concurrency`` workers; one record per request.

    A request is a dict in either input-line form (see :mod:`rakka_runtime.batch.input`)
    or an :class:`ExecuteBatch`, sent as built (its ``stream`` included). One without a
    custom_id is named by its 1-based position (``"line-3"``). A bad request becomes an
    error record, never an exception. Without ``runtime``, one is composed from
    ``overrides`` (with ``policy=batch`` unless another policy is named) and closed at the
    end. ``on_record`` sees each record as it is produced (from the runner's threads).
    ``driver``: ``"async"`` (tasks on one event loop) or ``"thread"`` (a thread per request).
    """
    owned = runtime is None
    if runtime is None:
        from rakka_runtime.runtime import Runtime

        runtime = Runtime.from_overrides(batch_overrides(overrides), config_dir=config_dir)
    summary = Summary()
    collected: list[tuple[int, Record]] = []

    def sink(line: int, record: Record, _encoded: bytes) -> None:
        collected.append((line, record))
        summary.add(record)
        if on_record is not None:
            on_record(record)

    try:
        runner = BatchRunner(
            runtime, sink, concurrency=concurrency, read_ahead=read_ahead, driver=driver
        )
        outcome = runner.run(_items(requests))
    finally:
        if owned:
            runtime.close()
    collected.sort(key=lambda pair: pair[0])
    return BatchResult([record for _, record in collected], summary, outcome)


def _items(requests: Iterable[BatchRequest]) -> Iterator[BatchItem]:
    for position, request in enumerate(requests, 1):
        if isinstance(request, ExecuteBatch):
            yield BatchItem(f"line-{position}", position, request=request)
        else:
            yield parse_request(request, position)
