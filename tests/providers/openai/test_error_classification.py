"""Table-driven error classification: one wire example (or more) per row of each table."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from rakka_provider_openai.errors import (
    CONTENT_FILTER_RULE,
    FINISH_REASON_ERRORS,
    HTTP_ERROR_RULES,
    STREAM_ERROR_FALLBACK,
    STREAM_ERROR_RULES,
    classify_http_error,
    classify_stream_error,
    error_fields,
    error_for_finish_reason,
    parse_error_body,
    parse_should_retry,
)
from rakka_runtime.error_classification import (
    ErrorFields,
    ErrorRule,
    match_rule,
    parse_retry_after,
)
from rakka_runtime.errors import (
    BadRequest,
    Conflict,
    ContentFiltered,
    ContextLengthExceeded,
    Forbidden,
    InferenceError,
    NotFound,
    ProtocolError,
    QuotaExceeded,
    RateLimited,
    ServerError,
    Timeout,
    Unauthorized,
)
from rakka_runtime.types import ChatResult


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def openai(
    message: str, type_: str | None, code: str | None = None, param: str | None = None
) -> bytes:
    """OpenAI's ``ErrorResponse``: all four fields always present (openapi.yaml ``Error``)."""
    return dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def azure(code: str, message: str, **extra: Any) -> bytes:
    """Azure OpenAI's ``errorResponse`` (inference.yaml): code and message, more optional."""
    return dumps({"error": {"code": code, "message": message, **extra}})


AZURE_CONTENT_FILTER = dumps(
    {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's"
            " content management policy. Please modify your prompt and retry. To learn more"
            " about our content filtering policies please read our documentation:"
            " https://go.microsoft.com/fwlink/?linkid=2198766",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    "hate": {"filtered": False, "severity": "safe"},
                    "jailbreak": {"filtered": False, "detected": False},
                    "self_harm": {"filtered": False, "severity": "safe"},
                    "sexual": {"filtered": False, "severity": "safe"},
                    "violence": {"filtered": True, "severity": "medium"},
                },
            },
        }
    }
)

# The spec's own spelling: ``inner_error`` / ``content_filter_results``, code not "content_filter".
AZURE_SPEC_INNER_ERROR = dumps(
    {
        "error": {
            "code": "BadRequest",
            "message": "The prompt violated one of more content filter rules.",
            "param": "prompt",
            "type": "invalid_request_error",
            "inner_error": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_results": {
                    "sexual": {"filtered": True, "severity": "high"},
                    "jailbreak": {"filtered": True, "detected": True},
                },
            },
        }
    }
)

