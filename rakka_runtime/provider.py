"""The provider interface: everything a provider plugin needs, and nothing else.

A provider is a **codec**: it turns a :class:`ChatRequest` into an :class:`HttpRequest`,
and the response (a whole body, or a stream of server-sent events) back into
:class:`TokenChunk` values and a :class:`ChatResult`, classifying failures into the
:class:`InferenceError` tree. It never does I/O: the runtime's drivers (threads + urllib3,
asyncio + aiohttp) own connections, timeouts, cancellation and waiting, and run the same
codec. Only primitives cross the boundary: method, URL, headers and body bytes out;
status, lower-cased headers and body bytes (or decoded SSE events) in.

A provider plugin imports this module only::

    from rakka_runtime.provider import ProviderCodec, ProviderContext, hookimpl, ...

    @hookimpl
    def rakka_register_providers(registry):
        registry.register("myprovider", MyDeployment, make_codec)

    def make_codec(deployment: MyDeployment, context: ProviderContext) -> MyCodec:
        context.open_session(lambda secret: {"x-api-key": secret.reveal() if secret else ""})
        return MyCodec(deployment)

Everything a provider needs from the core is re-exported here (values, errors, the
error-rule engine, config base classes and checks): a provider imports this module, or the
package root's public API, and nothing else of ``rakka_runtime``. ``providers/openai`` is
the worked example (a test checks that it keeps to this).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from rakka_runtime import __version__
from rakka_runtime.config.checks import Endpoint, HeaderText, quote_value
from rakka_runtime.config.durations import parse_duration
from rakka_runtime.config.schema import ConfigModel, DeploymentConfig, EntraAuth
from rakka_runtime.error_classification import (
    NO_FIELDS,
    ErrorFields,
    ErrorRule,
    build_error,
    context_tokens,
    error_message,
    excerpt,
    header,
    label,
    match_rule,
    parse_retry_after,
    status_line,
)
from rakka_runtime.errors import (
    Backpressure,
    BadRequest,
    Conflict,
    ContentFiltered,
    ContextLengthExceeded,
    Forbidden,
    InferenceError,
    InvalidRequest,
    NotFound,
    ProtocolError,
    QuotaExceeded,
    RateLimited,
    ServerError,
    StreamInterrupted,
    Timeout,
    Unauthorized,
)
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.pricing import estimate_input_tokens
from rakka_runtime.registry import ProviderRegistry
from rakka_runtime.secret_value import Secret, SecretHeader
from rakka_runtime.sse import SSEEvent
from rakka_runtime.text_buffer import TextBuffer
from rakka_runtime.types import (
    ChatRequest,
    ChatResult,
    ExecuteBatch,
    Message,
    SamplingParams,
    TokenChunk,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    TopLogprob,
    Usage,
)

if TYPE_CHECKING:
    from rakka_runtime.session import Session

__all__ = [
    "NO_FIELDS",
    "Backpressure",
    "BadRequest",
    "ChatRequest",
    "ChatResult",
    "ConfigModel",
    "Conflict",
    "ContentFiltered",
    "ContextLengthExceeded",
    "DeploymentConfig",
    "Endpoint",
    "EntraAuth",
    "ErrorFields",
    "ErrorRule",
    "ExecuteBatch",
    "Feedback",
    "Forbidden",
    "HeaderBuilder",
    "HeaderText",
    "HttpRequest",
    "InferenceError",
    "InvalidRequest",
    "Message",
    "NotFound",
    "ProtocolError",
    "ProviderCodec",
    "ProviderContext",
    "ProviderFactory",
    "ProviderRegistry",
    "QuotaExceeded",
    "RateLimited",
    "SSEEvent",
    "SamplingParams",
    "Secret",
    "SecretHeader",
    "ServerError",
    "StreamDecoder",
    "StreamInterrupted",
    "TextBuffer",
    "Timeout",
    "TokenChunk",
    "TokenLogprob",
    "ToolCall",
    "ToolCallDelta",
    "TopLogprob",
    "Unauthorized",
    "Usage",
    "__version__",
    "build_error",
    "context_tokens",
    "decode_json",
    "encode_json",
    "error_message",
    "estimate_input_tokens",
    "excerpt",
    "header",
    "header_count",
    "hookimpl",
    "json_object",
    "label",
    "match_rule",
    "parse_duration",
    "parse_retry_after",
    "quote_value",
    "status_line",
]

ConfigT = TypeVar("ConfigT", bound=DeploymentConfig)
ConfigT_contra = TypeVar("ConfigT_contra", bound=DeploymentConfig, contravariant=True)

HeaderBuilder = Callable[[Secret | None], Mapping[str, str]]
"""How a credential (``None`` when the deployment has none) becomes request headers; run
once per credential change, never per request."""

Feedback = tuple[str, int, int | None, float | None]
"""One rate-limit dimension the provider reported: ``(dimension, remaining, limit,
reset_seconds)`` with dimension ``"requests"`` or ``"tokens"``."""


def header_count(value: str | None) -> int | None:
    """A count in a header (``x-ratelimit-remaining-requests: 29999``), or ``None`` when
    the header is absent or not a whole number. ASCII digits only: ``str.isdigit()`` is
    true of "²" too, which ``int()`` refuses; surrounding blanks are allowed."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        value = value.strip()  # only then: a header's value is almost never padded
        if not (value.isascii() and value.isdigit()):
            return None
    return int(value)


_decode_str = json.JSONDecoder().decode  # json.loads of a str, without its per-call checks


