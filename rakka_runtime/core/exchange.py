"""One HTTP exchange read the same way by every driver: sans-IO, bytes in, results out.

A driver sends the codec's :class:`~rakka_runtime.provider.HttpRequest`, hands the
response head to :meth:`Exchange.head`, then feeds body bytes as they arrive. This class
decides what the bytes mean and applies the rules that must not differ between drivers:

- **Size limits.** A whole body is bounded by ``limits.max_body_bytes`` and one SSE
  line/event by ``limits.max_event_bytes``, counted after decoding, so neither a 100 MB
  body nor a line that never ends can exhaust memory; past a limit the exchange fails
  with ``protocol`` naming it.
- **Content encoding.** The request asks for ``identity``; a body compressed anyway
  (gzip, deflate) is decoded here in bounded steps (a gzip bomb is cut at the limit,
  never inflated whole); any other encoding is a ``protocol`` error.
- **Streams.** A 2xx answer to a streamed request must be ``text/event-stream`` (an HTML
  error page from a proxy is ``protocol``, not a broken stream). Reading stops at the
  provider's end marker (``[DONE]``): nothing after it is read or waited for.
- **Errors.** A non-2xx body is read up to :data:`MAX_ERROR_BODY` and classified by the
  codec.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rakka_runtime.errors import InferenceError, ProtocolError, StreamInterrupted
from rakka_runtime.sse import SSEDecoder

if TYPE_CHECKING:
    from rakka_runtime.config.schema import ResponseLimits
    from rakka_runtime.core.state import CallState
    from rakka_runtime.provider import ProviderCodec, StreamDecoder
    from rakka_runtime.types import ChatResult, TokenChunk

__all__ = ["MAX_ERROR_BODY", "Exchange"]

MAX_ERROR_BODY = 1 << 20
"""Bytes of an error body that are read; the rest is never read (the connection closes)."""

_STEP = 1 << 16  # most decoded bytes produced per decompression step


class Exchange:
    """The reading of one attempt's response. Modes after :meth:`head`: ``"error"``
    (a non-2xx body to collect, then :meth:`error`), ``"body"`` (collect, then
    :meth:`result`) or ``"stream"`` (:meth:`feed` each block, then :meth:`end`)."""

    __slots__ = (
        "_body",
        "_codec",
        "_decoder",
        "_failed",
        "_inflate",
        "_left",
        "_limit",
        "_max_event",
        "_pending",
        "_request_id",
        "_size",
        "_sse",
        "_state",
        "mode",
    )

    def __init__(self, codec: ProviderCodec, state: CallState, limits: ResponseLimits) -> None:
        self._codec = codec
        self._state = state
        self._limit = limits.max_body_bytes
        self._max_event = limits.max_event_bytes
        self._body: list[bytes] | None = None  # made by the first collect (never, for streams)
        self._size = 0
        self._left: int | None = None  # body bytes a content-length still promises
        self._pending = 0
        self._inflate: zlib._Decompress | None = None
        self._decoder: StreamDecoder | None = None
        self._sse: SSEDecoder | None = None
        self._request_id: str | None = None
        # A stream event that failed after others of its block decoded: raised by the next
        # feed() or end(), once the chunks before it reached the caller.
        self._failed: InferenceError | None = None
        self.mode = "body"

    # -- the head ---------------------------------------------------------------------------

    def head(self, status: int, headers: dict[str, str]) -> str:
        """Take the status and the lower-cased headers; returns the mode."""
        state, codec = self._state, self._codec
        state.status = status
        state.response_headers = headers
        state.rate_limit_feedback = codec.rate_limit_feedback(headers)
        self._request_id = codec.request_id(headers)
        encoding = headers.get("content-encoding")
        if encoding is not None and encoding != "identity":  # the usual: none, or identity
            encoding = encoding.strip().lower()
        if encoding not in (None, "identity", ""):
            if encoding in ("gzip", "x-gzip"):
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif encoding == "deflate":
                self._inflate = zlib.decompressobj(zlib.MAX_WBITS)
            elif status < 300:
                raise ProtocolError(
                    f"the response has content-encoding {encoding!r}, which is not supported "
                    "(the request asked for identity)",
                    status=status,
                    request_id=self._request_id,
                )
        if status >= 300:
            self.mode = "error"
            self._limit = min(self._limit, MAX_ERROR_BODY)
        elif state.request.stream:
            content_type = headers.get("content-type", "text/event-stream")
            if "text/event-stream" not in content_type.lower():
                self.mode = "error"  # collect an excerpt for the message
                self._limit = min(self._limit, MAX_ERROR_BODY)
                return self.mode
            self.mode = "stream"
            self._decoder = codec.stream_decoder(state.request)
            self._sse = SSEDecoder()
        else:
            length = headers.get("content-length")
            if length is not None and length.isascii() and length.isdigit():
                self._left = int(length)
                if self._left > self._limit:
                    raise self._too_big("response body", self._left)
        return self.mode

    @property
    def request_id(self) -> str | None:
        return self._request_id

    # -- whole bodies -----------------------------------------------------------------------

    def collect(self, data: bytes) -> bool:
        """Add body bytes; False once an error body holds all it will use (stop reading).
        Raises ``protocol`` when a successful body passes its limit."""
        body = self._body
        if body is None:
            body = self._body = []
        if self._left is not None:
            self._left -= len(data)
        for piece in self._decoded(data):
            self._size += len(piece)
            if self._size > self._limit:
                if self.mode == "error":
                    keep = len(piece) - (self._size - self._limit)
                    body.append(piece[:keep])
                    return False
                raise self._too_big("response body", self._size)
            body.append(piece)
        return True

    @property
    def whole(self) -> bool:
        """Whether the body's content-length is all in: the driver need not read on to
        see its end (one read, a wait and a timer arming less per answer)."""
        left = self._left
        return left is not None and left <= 0

    def body(self) -> bytes:
        body = self._body
        return b"" if body is None else body[0] if len(body) == 1 else b"".join(body)

    def error(self) -> InferenceError:
        """The error a non-2xx response (or a stream answered with no stream) stands for."""
        state = self._state
        status = state.status or 0
        body = self.body()
        if status < 300:
            content_type = state.response_headers.get("content-type", "none")
            excerpt = body[:80].decode("utf-8", "replace")
            return ProtocolError(
                f"expected a text/event-stream answer to a streamed request, got "
                f"{content_type}: {excerpt!r}",
                status=status,
                request_id=self._request_id,
            )
        error = self._codec.classify_error(status, state.response_headers, body)
        if error.request_id is None:
            error.request_id = self._request_id
        return error

    def result(self) -> ChatResult:
        """The decoded whole (non-streamed) body; raises what the answer stands for."""
        state = self._state
        result = self._codec.decode_body(
            state.request, state.status or 200, state.response_headers, self.body()
        )
        return self._complete(result)

    # -- streams ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[TokenChunk]:
        """Decode one block of a stream; returns the chunks it completed (maybe none)."""
        sse, decoder = self._sse, self._decoder
        assert sse is not None and decoder is not None
        if self._failed is not None:
            raise self._failed
        out: list[TokenChunk] = []
        for piece in self._decoded(data) if self._inflate is not None else (data,):
            events = sse.feed(piece)
            if not events:
                self._pending += len(piece)
                if self._pending > self._max_event:
                    raise self._too_big("one stream event", self._pending, "max_event_bytes")
                continue
            self._pending = 0
            for event in events:
                try:
                    chunk = decoder.event(event)
                except InferenceError as exc:
                    if not out:
                        raise
                    # The chunks before it are the caller's: deliver them, then fail.
                    self._failed = exc
                    return out
                if chunk is not None:
                    out.append(chunk)
                if decoder.done:  # the provider's end: whatever follows is not ours
                    return out
        return out

    @property
    def done(self) -> bool:
        decoder = self._decoder
        # A failed event ends the stream too (end() raises it): no waiting for more bytes.
        return self._failed is not None or (decoder is not None and decoder.done)

    def end(self) -> ChatResult:
        """The stream is over (its end marker, or the body ended): the whole result."""
        decoder = self._decoder
        assert decoder is not None
        if self._failed is not None:
            raise self._failed
        try:
            result = decoder.finish()
        except StreamInterrupted as exc:
            if exc.request_id is None:
                exc.request_id = self._request_id
            raise
        return self._complete(result)

    def partial(self) -> ChatResult | None:
        decoder = self._decoder
        return None if decoder is None else decoder.partial()

    def broken(self, error: InferenceError) -> InferenceError:
        """A transport failure mid-body, as the caller should see it: after a 2xx stream
        started it is the stream's failure (``stream_interrupted``, with the partial)."""
        if self.mode == "stream" and not isinstance(error, StreamInterrupted):
            if error.kind == "network":
                interrupted = StreamInterrupted(
                    f"the connection closed mid-stream ({error.message})",
                    request_id=self._request_id,
                    partial=self.partial(),
                )
                interrupted.__cause__ = error
                return interrupted
            if error.partial is None:
                error.partial = self.partial()
        if error.request_id is None:
            error.request_id = self._request_id
        return error

    # -- helpers ----------------------------------------------------------------------------

    def _complete(self, result: ChatResult) -> ChatResult:
        state = self._state
        result.provider_request_id = self._request_id
        result.headers = state.response_headers
        state.result = result
        verdict = self._codec.check_result(result)
        if verdict is not None:
            if verdict.request_id is None:
                verdict.request_id = self._request_id
            if verdict.partial is None:
                verdict.partial = result
            raise verdict
        return result

    def _decoded(self, data: bytes) -> Iterator[bytes]:
        inflate = self._inflate
        if inflate is None:
            yield data
            return
        try:
            piece = inflate.decompress(data, _STEP)
            while True:
                if piece:
                    yield piece
                tail = inflate.unconsumed_tail
                if not tail:
                    return
                piece = inflate.decompress(tail, _STEP)
        except zlib.error as exc:
            raise ProtocolError(
                f"the compressed response body is corrupt: {exc}",
                status=self._state.status,
                request_id=self._request_id,
            ) from exc

    def _too_big(self, what: str, size: int, limit: str = "max_body_bytes") -> ProtocolError:
        bound = self._max_event if limit == "max_event_bytes" else self._limit
        return ProtocolError(
            f"{what} is larger than limits.{limit} ({size} > {bound} bytes, decoded)",
            status=self._state.status,
            request_id=self._request_id,
        )
