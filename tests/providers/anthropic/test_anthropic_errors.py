"""Every error kind from its wire shape: the table, then each through both drivers."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from anthropic_support import anthropic_config
from driver_clients import Client

from rakka_provider_anthropic.codec import AnthropicCodec, ratelimit_feedback
from rakka_provider_anthropic.deployment import AnthropicDeployment
from rakka_provider_anthropic.emulator import Emulator
from rakka_provider_anthropic.errors import ERROR_TYPES
from rakka_runtime.config.schema import RakkaConfig
from rakka_runtime.provider import ContextLengthExceeded

CODEC = AnthropicCodec(AnthropicDeployment(provider="anthropic", model="claude-x"))


def body(kind: str, message: str) -> bytes:
    return json.dumps(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_body"}
    ).encode()


# (status, error.type, message) -> (kind, retryable)
WIRE = [
    (400, "invalid_request_error", "messages: field required", "bad_request", False),
    (
        400,
        "invalid_request_error",
        "prompt is too long: 208310 tokens > 200000 maximum",
        "context_length_exceeded",
        False,
    ),
    (401, "authentication_error", "invalid x-api-key", "unauthorized", False),
    (402, "billing_error", "credit balance too low", "quota_exceeded", False),
    (403, "permission_error", "no access", "forbidden", False),
    (404, "not_found_error", "model: claude-nope", "not_found", False),
    (413, "request_too_large", "Request exceeds the maximum size", "bad_request", False),
    (429, "rate_limit_error", "rate limited", "rate_limited", True),
    (500, "api_error", "Internal server error", "server_error", True),
    (504, "timeout_error", "timed out", "server_error", True),
    (529, "overloaded_error", "Overloaded", "server_error", True),
]


def test_the_table_has_a_wire_example_per_row() -> None:
    assert {row[1] for row in WIRE} == set(ERROR_TYPES)


@pytest.mark.parametrize(("status", "kind", "message", "expected", "retryable"), WIRE)
def test_error_body_classification(
    status: int, kind: str, message: str, expected: str, retryable: bool
) -> None:
    headers = {"request-id": "req_header", "retry-after": "7"}
    error = CODEC.classify_error(status, headers, body(kind, message))
    assert (error.kind, error.is_retryable, error.status) == (expected, retryable, status)
    assert error.request_id == "req_header" and error.retry_after == 7.0
    assert error.code == kind and error.message == message


def test_context_length_numbers_and_fallbacks() -> None:
    error = CODEC.classify_error(
        400,
        {},
        body("invalid_request_error", "prompt is too long: 208,310 tokens > 200,000 maximum"),
    )
    assert isinstance(error, ContextLengthExceeded)
    assert (error.requested_tokens, error.max_context_tokens) == (208310, 200000)
    assert error.request_id == "req_body"  # from the body when the header is missing
    # No JSON: the status decides, with an excerpt.
    proxy = CODEC.classify_error(502, {}, b"<html>Bad gateway</html>")
    assert proxy.kind == "server_error" and "502" in proxy.message
    assert CODEC.classify_error(429, {}, b"").kind == "rate_limited"
    assert CODEC.classify_error(418, {}, b"{}").kind == "bad_request"
    hint = CODEC.classify_error(529, {"x-should-retry": "false"}, body("overloaded_error", "x"))
    assert not hint.is_retryable


def test_keys_in_messages_are_redacted() -> None:
    error = CODEC.classify_error(
        401, {}, body("authentication_error", "bad key sk-ant-api03-abcdefghijklmnopqrstuvwxyz")
    )
    assert "abcdefghijklmnop" not in error.message


def test_refusal_is_content_filtered() -> None:
    from rakka_runtime.provider import ChatResult

    error = CODEC.check_result(ChatResult("r", text="no", finish_reason="content_filter"))
    assert error is not None and error.kind == "content_filtered" and error.code == "refusal"
    assert CODEC.check_result(ChatResult("r", finish_reason="stop")) is None


def test_ratelimit_headers_become_two_dimensions() -> None:
    now = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC).timestamp()
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-12-07T12:00:01Z",
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "29000",
        "anthropic-ratelimit-input-tokens-reset": "2026-12-07T12:00:02Z",
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "7000",
        "anthropic-ratelimit-output-tokens-reset": "2026-12-07T12:00:30.5+00:00",
    }
    # No combined header: the dimension that runs out first (fewest remaining).
    assert ratelimit_feedback(headers, now) == [
        ("requests", 49, 50, 1.0),
        ("tokens", 7000, 8000, 30.5),
    ]
    combined = {
        **headers,
        "anthropic-ratelimit-tokens-limit": "38000",
        "anthropic-ratelimit-tokens-remaining": "36000",
        "anthropic-ratelimit-tokens-reset": "2026-12-07T11:59:00Z",  # past: 0, not negative
    }
    assert ratelimit_feedback(combined, now)[1] == ("tokens", 36000, 38000, 0.0)
    bad = {
        "anthropic-ratelimit-requests-remaining": "x",
        "anthropic-ratelimit-tokens-remaining": "5",
        "anthropic-ratelimit-tokens-reset": "soon",
    }
    assert ratelimit_feedback(bad, now) == [("tokens", 5, None, None)]
    assert ratelimit_feedback({}, now) == []
    assert ratelimit_feedback({"anthropic-ratelimit-tokens-remaining": "²"}, now) == []


# -- through the runtime, both drivers -------------------------------------------------------

FAULTS = [
    ("overloaded", "server_error", 529),
    ("api_error", "server_error", 500),
    ("rate_limit;retry_after=0", "rate_limited", 429),
    ("authentication", "unauthorized", 401),
    ("permission", "forbidden", 403),
    ("not_found", "not_found", 404),
    ("request_too_large", "bad_request", 413),
    ("invalid_request", "bad_request", 400),
    ("prompt_too_long;tokens=300000;max=200000", "context_length_exceeded", 400),
    ("refusal", "content_filtered", None),
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "body"])
@pytest.mark.parametrize(
    ("fault", "kind", "status"), FAULTS, ids=[f[0].split(";")[0] for f in FAULTS]
)
def test_each_fault_through_the_runtime(
    client_for: Callable[[RakkaConfig], Client],
    anthropic_emulator: Emulator,
    fault: str,
    kind: str,
    status: int | None,
    stream: bool,
) -> None:
    client = client_for(
        anthropic_config(
            anthropic_emulator.url, retry__enabled=False, circuit_breaker__enabled=False
        )
    )
    error = client.failure("hello", stream=stream, extra_headers={"x-emulator-fault": fault})
    assert error.kind == kind and error.status == status
    if status is not None:
        assert error.request_id is not None and error.request_id.startswith("req_")
    if kind == "context_length_exceeded":
        assert isinstance(error, ContextLengthExceeded) and error.max_context_tokens == 200000


# after=3: message_start, content_block_start and ping went out, no text yet.
@pytest.mark.parametrize(
    "fault",
    [
        "overloaded;times=2",
        "stream_error;after=3;times=1",
        "rate_limit;retry_after=0;times=1",
        "cut;after=3;times=1",
    ],
)
def test_retryable_faults_are_retried_to_success(
    client_for: Callable[[RakkaConfig], Client], anthropic_emulator: Emulator, fault: str
) -> None:
    client = client_for(
        anthropic_config(
            anthropic_emulator.url, retry__initial_backoff="1ms", retry__max_backoff="5ms"
        )
    )
    result, deltas = client.run(
        "hello", extra_headers={"x-emulator-fault": fault + f";id={client.driver}"}
    )
    assert result.text and "".join(deltas).endswith(result.text.split(" ")[-1])
    assert result.attempts >= 2 and result.finish_reason == "stop"


@pytest.mark.parametrize("fault", ["stream_error;after=6", "cut;after=6"])
def test_a_stream_broken_after_text_is_interrupted_with_the_partial(
    client_for: Callable[[RakkaConfig], Client], fault: str
) -> None:
    # Events 20 ms apart, so the text reaches the caller before the break does (a break in
    # the same read as the text drops that text undelivered, and is retried instead).
    with Emulator(chunk_delay=0.02) as emu:
        client = client_for(
            anthropic_config(emu.url, retry__initial_backoff="1ms", retry__max_backoff="5ms")
        )
        error = client.failure("hello", extra_headers={"x-emulator-fault": fault})
    assert error.kind == "stream_interrupted" and len(error.attempts) == 1
    assert error.partial is not None and error.partial.text  # what arrived is kept


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "body"])
@pytest.mark.parametrize(("fault", "kind"), [("malformed", "protocol"), ("reset", "network")])
def test_malformed_answers_and_resets(
    client_for: Callable[[RakkaConfig], Client],
    anthropic_emulator: Emulator,
    fault: str,
    kind: str,
    stream: bool,
) -> None:
    client = client_for(
        anthropic_config(
            anthropic_emulator.url, retry__enabled=False, circuit_breaker__enabled=False
        )
    )
    error = client.failure("hello", stream=stream, extra_headers={"x-emulator-fault": fault})
    assert error.kind == kind
