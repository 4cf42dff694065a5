"""The asyncio driver: runs a request as part of the calling task, over aiohttp.

The same steps as :mod:`rakka_runtime.drivers.sync`, with the same core decisions; only
the waiting and the reading are asyncio's. A request is an async generator of chunks.

Cancellation is asyncio's own: ``task.cancel()`` or ``asyncio.timeout()`` raise
``CancelledError`` wherever the request is (waiting for headers, reading, in a backoff,
queued for capacity, waiting for budget); every policy is left on the way out (slot
freed, tokens reconciled) and the connection is closed. :meth:`AsyncRunHandle.cancel`
(from any thread) cancels the task that is running the request and surfaces as
:class:`~rakka_runtime.errors.Cancelled`, as on the thread driver. A policy that does
I/O is awaited through its ``*_async`` twins (the Redis-shared backends, with redis-py's
asyncio client), or, declaring ``blocking = True``, called in a worker thread; never
called as it is on the event loop (:mod:`rakka_runtime.core.policy`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from rakka_runtime.core.exchange import Exchange
from rakka_runtime.core.flow import DeploymentCore, OpenStream, ask, plugin_failure
from rakka_runtime.core.policy import Outcome, Policy, Wait
from rakka_runtime.core.state import CallState
from rakka_runtime.errors import Cancelled, InferenceError, Unauthorized
from rakka_runtime.policies.clock import SYSTEM_CLOCK
from rakka_runtime.types import Attempt, ChatResult, TokenChunk

if TYPE_CHECKING:
    from rakka_runtime.drivers.aio_transport import AioTransport, Response
    from rakka_runtime.routing.router import RouteState
    from rakka_runtime.session import Session, SessionSnapshot

__all__ = ["AsyncRunHandle", "run", "run_routed"]

T = TypeVar("T")

log = logging.getLogger(__name__)


async def run(
    core: DeploymentCore, transport: AioTransport, state: CallState
) -> AsyncIterator[TokenChunk]:
    """The whole request: request policies around attempts around exchanges.

    The only async generator of a request: attempts and exchanges are coroutines, and a
    stream hands each block's chunks up as one list, so a chunk passes one generator on
    its way to the caller (each layer costs a resumption per chunk and objects per
    request), and a non-streamed request none but this one."""
    entered: list[Any] = []  # the tickets of the request policies entered so far
    # How the request ends, made into its Outcome only at the end (one object less held
    # across the network wait).
    error: BaseException | None = None
    abandoned = False
    delivered = 0
    try:
        await _enter_all(core, core.request_policies, state, entered)
        retries = 0
        first = True
        while True:
            recorded = len(state.attempts)
            attempt = Outcome()
            attempt_entered: list[Any] = []
            try:
                try:
                    await _enter_all(core, core.attempt_policies, state, attempt_entered)
                    # A 401 may only mean the key rotated and the watcher missed it: the
                    # session re-reads the credential (in a worker thread: a file, a token
                    # provider) and, if it changed, the exchange is repeated once. (The
                    # thread driver's _open, inline here: a coroutine of its own would be
                    # one more object per request in flight.)
                    used = core.credential_in_use()
                    try:
                        stream = await _exchange(core, transport, state, attempt, attempt_entered)
                    except Unauthorized as exc:
                        if not await asyncio.to_thread(core.reauthorize, state, exc, used):
                            raise
                        stream = await _exchange(core, transport, state, attempt, attempt_entered)
                    if stream is not None:
                        try:
                            while (chunks := await stream.next()) is not None:
                                for chunk in chunks:
                                    if first:
                                        state.first_chunk_at = time.monotonic()
                                        first = False
                                    attempt.delivered += 1
                                    delivered += 1
                                    yield chunk
                            stream.end(attempt)
                        finally:
                            await stream.close()
                except GeneratorExit:
                    attempt.abandoned = True
                    raise
                except BaseException as exc:
                    attempt.error = exc
                    raise
                finally:
                    problem = await _leave_all(
                        core, state, core.attempt_policies, attempt_entered, attempt
                    )
                    if problem is not None and attempt.error is None and not attempt.abandoned:
                        raise plugin_failure(problem)
                break
            except InferenceError as exc:
                pause = core.after_failure(state, exc, retries, recorded, attempt.delivered)
            await wait(pause, state, "during a retry backoff")
            retries += 1
    except GeneratorExit:
        abandoned = True
        raise
    except BaseException as exc:
        error = exc
        if isinstance(exc, InferenceError):
            core.failed(state, exc)
        elif isinstance(exc, asyncio.CancelledError):
            core.failed(state, Cancelled("the task was cancelled", partial=state.result))
        raise
    finally:
        ok = error is None and not abandoned
        outcome = Outcome(error, abandoned, delivered, False, state.result if ok else None)
        problem = await _leave_all(core, state, core.request_policies, entered, outcome)
        if problem is not None and ok:
            raise plugin_failure(problem)
    core.finished(state)


async def run_routed(
    route: RouteState, transport_of: Callable[[str], AioTransport]
) -> AsyncIterator[TokenChunk]:
    """A routed request: :func:`rakka_runtime.drivers.sync.run_routed`'s loop, awaited."""
    while True:
        core, state = route.next()
        try:
            async for chunk in run(core, transport_of(core.deployment.name), state):
                yield route.chunk(chunk)
        except InferenceError as exc:
            route.failed(exc)
            continue
        finally:
            route.ended()
        route.succeeded()
        return


