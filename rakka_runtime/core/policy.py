"""The policy interface: decisions about a request, with no I/O and no blocking wait.

A policy is asked at fixed points of a request and answers with a decision; the driver
(threads or asyncio) carries the decision out. That is how one policy object serves both
drivers, and why a plugin author writes a policy once.

Points, per policy ``scope``:

- ``"request"`` policies are entered once per logical request, before its first attempt,
  and left after its last (metrics, budget, retry);
- ``"attempt"`` policies are entered before every attempt and left when it ends (circuit
  breaker, rate limits).

``enter(state)`` returns a *ticket* (anything; handed back to ``leave``), or a
:class:`Wait` — the driver waits that long (ending early on the wait's notifier, on
cancel and on the deadline) and calls ``enter`` again — or raises an
:class:`~rakka_runtime.errors.InferenceError` to refuse. Policies are entered by
ascending ``order`` and left in the reverse order, always, however the request or
attempt ended (:class:`Outcome`).

Optional methods, looked up once when the chain is built:

- ``on_response(state, ticket)``: an attempt's response headers arrived
  (``state.response_headers``, ``state.rate_limit_feedback``);
- ``retry_wait(state, error, retries) -> float``: seconds to wait before another attempt
  after ``error``; raise (usually ``error`` itself) to give up. The first request policy
  that has it decides;
- ``abandon(state)``: the driver stopped waiting for this policy's ``enter`` (cancel,
  deadline) and will not call it again: forget the caller (leave a queue);
- ``close()``: the runtime is closing.

A policy whose calls do I/O (a Redis round trip) offers awaitable twins of them:
``enter_async``, ``leave_async`` and, if it has ``on_response``, ``on_response_async``, with
the same contracts. The asyncio driver awaits the twins on the event loop; the thread
driver calls the plain methods. A policy that only has blocking calls sets
``blocking = True`` instead: the asyncio driver then runs its calls in a worker thread.
Either way a cancel ends the caller's wait at once, while such an ``enter`` runs to its
end: what it then grants is left again (as an abandoned attempt), so a cancel never
strands capacity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from rakka_runtime.core.notify import Notifier
    from rakka_runtime.core.state import CallState
    from rakka_runtime.policies.clock import Clock
    from rakka_runtime.types import ChatResult

__all__ = ["Outcome", "Policy", "Wait", "does_io"]


@dataclass(frozen=True, slots=True)
class Wait:
    """Ask again after ``seconds`` on ``clock`` (the system clock when ``None``).

    ``notifier``: wake earlier when it fires (capacity freed); the driver then asks again
    at once. ``seen`` is the notifier's version when the decision was made. ``timed``:
    the wait ends at a predicted time (a bucket refills), not only on a notification —
    with a test's fake clock the driver then advances that clock instead of waiting.
    """

    seconds: float
    why: str = ""
    notifier: Notifier | None = None
    seen: int = 0
    timed: bool = True
    clock: Clock | None = None


@dataclass(slots=True)
class Outcome:
    """How a request or an attempt ended, as a policy's ``leave`` sees it.

    ``error`` is what ended it (any exception; ``None`` on success or when the caller
    abandoned it by closing the stream early: ``abandoned``). ``delivered`` counts chunks
    the caller received; ``responded`` says whether response headers arrived; ``result`` is
    the attempt's own result (usage) when it completed.
    """

    error: BaseException | None = None
    abandoned: bool = False
    delivered: int = 0
    responded: bool = False
    result: ChatResult | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.abandoned


@runtime_checkable
class Policy(Protocol):
    """A policy contributed by a plugin's ``rakka_request_policy`` hook."""

    name: str
    scope: Literal["request", "attempt"]
    order: int

    def enter(self, state: CallState) -> Any:
        """A ticket, or a :class:`Wait`; raise an ``InferenceError`` to refuse."""
        ...

    def leave(self, state: CallState, ticket: Any, outcome: Outcome) -> None: ...


def retry_wait_of(policy: Policy) -> Any:
    """The policy's ``retry_wait`` method, or ``None``."""
    return getattr(policy, "retry_wait", None)


def does_io(policy: Policy) -> bool:
    """Whether the asyncio driver must not call ``policy``'s plain methods on the event
    loop: it has awaitable twins (``enter_async``) or declares ``blocking``."""
    return getattr(policy, "enter_async", None) is not None or bool(
        getattr(policy, "blocking", False)
    )
