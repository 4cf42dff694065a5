"""One error tree rooted at :class:`InferenceError`.

Every failure a caller can see is an ``InferenceError`` with a snake_case ``kind``; what is
retried and what counts against the circuit breaker are class attributes, so policies
decide from the class, never from message text. Classifying wire shapes into these classes
is each provider codec's job, over the rule engine of :mod:`rakka_runtime.error_classification`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rakka_runtime.types import Attempt, ChatResult, DeploymentAttempt


class InferenceError(Exception):
    """Base of every error the runtime raises for a request.

    :ivar kind: snake_case name of the failure, stable across releases.
    :ivar retryable: whether the retry policy may try again.
    :ivar counts_as_circuit_failure: whether the breaker counts it.
    :ivar status: HTTP status when one was received.
    :ivar request_id: the provider's ``x-request-id`` when one was received.
    :ivar retry_after: seconds the server asked us to wait, when it said.
    """

    kind: ClassVar[str] = "inference_error"
    retryable: ClassVar[bool] = False
    counts_as_circuit_failure: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        should_retry: bool | None = None,
        partial: ChatResult | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.code = code
        # The server's ``x-should-retry`` hint, which overrides ``retryable``.
        self.should_retry = should_retry
        # Partial output received before the failure (streams), never duplicated.
        self.partial = partial
        self.attempts: list[Attempt] = []
        # A routed request: every deployment tried, in order.
        self.deployment_attempts: list[DeploymentAttempt] = []

    @property
    def is_retryable(self) -> bool:
        return self.retryable if self.should_retry is None else self.should_retry

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "status": self.status,
            "retryable": self.is_retryable,
        }

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class RateLimited(InferenceError):
    kind = "rate_limited"
    retryable = True


class QuotaExceeded(InferenceError):
    """429 ``insufficient_quota``: the account is out of credit; waiting will not help."""

    kind = "quota_exceeded"


class ContextLengthExceeded(InferenceError):
    kind = "context_length_exceeded"

    def __init__(
        self,
        message: str,
        *,
        max_context_tokens: int | None = None,
        requested_tokens: int | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.max_context_tokens = max_context_tokens
        self.requested_tokens = requested_tokens


class ContentFiltered(InferenceError):
    kind = "content_filtered"


class BadRequest(InferenceError):
    kind = "bad_request"


class Unauthorized(InferenceError):
    kind = "unauthorized"


class Forbidden(InferenceError):
    kind = "forbidden"


class NotFound(InferenceError):
    kind = "not_found"


class Conflict(InferenceError):
    """409: the API asks clients to retry these."""

    kind = "conflict"
    retryable = True


class ServerError(InferenceError):
    kind = "server_error"
    retryable = True
    counts_as_circuit_failure = True


LATE = 0.25
"""A timer that runs more than this many seconds after its due time ran late: the process
was too busy to watch the connection. The asyncio transport then gives the wait that time
back once; a timeout still noticed this late after that says nothing of the server."""


class Timeout(InferenceError):
    """A time limit fired; ``limit`` names which one (connect, request_timeout, ...).

    ``late_by``: how long after its due time the limit was noticed. An event loop that
    keeps up notices at once; one kept busy by the process's own work (thousands of
    streams on one core, a blocking call) notices late, and may have left bytes that came
    in time unread. The transport first gives such a wait the time it lost; a timeout
    noticed late even then says nothing about the server, and the circuit breaker does not
    count it (:attr:`noticed_late`)."""

    kind = "timeout"
    retryable = True
    counts_as_circuit_failure = True

    def __init__(
        self, message: str, *, limit: str = "request_timeout", late_by: float = 0.0, **kw: Any
    ) -> None:
        if late_by > LATE:
            message = (
                f"{message}; noticed {late_by:.2g}s after it was due (this process was busy "
                "or waited elsewhere), so the server may not be at fault"
            )
        super().__init__(message, **kw)
        self.limit = limit
        self.late_by = late_by

    @property
    def noticed_late(self) -> bool:
        return self.late_by > LATE


class NetworkError(InferenceError):
    kind = "network"
    retryable = True
    counts_as_circuit_failure = True


class StreamInterrupted(InferenceError):
    """The stream ended before ``[DONE]`` or a finish_reason; ``partial`` holds what came."""

    kind = "stream_interrupted"
    retryable = True
    counts_as_circuit_failure = True


class ProtocolError(InferenceError):
    """The server answered with something that is not the API's shape."""

    kind = "protocol"
    retryable = True
    counts_as_circuit_failure = True


class CircuitOpen(InferenceError):
    kind = "circuit_open"

    def __init__(self, message: str, *, retry_at: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_at = retry_at


class Backpressure(InferenceError):
    kind = "backpressure"


class BudgetExceeded(InferenceError):
    kind = "budget_exceeded"


class InvalidRequest(InferenceError):
    """Rejected locally before sending (bad messages, bad parameters)."""

    kind = "invalid_request"


class Cancelled(InferenceError):
    """The caller cancelled the request (:meth:`RunHandle.cancel`): never retried, and not
    held against the provider's circuit. ``partial`` holds what arrived before."""

    kind = "cancelled"


class PluginError(InferenceError):
    """A plugin (a provider's codec, a policy) failed with an error of its own, a bug rather
    than anything the provider said; the original exception is the ``__cause__``. Never
    retried and not held against the provider's circuit."""

    kind = "plugin_error"


class ConfigError(Exception):
    """A configuration problem: names the dotted path, the value and what is accepted.

    The CLI prints it on one line and exits 2.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


ERROR_KINDS: dict[str, type[InferenceError]] = {
    cls.kind: cls
    for cls in (
        RateLimited,
        QuotaExceeded,
        ContextLengthExceeded,
        ContentFiltered,
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        ServerError,
        Timeout,
        NetworkError,
        StreamInterrupted,
        ProtocolError,
        CircuitOpen,
        Backpressure,
        BudgetExceeded,
        InvalidRequest,
        Cancelled,
    )
}
