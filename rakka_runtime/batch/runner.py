"""Scheduling a batch: one reader, N workers, a bounded window between them, one writer.

::

    reader thread ─ parse, dedupe, resume-skip ─▶ Window (bounded, by priority) ─▶ workers
          │ (lines that cannot be sent)                                            │
          └──────────────────────────────▶ emit (one lock: write line + summary) ◀─┘

Workers are, with ``driver="async"`` (the default), up to ``concurrency`` tasks on one event
loop in a thread of its own (the asyncio driver: thousands in flight cost no thread each),
or, with ``driver="thread"``, ``concurrency`` threads on the thread driver. Everything
else — the window, records, resume, stop and grace — is the same code for both.

The caller's thread runs :meth:`BatchRunner.run`: it waits, ticks the progress display, and
on a stop request closes the window (nothing more is sent), lets in-flight requests finish
for ``grace`` seconds (no retry starts after it), then seals the output. Requests still
running after that are cancelled (their connections cut) and abandoned, and ones that fail
retryably while stopping are dropped: their records are never written, so a re-run sends
them again. So are lines the deployment's own limits refused before sending
(``backpressure``: a pause after a 429, a full queue): nothing was sent, so they are not
done; the run is then incomplete (``RunOutcome.refused``) and a re-run sends them.

:meth:`BatchRunner.request_stop` only sets plain attributes, so it is safe to call from a
signal handler (an ``Event.set`` there could deadlock on a lock the main thread holds).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from rakka_runtime.batch.input import BatchItem
from rakka_runtime.batch.output import ResumeState
from rakka_runtime.batch.records import (
    DUPLICATE_CUSTOM_ID,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    Record,
    encode,
    failure_record,
    success_record,
    unsent_record,
)
from rakka_runtime.batch.window import Window
from rakka_runtime.drivers.sync_transport import POOL_SIZE
from rakka_runtime.errors import Backpressure, InferenceError

if TYPE_CHECKING:
    from rakka_runtime.aio import AsyncRuntime
    from rakka_runtime.drivers.aio import AsyncRunHandle
    from rakka_runtime.drivers.sync import RunHandle
    from rakka_runtime.runtime import Runtime
    from rakka_runtime.types import ChatResult

Sink = Callable[[int, Record, bytes], None]
"""Receives the input line number, the record and its encoded line, under the emit lock."""

_POLL = 0.1  # how often the caller's thread looks at stop requests and ticks progress
# Failures a shortened deadline causes (a queue wait or a retry cut off by the grace period).
_CUT_BY_DEADLINE = frozenset({"timeout", "backpressure"})


class _InternalError(InferenceError):
    """Something other than an InferenceError escaped a request (a plugin bug, say)."""

    kind = INTERNAL_ERROR


@dataclass(slots=True)
class RunOutcome:
    """How a run ended.

    :ivar complete: every input line read has its record (and the input was read to the end).
    :ivar written: records written by this run.
    :ivar skipped: lines whose record was already in the output (resume).
    :ivar unsent: lines without a record because of a stop: read ahead but never sent, or
        failed retryably while stopping (the grace deadline may have cut their retries).
    :ivar abandoned: requests still in flight when the grace period ran out.
    :ivar refused: lines the deployment's limits refused before sending (``backpressure``):
        no record written, so a re-run (resume) sends them.
    :ivar fatal: what stopped the batch on its own (an unwritable output, an unreadable
        input), if anything.
    """

    complete: bool
    stopped: bool
    written: int
    skipped: int
    unsent: int
    abandoned: int
    fatal: BaseException | None
    refused: int = 0


logger = logging.getLogger("rakka_runtime.batch")

HandleT = TypeVar("HandleT", "RunHandle", "AsyncRunHandle")


class _Sending:
    """One item on its way, on either driver: tracked while in flight (so a stop can cut
    it), and turned into its record however it ends (a bug costs one record, not the
    batch)."""

    def __init__(self, runner: BatchRunner, item: BatchItem) -> None:
        request = item.request
        assert request is not None  # the reader never queues an unsendable item
        self.request = request
        self._runner = runner
        self._item = item
        self._started = time.monotonic()
        self._outcome: tuple[Record, bool] | None = None

    def __enter__(self) -> _Sending:
        # In flight from here (its handle comes with track): even a request that fails
        # before it has a handle is settled, and so counted, through the table.
        with self._runner._inflight_lock:
            self._runner._inflight[self] = None
        return self

    def track(self, handle: HandleT) -> HandleT:
        with self._runner._inflight_lock:
            if self in self._runner._inflight:
                self._runner._inflight[self] = handle
                return handle
        handle.cancel()  # abandoned at the grace period before it was sent
        return handle

    def succeeded(self, result: ChatResult, status: int | None) -> None:
        record = success_record(
            self._item.custom_id,
            result,
            status=status,
            model=self.request.model or self._runner._model,
        )
        self._outcome = (record, False)

    @property
    def outcome(self) -> tuple[_Sending, Record, bool]:
        """Itself (its key in the in-flight table: an object kept alive, not an ``id()``
        that a later item may reuse), the record, and whether it is a failure a retry
        might have cured. It stays in flight until :meth:`BatchRunner._settle` counts it,
        so a stop never finds it in neither place."""
        assert self._outcome is not None
        return (self, *self._outcome)

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> bool:
        runner = self._runner
        if isinstance(error, InferenceError):
            retryable = error.is_retryable or error.kind in _CUT_BY_DEADLINE
            self._outcome = (runner._failed(self._item, error, self._started), retryable)
            return True
        if isinstance(error, Exception):
            internal = _InternalError(f"{type(error).__name__}: {error}")
            self._outcome = (runner._failed(self._item, internal, self._started), False)
            return True
        return False


class BatchRunner:
    def __init__(
        self,
        runtime: Runtime,
        sink: Sink,
        *,
        concurrency: int = 8,
        read_ahead: int | None = None,
        grace: float = 10.0,
        resume: ResumeState | None = None,
        driver: str = "async",
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if driver not in ("async", "thread"):
            raise ValueError(f"driver must be 'async' or 'thread', not {driver!r}")
        self._driver = driver
        self._runtime = runtime
        self._sink = sink
        self._concurrency = concurrency
        in_flight = runtime.deployment.rate_limits.concurrent_requests
        if driver == "thread" and in_flight is None and concurrency > POOL_SIZE:
            # The pool keeps POOL_SIZE connections (or concurrent_requests, when larger).
            logger.warning(
                "concurrency %d is more than the %d pooled connections: the rest open and "
                "close a connection per request; set deployment.rate_limits."
                "concurrent_requests=%d to keep them all open",
                concurrency,
                POOL_SIZE,
                concurrency,
            )
        # Enough read-ahead for priorities to matter and for workers never to starve.
        self._window = Window(read_ahead or max(16, 2 * concurrency))
        self._grace = grace
        self._resume = resume or ResumeState()
        # One table for "in the output" and "read by this run": half the memory of two.
        self._ids = self._resume.done
        self._tick: Callable[[], None] | None = None
        self._model = runtime.deployment.model
        self._duplicates_seen: dict[str, int] = {}
        self._emit_lock = threading.Lock()
        self._sealed = False
        self._inflight_lock = threading.Lock()
        self._inflight: dict[_Sending, RunHandle | AsyncRunHandle | None] = {}
        self._workers_left = concurrency
        self._deferred = 0  # retryable failures during a stop: left for the re-run
        self._refused = 0  # refused before sending (backpressure): left for the re-run
        self._finished = threading.Event()
        self._reader_done = threading.Event()
        # Plain attributes: written by signal handlers, read by polling.
        self._stop_requested = False
        self._force = False
        self.fatal: BaseException | None = None
        self.written = 0
        self.skipped = 0
        self.lines_read = 0

    # --- control ------------------------------------------------------------------------

    def request_stop(self, *, force: bool = False) -> None:
        """Stop dispatching; with ``force``, skip the grace period. Signal-handler safe."""
        if force:
            self._force = True
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def in_flight(self) -> int:
        return len(self._inflight)

    # --- the run ------------------------------------------------------------------------

    def run(
        self, items: Iterable[BatchItem], *, tick: Callable[[], None] | None = None
    ) -> RunOutcome:
        """Send ``items`` and block until done or stopped; ``tick`` runs every 0.1 s here."""
        self._tick = tick
        reader = threading.Thread(
            target=self._read, args=(items,), name="rakka-batch-reader", daemon=True
        )
        # Daemons: a request abandoned after the grace period must not keep the process.
        if self._driver == "async":
            # One event loop carries every request (thousands at once cost no thread each).
            self._workers_left = 1
            workers = [
                threading.Thread(target=self._dispatch, name="rakka-batch-loop", daemon=True)
            ]
        else:
            workers = [
                threading.Thread(target=self._work, name=f"rakka-batch-worker-{i}", daemon=True)
                for i in range(self._concurrency)
            ]
        reader.start()
        for worker in workers:
            worker.start()
        while not self._finished.wait(_POLL):
            self._ticked()
            if self._stop_requested:
                break
        unsent = abandoned = 0
        if self._stop_requested or not self._finished.is_set():
            unsent, abandoned = self._wind_down()
        unsent += self._deferred
        self._seal()
        reader.join(timeout=1.0)  # it may be blocked reading stdin: a daemon, let it be
        self._ticked()
        # A stop that came after the last record changes nothing: the run is complete.
        complete = (
            self._reader_done.is_set()
            and self._finished.is_set()
            and not unsent
            and not abandoned
            and not self._refused
            and self.fatal is None
        )
        return RunOutcome(
            complete=complete,
            stopped=self._stop_requested,
            written=self.written,
            skipped=self.skipped,
            unsent=unsent,
            abandoned=abandoned,
            fatal=self.fatal,
            refused=self._refused,
        )

    def _wind_down(self) -> tuple[int, int]:
        """Stop sending, give in-flight requests the grace period, then abandon the rest."""
        unsent = self._window.close()
        if self._finished.is_set():
            return unsent, 0
        ends = time.monotonic() + self._grace
        with self._inflight_lock:
            handles = list(self._inflight.values())
        for handle in handles:
            if handle is None:
                continue  # no handle yet: abandoned at the end if still unsent by then
            # No attempt may run past the grace period: every later attempt reads the
            # deadline (transport, rate-limit queue); the one in progress keeps its limits.
            state = handle.state  # the run's own state: the caller's request is frozen
            if state.deadline is None or state.deadline > ends:
                state.deadline = ends
        while not self._finished.wait(_POLL):
            self._ticked()
            if self._force or time.monotonic() >= ends:
                break
        if self._finished.is_set():
            return unsent, 0
        with self._inflight_lock:
            # Taken out under the lock: whatever settles from now on finds itself gone
            # and counts nowhere else (see _settle).
            handles = list(self._inflight.values())
            self._inflight.clear()
        self._seal()  # from here on a late answer is dropped, not written
        for handle in handles:
            # Cut each one (its worker gets Cancelled at once): an abandoned stream stops
            # generating, and billing, instead of running on to its end unread.
            if handle is not None:
                handle.cancel()
        return unsent, len(handles)

    def _ticked(self) -> None:
        if self._tick is not None:
            self._tick()

    # --- reader -------------------------------------------------------------------------

    def _read(self, items: Iterable[BatchItem]) -> None:
        try:
            for item in items:
                if self._stop_requested:
                    return
                self.lines_read += 1
                if not self._admit(item):
                    continue
                if item.request is None:
                    message = item.error or f"line {item.line}: cannot be sent"
                    self._emit(item.line, unsent_record(item.custom_id, INVALID_REQUEST, message))
                elif not self._window.put(item):
                    return
            self._reader_done.set()
        except Exception as exc:  # an unreadable input: stop, keep what was written
            self.fatal = exc
            self.request_stop(force=True)
        finally:
            self._window.finish()

    def _admit(self, item: BatchItem) -> bool:
        """Whether ``item`` needs a record now (False: skipped, or answered as a duplicate).

        A custom_id's first line is sent unless the output already has its record; each
        later line with the same id gets a ``duplicate_custom_id`` error record. On resume
        the k-th occurrence is skipped when k-1 duplicate records are already there, so
        every input line ends up with exactly one record however often the run stops.
        """
        custom_id = item.custom_id
        first, done = self._ids.visit(custom_id)
        if first:
            if done:
                self.skipped += 1
                return False
            return True
        occurrence = self._duplicates_seen.get(custom_id, 1) + 1
        self._duplicates_seen[custom_id] = occurrence
        if self._resume.duplicates.get(custom_id, 0) >= occurrence - 1:
            self.skipped += 1
            return False
        self._emit(
            item.line,
            unsent_record(
                custom_id,
                DUPLICATE_CUSTOM_ID,
                f"line {item.line}: custom_id {custom_id!r} is used by an earlier line; "
                "only the first line with an id is sent",
            ),
        )
        return False

    # --- workers ------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while not self._stop_requested:
                item = self._window.get()
                if item is None:
                    return
                self._settle(item, *self._send(item))
        except Exception as exc:  # the output cannot be written: nothing else is worth doing
            self.fatal = exc
            self.request_stop(force=True)
        finally:
            with self._inflight_lock:
                self._workers_left -= 1
                last = self._workers_left == 0
            if last:
                self._finished.set()

    def _dispatch(self) -> None:
        """The async driver's worker: one event loop, up to ``concurrency`` requests."""
        try:
            asyncio.run(self._dispatch_all())
        except Exception as exc:  # the output cannot be written: nothing else is worth doing
            self.fatal = exc
            self.request_stop(force=True)
        finally:
            with self._inflight_lock:
                self._workers_left -= 1
                last = self._workers_left == 0
            if last:
                self._finished.set()

    async def _dispatch_all(self) -> None:
        from rakka_runtime.aio import AsyncRuntime

        runtime = AsyncRuntime.sharing(self._runtime)
        slots = asyncio.Semaphore(self._concurrency)
        running: set[asyncio.Task[None]] = set()
        problem: list[BaseException] = []

        async def one(item: BatchItem) -> None:
            try:
                self._settle(item, *await self._send_async(runtime, item))
            except Exception as exc:
                problem.append(exc)
                self.request_stop(force=True)
            finally:
                slots.release()

        try:
            while not self._stop_requested and not problem:
                await slots.acquire()
                # The window blocks on a condition: wait for it off the loop.
                item = await asyncio.to_thread(self._window.get)
                if item is None or self._stop_requested:
                    slots.release()
                    break
                task = asyncio.create_task(one(item))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        finally:
            await runtime.aclose()
        if problem:
            raise problem[0]

    async def _send_async(
        self, runtime: AsyncRuntime, item: BatchItem
    ) -> tuple[_Sending, Record, bool]:
        """:meth:`_send` on the async driver."""
        with _Sending(self, item) as sending:
            handle = sending.track(runtime.execute(sending.request))
            sending.succeeded(await handle.result(), handle.state.status)
        return sending.outcome

    def _send(self, item: BatchItem) -> tuple[_Sending, Record, bool]:
        """The item's key in flight, its record, and whether it is a failure a retry might
        have cured."""
        with _Sending(self, item) as sending:
            handle = sending.track(self._runtime.execute(sending.request))
            sending.succeeded(handle.result(), handle.state.status)
        return sending.outcome

    def _settle(self, item: BatchItem, key: _Sending, record: Record, retryable: bool) -> None:
        """Write an item's record, or leave the line for a re-run (either driver).

        It leaves the in-flight table and is counted in the same step, under one lock: a
        stop taking stock meanwhile sees it in one place or the other, never in neither
        (an item that timed out at the grace deadline once went uncounted) nor in both.
        """
        with self._inflight_lock:
            if key not in self._inflight:
                return  # abandoned at the grace period: counted there, never written
            del self._inflight[key]  # (its handle may be None: it failed before sending)
            if (record.get("error") or {}).get("code") == Backpressure.kind:
                # Refused by the deployment's own limits, nothing sent: not done.
                self._refused += 1
                return
            if retryable and self._stop_requested:
                # Maybe cut short by the grace deadline: a re-run retries it in full.
                self._deferred += 1
                return
        self._emit(item.line, record)

    def _failed(self, item: BatchItem, error: InferenceError, started: float) -> Record:
        partial = error.partial
        cost: float | None
        if partial is not None and partial.cost_usd is not None:
            cost = partial.cost_usd  # output arrived before the failure: it is billed
        elif partial is None and error.status is not None and error.status >= 400:
            cost = 0.0  # the API does not bill a request it refused
        else:
            cost = None  # cut off mid-answer, or never answered: the tokens are unknown
        latency = (time.monotonic() - started) * 1000
        return failure_record(item.custom_id, error, latency_ms=latency, cost_usd=cost)

    # --- output -------------------------------------------------------------------------

    def _emit(self, line_number: int, record: Record) -> None:
        line = encode(record)  # outside the lock: workers encode in parallel
        with self._emit_lock:
            if self._sealed:
                return
            self._sink(line_number, record, line)
            self.written += 1

    def _seal(self) -> None:
        with self._emit_lock:
            self._sealed = True