async def _exchange(
    core: DeploymentCore,
    transport: AioTransport,
    state: CallState,
    attempt: Outcome,
    entered: list[Any],
) -> _Stream | None:
    """Send and read the head; a whole body (an answer or an error) is read here too. A
    stream is returned open, to be read by :class:`_Stream`, which then owns the response."""
    record = core.begin_exchange(state)
    how = "abandoned"
    response: Response | None = None
    try:
        session = core.session
        assert session is not None
        request = state.request
        # A token renewal never blocks the loop: only an expired token waits, in a thread.
        snapshot = session.snapshot_nowait()
        if snapshot is None:
            snapshot = await asyncio.to_thread(_snapshot_of, session)
        http = core.codec.build_request(request, state.model, snapshot.headers)
        sending = transport.send(
            http.method,
            http.url,
            http.body,
            http.headers,
            request_timeout=core.request_timeout,
            deadline=state.deadline,
        )
        # What a request holds across the network wait, the collector walks in its young
        # passes: nothing it no longer needs (docs/benchmarks.md, eighth session).
        del http, snapshot
        response = await sending
        exchange = Exchange(core.codec, state, core.limits)
        mode = core.head(
            state,
            exchange,
            response.status,
            response.headers,
            attempt,
            entered,
            core.loop_responders,
        )
        if core.io_responders:
            await _respond(core, state, entered)
        if mode == "stream":
            how = "stream"
            return _Stream(core, state, record, response, exchange)
        read, deadline = response.read, state.deadline
        try:
            while block := await read(deadline):
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
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise core.exchange_failed(state, record, exc) from exc
    finally:
        if response is not None and how != "stream":
            await response.finish(how)
    core.exchange_ok(state, record, result)
    return None


def _snapshot_of(session: Session) -> SessionSnapshot:
    """The session's credential snapshot, renewed if it must be (in a worker thread)."""
    return session.snapshot


class _Stream(OpenStream):
    """:class:`OpenStream` read with aiohttp; :meth:`close` hands the connection back or
    closes it, whatever ended the stream."""

    __slots__ = ("_response",)

    def __init__(
        self,
        core: DeploymentCore,
        state: CallState,
        record: Attempt,
        response: Response,
        exchange: Exchange,
    ) -> None:
        super().__init__(core, state, record, exchange)
        self._response = response

    async def next(self) -> list[TokenChunk] | None:
        """The chunks the next block completes (maybe none); ``None`` once the stream ended."""
        if self.ended:
            return None
        try:
            block = await self._response.read(self._state.deadline)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self.failed(exc)  # noqa: B904 - failed() keeps the cause
        return self.chunks(block)

    async def close(self) -> None:
        await self._response.finish(self.how)


