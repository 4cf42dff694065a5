"""The thread driver: runs a request on the calling thread over urllib3.

It carries out what the core decides: enters policies (waiting as they ask, on the
thread), runs each exchange (send, read, decode through :class:`Exchange`), asks the core
what a failure means and how long to wait, and leaves every policy however the request
ends. A request is a generator of chunks, so a stream is read as the caller consumes it
and closing it early releases the connection and every permit at once.

Cancellation (:meth:`RunHandle.cancel`, any thread) cuts the socket in any phase, ends a
wait at once, and no further attempt starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from rakka_runtime.core.exchange import Exchange
from rakka_runtime.core.flow import DeploymentCore, OpenStream, ask, plugin_failure
from rakka_runtime.core.notify import block
from rakka_runtime.core.policy import Outcome, Policy, Wait
from rakka_runtime.core.state import CallState
from rakka_runtime.drivers import sync_transport
from rakka_runtime.errors import Cancelled, InferenceError, Unauthorized
from rakka_runtime.policies.clock import SYSTEM_CLOCK
from rakka_runtime.types import Attempt, ChatResult, TokenChunk

if TYPE_CHECKING:
    from rakka_runtime.routing.router import RouteState

__all__ = ["CANCEL_POLL", "RunHandle", "run", "run_routed", "wait"]

CANCEL_POLL = 0.1  # longest a thread waiting on a notifier goes without looking at cancel


def run(core: DeploymentCore, state: CallState) -> Iterator[TokenChunk]:
    """The whole request: request policies around attempts around exchanges.

    The only generator of a request (the same shape as the asyncio driver's): attempts and
    exchanges are plain calls, and a stream hands each block's chunks up as one list."""
    entered: list[Any] = []  # the tickets of the request policies entered so far
    outcome = Outcome()
    try:
        for policy in core.request_policies:
            entered.append(enter(policy, state))
        retries = 0
        first = True
        while True:
            recorded = len(state.attempts)
            attempt = Outcome()
            attempt_entered: list[Any] = []
            try:
                try:
                    for policy in core.attempt_policies:
                        attempt_entered.append(enter(policy, state))
                    stream = _open(core, state, attempt, attempt_entered)
                    if stream is not None:
                        try:
                            while (chunks := stream.next()) is not None:
                                for chunk in chunks:
                                    if first:
                                        state.first_chunk_at = time.monotonic()
                                        first = False
                                    attempt.delivered += 1
                                    outcome.delivered += 1
                                    yield chunk
                            stream.end(attempt)
                        finally:
                            stream.close()
                except GeneratorExit:
                    attempt.abandoned = True
                    raise
                except BaseException as exc:
                    attempt.error = exc
                    raise
                finally:
                    problem = core.leave_all(state, core.attempt_policies, attempt_entered, attempt)
                    if problem is not None and attempt.error is None and not attempt.abandoned:
                        raise plugin_failure(problem)
                break
            except InferenceError as exc:
                pause = core.after_failure(state, exc, retries, recorded, attempt.delivered)
            wait(pause, state, "during a retry backoff")
            retries += 1
        outcome.result = state.result
    except GeneratorExit:
        outcome.abandoned = True
        raise
    except BaseException as exc:
        outcome.error = exc
        if isinstance(exc, InferenceError):
            core.failed(state, exc)
        raise
    finally:
        problem = core.leave_all(state, core.request_policies, entered, outcome)
        if problem is not None and outcome.error is None and not outcome.abandoned:
            raise plugin_failure(problem)
    core.finished(state)


def run_routed(route: RouteState) -> Iterator[TokenChunk]:
    """A routed request: one deployment's whole run after another, as the router decides
    (:class:`~rakka_runtime.routing.router.RouteState`); each is tried a bounded number of
    times, so the loop ends."""
    while True:
        core, state = route.next()
        try:
            for chunk in run(core, state):
                yield route.chunk(chunk)
        except InferenceError as exc:
            route.failed(exc)
            continue
        finally:
            route.ended()
        route.succeeded()
        return


def _open(
    core: DeploymentCore, state: CallState, attempt: Outcome, entered: list[Any]
) -> _Stream | None:
    """One attempt's exchange up to its stream (``None``: it is complete, with its result).

    A 401 may only mean the key rotated and the watcher missed it: the session re-reads the
    credential and, if it changed, the exchange is repeated once. A 401 comes before any
    chunk."""
    used = core.credential_in_use()
    try:
        return _exchange(core, state, attempt, entered)
    except Unauthorized as exc:
        if not core.reauthorize(state, exc, used):
            raise
    return _exchange(core, state, attempt, entered)


def _exchange(
    core: DeploymentCore, state: CallState, attempt: Outcome, entered: list[Any]
) -> _Stream | None:
    """Send and read the head; a whole body (an answer or an error) is read here too. A
    stream is returned open, to be read by :class:`_Stream`, which then owns the response."""
    record = core.begin_exchange(state)
    how = "abandoned"
    response: sync_transport.Response | None = None
    try:
        session = core.session
        assert session is not None
        request = state.request
        http = core.codec.build_request(request, state.model, session.snapshot.headers)
        exchange = Exchange(core.codec, state, core.limits)
        response = sync_transport.send(
            session.pool,
            http.method,
            http.url,
            http.body,
            http.headers,
            connect=core.connect,
            request_timeout=core.request_timeout,
            deadline=state.deadline,
            on_cancel=state.on_cancel,
        )
        mode = core.head(state, exchange, response.status, response.headers, attempt, entered)
        reader = response.reader(core.read_timeout, state.deadline)
        if mode == "stream":
            how = "stream"
            return _Stream(core, state, record, response, reader, exchange)
        try:
            while block := reader():
                if not exchange.collect(block):
                    break
                if exchange.whole:
                    how = "complete"
                    break
            else:
                how = "complete"
            if mode == "error":
                raise exchange.error()
            result = exchange.result()
        except InferenceError as exc:
            raise exchange.broken(exc)  # noqa: B904 - the same error, or what it means here
        attempt.result = result
    except Exception as exc:
        raise core.exchange_failed(state, record, exc) from exc
    finally:
        if how != "stream":
            state.on_cancel(None)  # the connection may go back to the pool: never cut it
            if response is not None:
                response.finish(how)
    core.exchange_ok(state, record, result)
    return None


class _Stream(OpenStream):
    """:class:`OpenStream` read with urllib3; :meth:`close` hands the connection back or
    closes it, whatever ended the stream."""

    __slots__ = ("_read", "_response")

    def __init__(
        self,
        core: DeploymentCore,
        state: CallState,
        record: Attempt,
        response: sync_transport.Response,
        read: Callable[[], bytes],
        exchange: Exchange,
    ) -> None:
        super().__init__(core, state, record, exchange)
        self._response = response
        self._read = read

    def next(self) -> list[TokenChunk] | None:
        """The chunks the next block completes (maybe none); ``None`` once the stream ended."""
        if self.ended:
            return None
        try:
            block = self._read()
        except Exception as exc:
            raise self.failed(exc)  # noqa: B904 - failed() keeps the cause
        return self.chunks(block)

    def close(self) -> None:
        self._state.on_cancel(None)  # the connection may go back to the pool: never cut it
        self._response.finish(self.how)


def enter(policy: Policy, state: CallState) -> Any:
    """``policy.enter`` until it grants, waiting as it asks (on this thread)."""
    while True:
        decision = ask(policy, state)
        if not isinstance(decision, Wait):
            return decision
        try:
            wait(decision, state, f"while queued for {policy.name} ({decision.why})")
        except BaseException:
            abandon = getattr(policy, "abandon", None)
            if abandon is not None:
                abandon(state)
            raise


def wait(decision: Wait, state: CallState, what: str) -> None:
    """Carry out a wait on this thread; raises :class:`Cancelled` when the request is
    cancelled meanwhile (at once, or within :data:`CANCEL_POLL` on a notifier)."""
    clock = decision.clock or SYSTEM_CLOCK
    if state.cancelled:
        raise Cancelled(f"cancelled {what}")
    notifier = decision.notifier
    if notifier is None:
        if clock.wait(state.cancel_event(), decision.seconds):
            raise Cancelled(f"cancelled {what}")
        return
    block(decision, lambda: state.cancelled, CANCEL_POLL)
    if state.cancelled:
        raise Cancelled(f"cancelled {what}")


class RunHandle:
    """A request in flight: iterate for chunks, or call :meth:`result` for the aggregate.

    Nothing is sent until the handle is iterated (or :meth:`result` is called). Closing
    the handle early releases the connection and every permit the policies hold.
    """

    __slots__ = ("_chunks", "_done", "_error", "state")

    def __init__(self, state: CallState | RouteState, chunks: Iterator[TokenChunk]) -> None:
        self.state = state
        self._chunks = chunks
        self._done = False
        self._error: BaseException | None = None

    @property
    def request_id(self) -> str:
        return self.state.request.request_id

    def __iter__(self) -> RunHandle:
        # The handle is its own iterator: breaking out of a ``for`` loop leaves the stream
        # open, so ``result()`` can still drain it (a wrapper generator would close it).
        return self

    def __next__(self) -> TokenChunk:
        if self._error is not None:
            raise self._error
        try:
            return next(self._chunks)
        except StopIteration:
            self._done = True
            raise
        except BaseException as exc:
            self._done = True
            self._error = exc
            raise

    def result(self) -> ChatResult:
        """Drain the rest of the stream and return the aggregate (raises on failure)."""
        if self._error is not None:
            raise self._error
        if not self._done:
            for _ in self:
                pass
        if self.state.result is None:
            if self.state.cancelled:  # the reader already got Cancelled; so does this call
                raise Cancelled("cancelled by the caller")
            raise InferenceError("the request ended without a result")
        return self.state.result

    def cancel(self) -> None:
        """Stop the request from any thread, also while another thread reads it or it
        waits for response headers: the connection is cut (the reader gets
        :class:`Cancelled` at once, with the partial output), a wait (backoff, budget,
        rate-limit queue) ends at once, and no further attempt starts."""
        self.state.cancel()

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        self._done = True

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