OPENAI_RATE_LIMIT = openai(
    "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000,"
    " Used 29000, Requested 2000. Please try again in 2s. Visit"
    " https://platform.openai.com/account/rate-limits to learn more.",
    "tokens",
    "rate_limit_exceeded",
)
AZURE_RATE_LIMIT = azure(
    "429",
    "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21"
    " have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after"
    " 6 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further"
    " increase the default rate limit.",
)
INSUFFICIENT_QUOTA = openai(
    "You exceeded your current quota, please check your plan and billing details. For more"
    " information on this error, read the docs:"
    " https://platform.openai.com/docs/guides/error-codes/api-errors.",
    "insufficient_quota",
    "insufficient_quota",
)
CONTEXT_RESULTED = openai(
    "This model's maximum context length is 128000 tokens. However, your messages resulted in"
    " 130000 tokens. Please reduce the length of the messages.",
    "invalid_request_error",
    "context_length_exceeded",
    "messages",
)
CONTEXT_REQUESTED = azure(
    "context_length_exceeded",
    "This model's maximum context length is 8192 tokens. However, you requested 5000 tokens"
    " (4000 in the messages, 1000 in the completion). Please reduce the length of the messages"
    " or completion.",
    type="invalid_request_error",
    param="messages",
)
# A compatible server (vLLM) with the message but no code.
CONTEXT_MESSAGE_ONLY = dumps(
    {
        "object": "error",
        "message": "This model's maximum context length is 4,096 tokens. However, you requested"
        " 4,200 tokens in the messages, Please reduce the length of the messages.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
)
OPENAI_SERVER_ERROR = openai(
    "The server had an error while processing your request. Sorry about that!", "server_error"
)
NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

# (row name, case id, status, body, class). Every row of HTTP_ERROR_RULES appears here.
HTTP_CASES: list[tuple[str, str, int, bytes, type[InferenceError]]] = [
    ("content_filter", "azure", 400, AZURE_CONTENT_FILTER, ContentFiltered),
    ("content_filter", "azure-spec-inner_error", 400, AZURE_SPEC_INNER_ERROR, ContentFiltered),
    (
        "content_filter",
        "openai-type",
        400,
        openai(
            "Your request was rejected as a result of our safety system.", "content_filter", None
        ),
        ContentFiltered,
    ),
    (
        "content_filter",
        "openai-code-suffix",
        403,
        openai("Output blocked.", "invalid_request_error", "content_filter_blocked"),
        ContentFiltered,
    ),
    ("insufficient_quota", "openai", 429, INSUFFICIENT_QUOTA, QuotaExceeded),
    (
        "insufficient_quota",
        "type-only",
        429,
        openai("You exceeded your current quota.", "insufficient_quota", None),
        QuotaExceeded,
    ),
    ("rate_limited", "openai", 429, OPENAI_RATE_LIMIT, RateLimited),
    ("rate_limited", "azure", 429, AZURE_RATE_LIMIT, RateLimited),
    (
        "rate_limited",
        "azure-apim",
        429,
        dumps({"statusCode": 429, "message": "Rate limit is exceeded. Try again in 1 seconds."}),
        RateLimited,
    ),
    ("context_length_exceeded", "openai", 400, CONTEXT_RESULTED, ContextLengthExceeded),
    ("context_length_exceeded", "azure", 400, CONTEXT_REQUESTED, ContextLengthExceeded),
    ("context_length_exceeded", "message-only", 400, CONTEXT_MESSAGE_ONLY, ContextLengthExceeded),
    (
        "bad_request",
        "openai",
        400,
        openai(
            "Unsupported parameter: 'max_tokens' is not supported with this model."
            " Use 'max_completion_tokens' instead.",
            "invalid_request_error",
            "unsupported_parameter",
            "max_tokens",
        ),
        BadRequest,
    ),
    (
        "bad_request",
        "422",
        422,
        dumps(
            {
                "object": "error",
                "message": "[{'type': 'missing', 'loc': ('body', 'messages')}]",
                "type": "BadRequestError",
                "param": None,
                "code": 422,
            }
        ),
        BadRequest,
    ),
    (
        "bad_request",
        "azure-api-version",
        400,
        azure("BadRequest", "API version not supported"),
        BadRequest,
    ),
    (
        "unauthorized",
        "openai",
        401,
        openai(
            "Incorrect API key provided: sk-proj-****************************************abcd."
            " You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        Unauthorized,
    ),
    (
        "unauthorized",
        "azure",
        401,
        azure(
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to"
            " provide a valid key for an active subscription and use a correct regional API"
            " endpoint for your resource.",
        ),
        Unauthorized,
    ),
    (
        "forbidden",
        "openai",
        403,
        openai(
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        ),
        Forbidden,
    ),
    (
        "not_found",
        "openai",
        404,
        openai(
            "The model `gpt-5-turbo` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
        NotFound,
    ),
    (
        "not_found",
        "azure",
        404,
        azure(
            "DeploymentNotFound",
            "The API deployment for this resource does not exist. If you created the deployment"
            " within the last 5 minutes, please wait a moment and try again.",
        ),
        NotFound,
    ),
    (
        "timeout",
        "openai",
        408,
        openai("Request timed out.", "invalid_request_error"),
        Timeout,
    ),
    (
        "conflict",
        "openai",
        409,
        openai(
            "The request conflicts with another request in flight. Please try again.",
            "invalid_request_error",
            "conflict",
        ),
        Conflict,
    ),
    ("server_error", "openai-500", 500, OPENAI_SERVER_ERROR, ServerError),
    (
        "server_error",
        "openai-503",
        503,
        openai("The engine is currently overloaded, please try again later.", "server_error"),
        ServerError,
    ),
    ("server_error", "azure-500", 500, azure("500", "Internal server error"), ServerError),
    ("server_error", "nginx-502", 502, NGINX_502, ServerError),
    ("server_error", "empty-504", 504, b"", ServerError),
    (
        "other_4xx",
        "413-proxy",
        413,
        b"<html><body><h1>413 Request Entity Too Large</h1></body></html>",
        BadRequest,
    ),
    ("other_4xx", "418", 418, openai("I'm a teapot.", "invalid_request_error"), BadRequest),
    ("unexpected_status", "302", 302, b"", ProtocolError),
    ("unexpected_status", "600", 600, b"oops", ProtocolError),
]


def _by_row(rules: tuple[ErrorRule, ...]) -> dict[str, ErrorRule]:
    return {rule.name: rule for rule in rules}


@pytest.mark.parametrize(
    ("row", "status", "body", "cls"),
    [
        pytest.param(row, status, body, cls, id=f"{row}-{case}")
        for row, case, status, body, cls in HTTP_CASES
    ],
)
def test_http_row(row: str, status: int, body: bytes, cls: type[InferenceError]) -> None:
    rule = _by_row(HTTP_ERROR_RULES)[row]
    fields = parse_error_body(body)
    assert match_rule(HTTP_ERROR_RULES, status, fields or ErrorFields()) is rule
    error = classify_http_error(status, body, {})
    assert type(error) is rule.error
    assert isinstance(error, cls)
    assert error.status == status
    assert error.kind == rule.error.kind


def test_every_http_row_has_a_wire_example() -> None:
    names = [rule.name for rule in HTTP_ERROR_RULES]
    assert len(names) == len(set(names)), "row names must be unique"
    assert {case[0] for case in HTTP_CASES} == set(names)


def test_http_table_is_data() -> None:
    assert isinstance(HTTP_ERROR_RULES, tuple)
    assert HTTP_ERROR_RULES[0] is CONTENT_FILTER_RULE
    assert HTTP_ERROR_RULES[-1].statuses is None  # the catch-all is last


# --- details of what the rows produce --------------------------------------------------------


def test_rate_limit_is_retryable_and_quota_is_not() -> None:
    assert classify_http_error(429, OPENAI_RATE_LIMIT, {}).is_retryable
    quota = classify_http_error(429, INSUFFICIENT_QUOTA, {})
    assert isinstance(quota, QuotaExceeded)
    assert not quota.is_retryable
    assert quota.code == "insufficient_quota"


def test_message_is_the_servers_message() -> None:
    error = classify_http_error(429, OPENAI_RATE_LIMIT, {"x-request-id": "req_1"})
    assert error.message == json.loads(OPENAI_RATE_LIMIT)["error"]["message"]
    assert error.code == "rate_limit_exceeded"


def test_code_falls_back_to_type() -> None:
    assert classify_http_error(500, OPENAI_SERVER_ERROR, {}).code == "server_error"


def test_timeout_row_names_the_server_limit() -> None:
    error = classify_http_error(408, openai("Request timed out.", "invalid_request_error"), {})
    assert isinstance(error, Timeout)
    assert error.limit == "server"
    assert error.is_retryable


@pytest.mark.parametrize(
    ("body", "max_tokens", "requested"),
    [
        (CONTEXT_RESULTED, 128000, 130000),
        (CONTEXT_REQUESTED, 8192, 5000),
        (CONTEXT_MESSAGE_ONLY, 4096, 4200),
        (
            openai(
                "This model's maximum context length is 4097 tokens, however you requested 4162"
                " tokens (3162 in your prompt; 1000 for the completion). Please reduce your"
                " prompt; or completion length.",
                "invalid_request_error",
                "context_length_exceeded",
            ),
            4097,
            4162,
        ),
        # gpt-5 family.
        (
            openai(
                "Input tokens exceed the configured limit of 272000 tokens. Your messages"
                " resulted in 289650 tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                "context_length_exceeded",
            ),
            272000,
            289650,
        ),
        # vLLM: the total is what was requested, not the output allowance named first.
        (
            dumps(
                {
                    "object": "error",
                    "message": "This model's maximum context length is 131072 tokens. However,"
                    " you requested 128000 output tokens and your prompt contains at least 3073"
                    " input tokens, for a total of at least 131073 tokens. Please reduce the"
                    " length of the input prompt or the number of requested output tokens.",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                }
            ),
            131072,
            131073,
        ),
        # OpenRouter.
        (
            openai(
                "This endpoint's maximum context length is 32768 tokens. However, you requested"
                " about 42832 tokens (42832 of text input).",
                "invalid_request_error",
                None,
            ),
            32768,
            42832,
        ),
        # Anthropic's message through an OpenAI-compatible proxy.
        (
            openai(
                "input length and `max_tokens` exceed context limit: 199759 + 8192 > 200000,"
                " decrease input length or `max_tokens` and try again",
                "invalid_request_error",
                None,
            ),
            200000,
            207951,
        ),
        # Gemini's OpenAI-compatible endpoint.
        (
            openai(
                "The input token count (1066750) exceeds the maximum number of tokens allowed"
                " (1048575).",
                "invalid_request_error",
                "context_length_exceeded",
            ),
            1048575,
            1066750,
        ),
        (
            openai(
                "Your input exceeds the context window of this model. Please adjust your input"
                " and try again.",
                "invalid_request_error",
                None,
            ),
            None,
            None,
        ),
        (
            openai(
                "Input is too long for this model.",
                "invalid_request_error",
                "context_length_exceeded",
            ),
            None,
            None,
        ),
    ],
)
def test_context_length_tokens(body: bytes, max_tokens: int | None, requested: int | None) -> None:
    error = classify_http_error(400, body, {})
    assert isinstance(error, ContextLengthExceeded)
    assert error.max_context_tokens == max_tokens
    assert error.requested_tokens == requested


def test_context_length_code_outside_400_is_status_driven() -> None:
    # Only a 400 means "your prompt is too long"; a 500 quoting it is still the server's fault.
    assert isinstance(classify_http_error(500, CONTEXT_RESULTED, {}), ServerError)


def test_content_filter_wins_over_status() -> None:
    assert isinstance(classify_http_error(429, AZURE_CONTENT_FILTER, {}), ContentFiltered)
    assert isinstance(classify_http_error(500, AZURE_CONTENT_FILTER, {}), ContentFiltered)


# --- bodies that are not the error shape ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json at all",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'"just a string"',
        b"null",
        b'{"error": 42}',
        b'{"detail": [{"msg": "field required"}]}',
        b'{"error": {"message": ["not", "a", "string"]}}',
        b"{" * 100_000,
    ],
)
def test_garbage_bodies_classified_by_status(body: bytes) -> None:
    for status, cls in (
        (400, BadRequest),
        (401, Unauthorized),
        (429, RateLimited),
        (503, ServerError),
    ):
        error = classify_http_error(status, body, {})
        assert type(error) is cls
        assert error.message.startswith(f"HTTP {status} ")
        assert len(error.message) <= len(f"HTTP {status} Service Unavailable: ") + 200


def test_excerpt_is_short_single_line_and_tag_free() -> None:
    error = classify_http_error(502, NGINX_502, {})
    assert error.message == "HTTP 502 Bad Gateway: 502 Bad Gateway 502 Bad Gateway nginx"
    long = classify_http_error(500, b"x" * 10_000 + b"\n\ty", {})
    excerpt = long.message.split(": ", 1)[1]
    assert len(excerpt) == 200
    assert excerpt.endswith("\u2026")
    assert "\n" not in classify_http_error(500, b"a\nb\r\nc\x00d", {}).message


def test_empty_body_message_is_the_status_line() -> None:
    assert classify_http_error(503, b"", {}).message == "HTTP 503 Service Unavailable"
    assert classify_http_error(599, b"", {}).message == "HTTP 599"


def test_error_as_plain_string() -> None:
    error = classify_http_error(401, b'{"error": "Unauthorized"}', {})
    assert isinstance(error, Unauthorized)
    assert error.message == "Unauthorized"


def test_credentials_echoed_by_a_proxy_are_masked() -> None:
    key = "sk-proj-" + "A1b2C3d4" * 6
    azure_key = "0123456789abcdef0123456789abcdef"
    body = f"bad gateway; request was: Authorization: Bearer {key} api-key: {azure_key}".encode()
    message = classify_http_error(502, body, {}).message
    assert key not in message
    assert key[8:] not in message
    assert azure_key not in message
    json_body = openai(f"upstream said Bearer {key}", "server_error")
    assert key[8:] not in classify_http_error(500, json_body, {}).message


def test_servers_own_prose_about_keys_is_kept() -> None:
    prose = (
        "You didn't provide an API key. You need to provide your API key in an Authorization"
        " header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    )
    assert classify_http_error(401, openai(prose, "invalid_request_error"), {}).message == prose


def test_headers_never_reach_the_message() -> None:
    headers = {
        "x-request-id": "req_secret_marker",
        "Authorization": "Bearer sk-should-never-appear",
        "api-key": "azure-key-should-never-appear",
        "Set-Cookie": "session=cookie-should-never-appear",
    }
    for status, body in ((500, b""), (502, NGINX_502), (429, OPENAI_RATE_LIMIT)):
        error = classify_http_error(status, body, headers)
        text = f"{error} {error.to_dict()}"
        assert "never-appear" not in text
        assert "secret_marker" not in text


# --- headers -----------------------------------------------------------------------------------


def test_request_id_and_azure_fallback() -> None:
    assert classify_http_error(500, b"", {"x-request-id": "req_a"}).request_id == "req_a"
    azure_headers = {"apim-request-id": "0f9c2c4e-apim"}
    assert classify_http_error(500, b"", azure_headers).request_id == "0f9c2c4e-apim"
    both = {"apim-request-id": "apim", "x-request-id": "xreq"}
    assert classify_http_error(500, b"", both).request_id == "xreq"
    assert classify_http_error(500, b"", {}).request_id is None


def test_header_names_any_case() -> None:
    headers = {"X-Request-ID": "req_b", "X-Should-Retry": "False", "Retry-After": "3"}
    error = classify_http_error(503, b"", headers)
    assert error.request_id == "req_b"
    assert error.should_retry is False
    assert error.retry_after == 3.0
    assert not error.is_retryable


def test_header_lookup_with_case_insensitive_mapping() -> None:
    from urllib3 import HTTPHeaderDict

    headers = HTTPHeaderDict({"Retry-After-Ms": "250", "X-Request-Id": "req_c"})
    error = classify_http_error(429, OPENAI_RATE_LIMIT, headers)
    assert error.retry_after == 0.25
    assert error.request_id == "req_c"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("false", False),
        (" TRUE ", True),
        ("False", False),
        ("yes", None),
        ("", None),
    ],
)
def test_should_retry(value: str, expected: bool | None) -> None:
    assert parse_should_retry({"x-should-retry": value}) is expected
    error = classify_http_error(429, INSUFFICIENT_QUOTA, {"x-should-retry": value})
    assert error.should_retry is expected
    assert error.is_retryable is (False if expected is None else expected)


