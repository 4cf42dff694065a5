"""One attempt of a chat completion over the wire, streamed or not.

Hot path: the session snapshot is read once per request, the body is built once, stream
bytes go through the SSE decoder and one ``json.loads`` per event, and each event becomes
at most one ``TokenChunk``; nothing is validated per chunk beyond dict lookups.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from rakka_provider_openai.deployment import AzureVariant, chat_url, completion_limit_key
from rakka_provider_openai.wire import (
    ChatAggregate,
    build_chat_body,
    decode_stream_chunk,
    parse_completion,
)
from rakka_runtime import transport
from rakka_runtime.config.schema import DeploymentConfig
from rakka_runtime.error_classification import classify_http_error, error_for_finish_reason
from rakka_runtime.errors import InferenceError, NetworkError, ProtocolError, StreamInterrupted
from rakka_runtime.pricing import estimate_input_tokens
from rakka_runtime.runner import CallState
from rakka_runtime.session import Session
from rakka_runtime.sse import SSEDecoder
from rakka_runtime.types import ExecuteBatch, TokenChunk

_DONE = "[DONE]"


class OpenAIWireClient:
    """The ``WireClient`` of the ``openai`` and ``azure`` provider kinds."""

    def __init__(
        self,
        deployment: DeploymentConfig,
        session: Session,
        *,
        endpoint_override: str | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.deployment = deployment
        self.session = session
        variant = getattr(deployment, "variant")  # noqa: B009 - set by the provider models
        self.azure = isinstance(variant, AzureVariant)
        self.url = chat_url(variant, endpoint_override)
        self._limit_key = completion_limit_key(deployment)
        timeouts = deployment.timeouts
        self._connect = timeouts.connect
        self._request_timeout = timeouts.request_timeout
        self._read_timeout = timeouts.read_timeout
        self._on_close = on_close

    def estimate_input_tokens(self, request: ExecuteBatch) -> int:
        return estimate_input_tokens(request.messages)

    def send(self, state: CallState) -> Iterator[TokenChunk]:
        request = state.request
        snapshot = self.session.snapshot  # read once: rotation never changes a request mid-way
        body = build_chat_body(
            request,
            model=state.model,
            stream=request.stream,
            azure=self.azure,
            limit_key=self._limit_key,
        )
        send_headers = snapshot.headers
        if request.extra_headers is not None:  # merged only when set: the common path copies
            send_headers = {**send_headers, **request.extra_headers}
        response = transport.post(
            self.session.pool,
            self.url,
            body,
            send_headers,
            connect=self._connect,
            request_timeout=self._request_timeout,
            deadline=request.deadline,
        )
        state.on_cancel(partial(transport.abort, response))
        try:
            yield from self._read(state, response)
        finally:
            state.on_cancel(None)  # the connection may go back to the pool: never cut it

    def _read(self, state: CallState, response: Any) -> Iterator[TokenChunk]:
        request = state.request
        headers = response.headers
        # Lower-cased once here, so every policy and metric looks headers up directly.
        state.response_headers = transport.lowered_headers(headers)
        status = state.status = response.status
        if status >= 300:
            raw = transport.read_body(
                response, read_timeout=self._read_timeout, deadline=request.deadline
            )
            raise classify_http_error(status, raw, headers)
        provider_request_id = headers.get("x-request-id") or headers.get("apim-request-id")
        if request.stream:
            yield from self._stream(state, response, provider_request_id)
            return
        raw = transport.read_body(
            response, read_timeout=self._read_timeout, deadline=request.deadline
        )
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise ProtocolError(
                f"response body is not JSON: {raw[:80]!r}",
                status=status,
                request_id=provider_request_id,
            ) from exc
        if not isinstance(obj, dict):
            raise ProtocolError("response body is not a JSON object", status=status)
        result = parse_completion(obj, request.request_id)
        result.provider_request_id = provider_request_id
        result.headers = state.response_headers
        state.result = result
        filtered = error_for_finish_reason(result.finish_reason, partial=result)
        if filtered is not None:
            filtered.request_id = provider_request_id
            raise filtered

    def _stream(
        self, state: CallState, response: object, provider_request_id: str | None
    ) -> Iterator[TokenChunk]:
        request_id = state.request.request_id
        aggregate = ChatAggregate()
        decoder = SSEDecoder()
        loads = json.loads
        done = False
        try:
            for data in transport.iter_body(
                response,  # type: ignore[arg-type]
                read_timeout=self._read_timeout,
                deadline=state.request.deadline,
            ):
                for event in decoder.feed(data):
                    payload = event.data
                    if payload == _DONE:
                        done = True
                        continue
                    try:
                        obj = loads(payload)
                    except ValueError as exc:
                        raise ProtocolError(
                            f"stream event is not JSON: {payload[:80]!r}",
                            request_id=provider_request_id,
                        ) from exc
                    chunk = decode_stream_chunk(obj, request_id, aggregate)
                    if chunk is not None:
                        yield chunk
        except NetworkError as exc:
            # After a 200 the failure is the stream's, not the connection attempt's.
            raise StreamInterrupted(
                f"the connection closed mid-stream ({exc.message})",
                request_id=provider_request_id,
                partial=aggregate.result(request_id),
            ) from exc
        except InferenceError as exc:
            exc.partial = aggregate.result(request_id)
            if exc.request_id is None:
                exc.request_id = provider_request_id
            raise
        result = aggregate.result(request_id)
        result.provider_request_id = provider_request_id
        result.headers = state.response_headers
        if not done and result.finish_reason is None:
            raise StreamInterrupted(
                "the stream ended before [DONE] or a finish_reason",
                request_id=provider_request_id,
                partial=result,
            )
        state.result = result
        filtered = error_for_finish_reason(result.finish_reason, partial=result)
        if filtered is not None:
            filtered.request_id = provider_request_id
            raise filtered

    def close(self) -> None:
        self.session.close()
        if self._on_close is not None:
            self._on_close()