async def _enter_all(
    core: DeploymentCore,
    policies: list[Policy],
    state: CallState,
    entered: list[Any],
) -> None:
    """Enter ``policies`` in order, each one's ticket appended to ``entered`` as it is
    granted. A policy without I/O that grants at once is asked right here (no coroutine
    of its own: most requests never wait); the others go through :func:`enter`."""
    io = core.io_policies
    for policy in policies:
        if io and policy in io:
            decision = await enter(policy, state)
        else:
            try:  # ask(policy, state), inline: one call less per policy and request
                decision = policy.enter(state)
            except InferenceError:
                raise
            except Exception as exc:
                raise plugin_failure(exc) from exc
            if isinstance(decision, Wait):
                decision = await enter(policy, state, decision)
        entered.append(decision)


async def enter(policy: Policy, state: CallState, pending: Wait | None = None) -> Any:
    """``policy.enter`` until it grants, waiting as it asks (without blocking the loop);
    ``pending``: the wait it already asked for."""
    enter_async = getattr(policy, "enter_async", None)
    blocking = getattr(policy, "blocking", False)
    while True:
        if pending is not None:
            try:
                await wait(pending, state, f"while queued for {policy.name} ({pending.why})")
            except BaseException:
                abandon = getattr(policy, "abandon", None)
                if abandon is not None:
                    abandon(state)
                raise
        if enter_async is None and not blocking:
            decision = ask(policy, state)
        else:
            entering = enter_async(state) if enter_async else asyncio.to_thread(policy.enter, state)
            try:
                decision = await _entered_whole(policy, state, entering)
            except InferenceError:
                raise
            except Exception as exc:
                raise plugin_failure(exc) from exc
        if not isinstance(decision, Wait):
            return decision
        pending = decision


async def wait(decision: Wait, state: CallState, what: str) -> None:
    """Carry out a wait in this task; the task's cancellation ends it at once."""
    clock = decision.clock or SYSTEM_CLOCK
    if state.cancelled:
        raise Cancelled(f"cancelled {what}")
    notifier = decision.notifier
    if clock is not SYSTEM_CLOCK:
        # A test's fake clock: time passes only by sleeping on it.
        if notifier is None or not await notifier.wait_async(decision.seen, 0.0):
            clock.sleep(decision.seconds)
        await asyncio.sleep(0)
    elif notifier is None:
        await asyncio.sleep(decision.seconds)
    else:
        await notifier.wait_async(decision.seen, decision.seconds)
    if state.cancelled:
        raise Cancelled(f"cancelled {what}")


async def _entered_whole(policy: Policy, state: CallState, entering: Any) -> Any:
    """Await an ``enter`` that does I/O. A cancel ends the wait at once, but the call
    itself runs to its end (a Redis reservation may already have run): what it then
    grants is left again in the background, as an abandoned attempt, and a place in line
    given up, so a cancel never strands capacity."""
    task = asyncio.ensure_future(entering)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(lambda done: _give_back(policy, state, done))
        raise


def _give_back(policy: Policy, state: CallState, entered: asyncio.Future[Any]) -> None:
    """What an ``enter`` whose caller was cancelled granted goes back (see above)."""
    if entered.cancelled() or entered.exception() is not None:
        return  # it refused or failed: nothing was granted
    decision = entered.result()
    if isinstance(decision, Wait):
        abandon = getattr(policy, "abandon", None)
        if abandon is not None:
            abandon(state)
        return
    leaving = asyncio.ensure_future(_leave(policy, state, decision, Outcome(abandoned=True)))
    _GIVING_BACK.add(leaving)  # a strong reference until it is done
    leaving.add_done_callback(_gave_back)


_GIVING_BACK: set[asyncio.Future[None]] = set()


def _gave_back(leaving: asyncio.Future[None]) -> None:
    _GIVING_BACK.discard(leaving)
    if not leaving.cancelled() and leaving.exception() is not None:
        log.warning("a cancelled request's grant could not be given back: %r", leaving.exception())


async def _leave(policy: Policy, state: CallState, ticket: Any, outcome: Outcome) -> None:
    """One policy's ``leave``, carried to its end even if the task is cancelled meanwhile."""
    leave_async = getattr(policy, "leave_async", None)
    if leave_async is not None:
        await _shielded(leave_async(state, ticket, outcome))
    elif getattr(policy, "blocking", False):
        await _shielded(asyncio.to_thread(policy.leave, state, ticket, outcome))
    else:
        policy.leave(state, ticket, outcome)