def test_should_retry_absent() -> None:
    assert parse_should_retry({}) is None
    assert parse_should_retry(None) is None


NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": " 20 "}, 20.0),
        ({"retry-after": "Wed, 01 Jan 2025 12:00:30 GMT"}, 30.0),
        ({"retry-after": "Wed, 01 Jan 2025 11:59:00 GMT"}, 0.0),  # in the past: never negative
        ({"retry-after": "Wed, 01 Jan 2025 12:01:00 -0000"}, 60.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "12.5"}, 0.0125),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # ms wins
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),  # an invalid ms falls back
        ({"retry-after": "-1"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "1_000"}, None),
        ({"retry-after": "tomorrow"}, None),
        ({"retry-after": ""}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    got = parse_retry_after(headers, now=NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_retry_after_http_date_uses_wall_clock_by_default() -> None:
    soon = datetime.now(UTC).timestamp() + 120
    date = format_datetime(datetime.fromtimestamp(soon, UTC), usegmt=True)
    got = classify_http_error(503, b"", {"Retry-After": date}).retry_after
    assert got is not None
    assert 110 <= got <= 121


# --- stream errors -----------------------------------------------------------------------------

STREAM_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("content_filter", "azure", json.loads(AZURE_CONTENT_FILTER)),
    (
        "content_filter",
        "openai",
        {"error": {"message": "Output blocked.", "type": "content_filter", "code": None}},
    ),
    ("insufficient_quota", "openai", json.loads(INSUFFICIENT_QUOTA)),
    ("context_length_exceeded", "openai", json.loads(CONTEXT_RESULTED)),
    ("rate_limited", "openai-tokens", json.loads(OPENAI_RATE_LIMIT)),
    (
        "rate_limited",
        "openai-requests",
        {"error": {"message": "Rate limit reached.", "type": "requests", "code": None}},
    ),
    ("server_error", "openai", json.loads(OPENAI_SERVER_ERROR)),
    (
        "bad_request",
        "openai",
        {
            "error": {
                "message": "Invalid 'tools[0].function.name'.",
                "type": "invalid_request_error",
                "param": "tools[0].function.name",
                "code": "invalid_value",
            }
        },
    ),
]


@pytest.mark.parametrize(
    ("row", "payload"),
    [pytest.param(row, payload, id=f"{row}-{case}") for row, case, payload in STREAM_CASES],
)
def test_stream_row(row: str, payload: dict[str, Any]) -> None:
    rule = _by_row(STREAM_ERROR_RULES)[row]
    fields = error_fields(payload)
    assert fields is not None
    assert match_rule(STREAM_ERROR_RULES, None, fields) is rule
    error = classify_stream_error(payload)
    assert type(error) is rule.error
    assert error.status is None
    assert error.message == payload["error"]["message"]


def test_every_stream_row_has_a_wire_example() -> None:
    names = [rule.name for rule in STREAM_ERROR_RULES]
    assert len(names) == len(set(names))
    assert {case[0] for case in STREAM_CASES} == set(names)


def test_stream_unknown_is_server_error() -> None:
    payload = {"error": {"message": "Something odd.", "type": "mystery", "code": None}}
    fields = error_fields(payload)
    assert fields is not None
    assert match_rule(STREAM_ERROR_RULES, None, fields) is None
    error = classify_stream_error(payload)
    assert type(error) is STREAM_ERROR_FALLBACK.error is ServerError
    assert error.message == "Something odd."


@pytest.mark.parametrize(
    ("code", "cls"),
    [("429", RateLimited), ("500", ServerError), ("401", Unauthorized), ("408", Timeout)],
)
def test_stream_azure_numeric_codes(code: str, cls: type[InferenceError]) -> None:
    error = classify_stream_error({"error": {"code": code, "message": "Azure said so."}})
    assert type(error) is cls
    assert error.status is None
    assert error.code == code


@pytest.mark.parametrize("code", ["²", "٤٢٩"])  # str.isdigit() is true of both
def test_stream_error_code_of_other_digits_is_not_a_status(code: str) -> None:
    error = classify_stream_error({"error": {"code": code, "message": "Odd digits."}})
    assert type(error) is STREAM_ERROR_FALLBACK.error
    assert error.message == "Odd digits."


def test_stream_error_without_message_or_shape() -> None:
    assert isinstance(classify_stream_error({"error": {}}), ServerError)
    assert isinstance(classify_stream_error({}), ServerError)
    assert classify_stream_error({}).message


def test_stream_error_reads_headers() -> None:
    error = classify_stream_error(
        json.loads(OPENAI_RATE_LIMIT), {"X-Request-Id": "req_s", "retry-after-ms": "100"}
    )
    assert error.request_id == "req_s"
    assert error.retry_after == pytest.approx(0.1)


# --- finish_reason -----------------------------------------------------------------------------


def test_finish_reason_content_filter() -> None:
    partial = ChatResult(request_id="req-1", text="Partial ans", finish_reason="content_filter")
    error = error_for_finish_reason("content_filter", partial=partial, request_id="req_p")
    assert isinstance(error, ContentFiltered)
    assert error.partial is partial
    assert error.request_id == "req_p"
    assert "filtered" in error.message
    assert set(FINISH_REASON_ERRORS) == {"content_filter"}


@pytest.mark.parametrize("reason", ["stop", "length", "tool_calls", "function_call", None, ""])
def test_other_finish_reasons_are_not_errors(reason: str | None) -> None:
    assert error_for_finish_reason(reason) is None
