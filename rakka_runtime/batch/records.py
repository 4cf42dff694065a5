"""Output records: one JSON object per input line, in OpenAI's Batch API output format.

``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`` where
``body`` is a ``chat.completion`` rebuilt from the :class:`ChatResult`, plus four fields of
ours beside them: ``cost_usd``, ``attempts``, ``latency_ms`` and ``ttft_ms``. A failed
request has ``error: {"code": <error kind>, "message"}`` and ``response: null``, or a
response with the HTTP status (and ``body: null``) when the server answered.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from rakka_runtime.errors import InferenceError
from rakka_runtime.types import ChatResult, DeploymentAttempt, Usage

Record = dict[str, Any]

# Error codes of failures that happen here rather than in the runtime.
INVALID_REQUEST = "invalid_request"  # same as InvalidRequest.kind: the line cannot be sent
DUPLICATE_CUSTOM_ID = "duplicate_custom_id"
INTERNAL_ERROR = "internal_error"  # a bug (ours or a plugin's) raised something unexpected


def success_record(custom_id: str, result: ChatResult, *, status: int | None, model: str) -> Record:
    return {
        "id": _record_id(),
        "custom_id": custom_id,
        "response": {
            "status_code": status or 200,
            "request_id": result.provider_request_id,
            "body": completion_body(result, model),
        },
        "error": None,
        "cost_usd": result.cost_usd,
        "attempts": result.attempts,
        "latency_ms": _ms(result.latency_ms),
        "ttft_ms": _ms(result.ttft_ms),
        **_routed(result.deployment, result.deployment_attempts),
    }


def failure_record(
    custom_id: str,
    error: InferenceError,
    *,
    latency_ms: float | None,
    cost_usd: float | None,
) -> Record:
    response = None
    if error.status is not None:
        response = {"status_code": error.status, "request_id": error.request_id, "body": None}
    return {
        "id": _record_id(),
        "custom_id": custom_id,
        "response": response,
        "error": {"code": error.kind, "message": error.message},
        "cost_usd": cost_usd,
        "attempts": len(error.attempts) or 1,
        "latency_ms": _ms(latency_ms),
        "ttft_ms": None,
        **_routed(None, error.deployment_attempts),
    }


def _routed(deployment: str | None, tried: list[DeploymentAttempt]) -> Record:
    """A routed request's deployment and every deployment tried (nothing otherwise)."""
    if not tried:
        return {}
    return {"deployment": deployment, "deployment_attempts": [a.as_dict() for a in tried]}


def unsent_record(custom_id: str, code: str, message: str) -> Record:
    """A line that was never sent: it cost nothing and made no attempt."""
    return {
        "id": _record_id(),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
        "cost_usd": 0.0,
        "attempts": 0,
        "latency_ms": None,
        "ttft_ms": None,
    }


def completion_body(result: ChatResult, model: str) -> dict[str, Any]:
    """The ``chat.completion`` object the API would have sent (choice 0 only)."""
    message: dict[str, Any] = {
        "role": "assistant",
        # The API sends null content beside tool calls rather than an empty string.
        "content": result.text
        if result.text or not (result.tool_calls or result.refusal is not None)
        else None,
        "refusal": result.refusal,
    }
    if result.tool_calls:
        message["tool_calls"] = [call.as_dict() for call in result.tool_calls]
    return {
        "id": result.response_id or f"chatcmpl-{result.request_id}",
        "object": "chat.completion",
        "created": result.created if result.created is not None else int(time.time()),
        "model": result.model or model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None
                if result.logprobs is None and result.refusal_logprobs is None
                else {"content": result.logprobs, "refusal": result.refusal_logprobs},
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": usage_dict(result.usage),
    }


def usage_dict(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def encode(record: Record) -> bytes:
    """One output line, newline included (written with a single ``write``)."""
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8") + b"\n"


def outcome(record: Mapping[str, Any]) -> str:
    """``"ok"`` or the error code: what the summary counts a record as."""
    error = record.get("error")
    if isinstance(error, Mapping):
        return str(error.get("code") or "error")
    return "ok"


def _record_id() -> str:
    return f"batch_req_{uuid.uuid4().hex}"


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