async def _leave_all(
    core: DeploymentCore,
    state: CallState,
    policies: list[Policy],
    entered: list[Any],
    outcome: Outcome,
) -> BaseException | None:
    """:meth:`DeploymentCore.leave_all`, awaiting the policies that do I/O."""
    if not core.io_policies:
        return DeploymentCore.leave_all(state, policies, entered, outcome)
    problem: BaseException | None = None
    while entered:
        ticket = entered.pop()
        try:
            await _leave(policies[len(entered)], state, ticket, outcome)
        except Exception as exc:
            if problem is None:
                problem = exc
    return problem


async def _respond(core: DeploymentCore, state: CallState, entered: list[Any]) -> None:
    """The response head, for the attempt policies that do I/O (``core.head`` told the
    others): their ``on_response_async``, or ``on_response`` in a worker thread."""
    for index, policy in core.io_responders:
        if index < len(entered):
            ticket = entered[index]
            respond = getattr(policy, "on_response_async", None)
            if respond is not None:
                await respond(state, ticket)
            else:
                await asyncio.to_thread(policy.on_response, state, ticket)  # type: ignore[attr-defined]


async def _shielded(awaitable: Any) -> Any:
    """Finish releasing capacity even when the task is being cancelled meanwhile."""
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


class AsyncRunHandle:
    """A request in flight on the asyncio driver: ``async for`` the chunks, or
    ``await handle.result()`` for the aggregate. Nothing is sent until it is iterated."""

    __slots__ = ("_chunks", "_done", "_error", "_loop", "_reading", "_task", "state")

    def __init__(self, state: CallState | RouteState, chunks: AsyncIterator[TokenChunk]) -> None:
        self.state = state
        self._chunks = chunks
        self._done = False
        self._error: BaseException | None = None
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False  # the caller's task is inside the request (only then cut it)

    @property
    def request_id(self) -> str:
        return self.state.request.request_id

    def __aiter__(self) -> AsyncRunHandle:
        return self

    async def __anext__(self) -> TokenChunk:
        if self._error is not None:
            raise self._error
        state = self.state
        if state.cancelled:  # cancelled between reads: end here, releasing everything
            await self.aclose()
            self._error = Cancelled("cancelled by the caller", partial=state.result)
            raise self._error
        task = self._task = asyncio.current_task()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        # Only while this task is inside the request may cancel() interrupt it: a cancel
        # between reads must not land in whatever else the task is doing. (A bound method,
        # registered only during the read: no reference cycle outlives the request, so
        # its objects are freed at once rather than by the cyclic garbage collector.)
        self._reading = True
        state.on_cancel(self._cancel_soon)
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            self._done = True
            raise
        except asyncio.CancelledError:
            self._done = True
            if state.cancelled and task is not None and task.cancelling():
                # Our own cancel (handle.cancel()): the request ends as Cancelled, and the
                # task, which nobody else cancelled, goes on.
                task.uncancel()
                error = Cancelled("cancelled by the caller", partial=state.result)
                self._error = error
                raise error from None
            raise
        except BaseException as exc:
            self._done = True
            self._error = exc
            raise
        finally:
            self._reading = False
            self._task = None
            state.on_cancel(None)

    async def result(self) -> ChatResult:
        """Drain the rest of the stream and return the aggregate (raises on failure)."""
        if self._error is not None:
            raise self._error
        if not self._done:
            async for _ in self:
                pass
        if self.state.result is None:
            raise InferenceError("the request ended without a result")
        return self.state.result

    def cancel(self) -> None:
        """Stop the request from any thread or task: it ends with :class:`Cancelled`."""
        self.state.cancel()

    async def aclose(self) -> None:
        """Stop reading: the connection is closed and every permit released now."""
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        self._done = True

    def _cancel_soon(self) -> None:
        """``state.cancel()`` from any thread: cancel the reading task in its loop."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._cancel_task)

    def _cancel_task(self) -> None:
        # Only if, when the loop gets here, the task is still inside this request.
        task = self._task
        if self._reading and task is not None and not task.done():
            task.cancel()

    async def __aenter__(self) -> AsyncRunHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