def _decode_std(data: str | bytes) -> Any:
    """The standard library's reading of ``data``: UTF-8 (RFC 8259), a leading BOM
    skipped; a body that is not UTF-8 still gets ``json.loads``'s UTF-16/32 sniffing."""
    if isinstance(data, str):
        return _decode_str(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return json.loads(data)
    return _decode_str(text.removeprefix("\ufeff"))


try:
    import orjson
except ImportError:  # pragma: no cover - a platform without orjson's wheel
    orjson = None  # type: ignore[assignment]
_fast_loads = None if orjson is None else orjson.loads


def decode_json(data: str | bytes) -> Any:
    """One JSON document (a body, a stream event's data) as Python values: the hot path
    of every codec, once per body or event.

    orjson reads it, three times faster than the standard library (docs/ARCHITECTURE.md,
    "JSON"). What orjson refuses but the standard library reads (``NaN``, a lone
    surrogate escape, a BOM, a number past a double's range) goes to the standard library,
    so a document reads as it always did, and a malformed one raises the standard
    library's ``ValueError``. One difference remains: an integer beyond 64 bits becomes a
    float (no field of these APIs carries one)."""
    if _fast_loads is not None:
        try:
            return _fast_loads(data)
        except ValueError:
            pass
    return _decode_std(data)


def _jsonable(value: object) -> object:
    # Messages are typed as Mapping/Sequence so callers may pass read-only views; JSON only
    # knows dict/list, and this hook runs only for the unusual objects, not per field.
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# The standard library's writer: one for every body (json.dumps with options builds one
# per call); NaN and infinities are refused, not written as JSON no server accepts.
_STD_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_jsonable
)
_fast_dumps = None if orjson is None else orjson.dumps


def encode_json(value: Any) -> bytes:
    """A request body as compact UTF-8 JSON: what a codec sends, once per request.

    orjson writes it (about a tenth of the standard library's time). orjson writes NaN and
    the infinities as ``null``, which would change what a request means: an output holding
    ``null`` is written again by the standard library, which refuses them, as is a value
    orjson refuses (a key that is not a string, an integer past 64 bits, a lone surrogate).
    Mappings and sequences of other types are written as objects and arrays.

    :raises ValueError: NaN, an infinity, or text that is not Unicode.
    :raises TypeError: a value JSON does not know.
    """
    if _fast_dumps is not None:
        try:
            data = _fast_dumps(value, default=_jsonable)
        except TypeError:
            pass
        else:
            if b"null" not in data:
                return data
    return _STD_ENCODER.encode(value).encode("utf-8")


def json_object(body: bytes, status: int) -> dict[str, Any]:
    """A whole JSON-object body, or ``protocol`` naming what it is instead."""
    try:
        obj = decode_json(body)
    except ValueError as exc:
        raise ProtocolError(f"response body is not JSON: {body[:80]!r}", status=status) from exc
    if not isinstance(obj, dict):
        raise ProtocolError("response body is not a JSON object", status=status)
    return obj


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What a codec asks the driver to send. ``headers`` already hold the session's."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


class StreamDecoder(Protocol):
    """A provider's reading of one streamed response, fed one SSE event at a time."""

    @property
    def done(self) -> bool:
        """The provider's end-of-stream marker arrived: the driver stops reading."""
        ...

    def event(self, event: SSEEvent) -> TokenChunk | None:
        """Fold one event in; return what the caller sees, if anything. Raises an
        :class:`InferenceError` for an error event or a malformed one."""
        ...

    def partial(self) -> ChatResult:
        """What arrived so far (carried by an error that cuts the stream)."""
        ...

    def finish(self) -> ChatResult:
        """The stream ended: the whole result, or :class:`StreamInterrupted` (carrying the
        partial result) when the provider's end was never seen."""
        ...


class ProviderCodec(Protocol):
    """One deployment's wire format; built by the provider's factory, used by every driver."""

    def build_request(
        self, request: ChatRequest, model: str, headers: Mapping[str, str]
    ) -> HttpRequest:
        """The HTTP request for one attempt; ``headers`` are the session's current ones.
        Raises :class:`InferenceError` (``invalid_request``) for what cannot be encoded."""
        ...

    def decode_body(
        self, request: ChatRequest, status: int, headers: Mapping[str, str], body: bytes
    ) -> ChatResult:
        """A whole successful (2xx) body as a result; raises ``protocol`` when malformed."""
        ...

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:
        """A decoder for one streamed response to ``request``."""
        ...

    def classify_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> InferenceError:
        """A non-2xx response as an error of the right kind (retry-after, request id...)."""
        ...

    def check_result(self, result: ChatResult) -> InferenceError | None:
        """An error a complete answer stands for (a content filter's finish reason), or None."""
        ...

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        """The provider's request id from the response headers (lower-cased keys)."""
        ...

    def rate_limit_feedback(self, headers: Mapping[str, str]) -> Sequence[Feedback]:
        """What the response headers say about the deployment's rate limits."""
        ...

    def estimate_input_tokens(self, request: ChatRequest) -> int:
        """Tokens the request's prompt will count as (for rate limits, budgets, cost)."""
        ...

    def close(self) -> None:
        """Release what the codec owns (an embedded emulator, ...). Idempotent."""
        ...


class ProviderContext:
    """What the runtime hands a provider factory: a way to open the deployment's session
    (credential resolution, rotation and the connection pool are the runtime's; how a
    credential becomes headers is the provider's) and, once opened, the session's
    endpoint override (an embedded emulator's URL)."""

    def __init__(self, open_session: Callable[[HeaderBuilder], Session]) -> None:
        self._open_session = open_session

    def open_session(self, build_headers: HeaderBuilder) -> Session:
        return self._open_session(build_headers)


class ProviderFactory(Protocol, Generic[ConfigT_contra]):
    """``factory(deployment, context) -> codec``, registered with the provider's config class."""

    def __call__(self, deployment: ConfigT_contra, context: ProviderContext) -> ProviderCodec: ...
