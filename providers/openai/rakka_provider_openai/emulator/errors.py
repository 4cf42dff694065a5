"""Error bodies as OpenAI and Azure OpenAI put them on the wire.

Messages and codes copy the real services so the runtime's error classification is tested
against the shapes it will meet in production, not against shapes we invented.
"""

from __future__ import annotations

import json
from typing import Any

# One encoder for the process: json.dumps with non-default options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode("utf-8")


def openai_error(
    message: str, type_: str | None, *, param: str | None = None, code: str | None = None
) -> bytes:
    return dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def azure_error(code: str, message: str) -> bytes:
    return dumps({"error": {"code": code, "message": message}})


def mask_key(key: str) -> str:
    """Show a key the way OpenAI does: enough to recognise it, never enough to reuse it."""
    if len(key) < 16:
        return "*" * 4
    return f"{key[:3]}{'*' * 4}{key[-4:]}"


def invalid_url(method: str, path: str) -> bytes:
    return openai_error(f"Invalid URL ({method} {path})", "invalid_request_error")


def missing_key() -> bytes:
    return openai_error(
        "You didn't provide an API key. You need to provide your API key in an Authorization"
        " header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password"
        " field (with blank username) if you're accessing the API from your browser and are"
        " prompted for a username and password. You can obtain an API key from"
        " https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
    )


def invalid_key(key: str) -> bytes:
    return openai_error(
        f"Incorrect API key provided: {mask_key(key)}. You can find your API key at"
        " https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        code="invalid_api_key",
    )


AZURE_MISSING_KEY = azure_error(
    "401",
    "Access denied due to missing subscription key. Make sure to include subscription key"
    " when making requests to an API.",
)
AZURE_INVALID_KEY = azure_error(
    "401",
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide"
    " a valid key for an active subscription and use a correct regional API endpoint for your"
    " resource.",
)
AZURE_NOT_FOUND = azure_error("404", "Resource not found")

INVALID_JSON = openai_error(
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't"
    " using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was"
    " sent was not valid JSON. If you have trouble figuring out how to fix this, please contact"
    " us through our help center at help.openai.com.)",
    "invalid_request_error",
)


def bad_param(message: str, param: str | None, code: str | None = None) -> bytes:
    return openai_error(message, "invalid_request_error", param=param, code=code)


def unrecognized_argument(name: str) -> bytes:
    """Azure's answer to a field its api-version does not know."""
    return openai_error(f"Unrecognized request argument supplied: {name}", "invalid_request_error")


def max_tokens_unsupported() -> bytes:
    return bad_param(
        "Unsupported parameter: 'max_tokens' is not supported with this model."
        " Use 'max_completion_tokens' instead.",
        "max_tokens",
        "unsupported_parameter",
    )


def rate_limited(
    model: str, *, kind: str, limit: int, used: int, requested: int, wait: str
) -> bytes:
    unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
    return openai_error(
        f"Rate limit reached for {model} in organization org-emulator on {unit}:"
        f" Limit {limit}, Used {used}, Requested {requested}. Please try again in {wait}."
        " Visit https://platform.openai.com/account/rate-limits to learn more.",
        kind,
        code="rate_limit_exceeded",
    )


def azure_rate_limited(wait_seconds: str) -> bytes:
    return azure_error(
        "429",
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version"
        " 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier."
        f" Please retry after {wait_seconds} seconds. Please go here:"
        " https://aka.ms/oai/quotaincrease if you would like to further increase the default"
        " rate limit.",
    )


INSUFFICIENT_QUOTA = openai_error(
    "You exceeded your current quota, please check your plan and billing details. For more"
    " information on this error, read the docs:"
    " https://platform.openai.com/docs/guides/error-codes/api-errors.",
    "insufficient_quota",
    code="insufficient_quota",
)

_SERVER_MESSAGES = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
    504: "Gateway timeout.",
}


def server_error(status: int, *, azure: bool) -> bytes:
    message = _SERVER_MESSAGES.get(status, "The server had an error processing your request.")
    if azure:
        return azure_error(str(status), message)
    return openai_error(message, "server_error")


def http_error(status: int, model: str, *, azure: bool) -> bytes:
    if azure:
        return azure_error(str(status), _HTTP_ERRORS.get(status, ("Request failed.",))[0])
    message, type_, code = _HTTP_ERRORS.get(
        status, ("Request failed.", "invalid_request_error", None)
    )
    return openai_error(message.replace("{model}", model), type_, code=code)


_HTTP_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request (emulated).", "invalid_request_error", None),
    403: (
        "Country, region, or territory not supported",
        "request_forbidden",
        "unsupported_country_region_territory",
    ),
    404: (
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    408: ("Request timed out.", "invalid_request_error", None),
    409: (
        "The request conflicts with another request in flight. Please try again.",
        "invalid_request_error",
        "conflict",
    ),
}

CONTEXT_LENGTH = bad_param(
    "This model's maximum context length is 128000 tokens. However, your messages resulted in"
    " 130000 tokens. Please reduce the length of the messages.",
    "messages",
    "context_length_exceeded",
)

OPENAI_CONTENT_FILTER = openai_error(
    "Your request was rejected as a result of our safety system. Your prompt may contain text"
    " that is not allowed by our safety system.",
    "content_filter",
    param="prompt",
    code="content_filter",
)

AZURE_CONTENT_FILTER = dumps(
    {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's"
            " content management policy. Please modify your prompt and retry. To learn more about"
            " our content filtering policies please read our documentation:"
            " https://go.microsoft.com/fwlink/?linkid=2198766",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    "hate": {"filtered": True, "severity": "high"},
                    "jailbreak": {"filtered": False, "detected": False},
                    "self_harm": {"filtered": False, "severity": "safe"},
                    "sexual": {"filtered": False, "severity": "safe"},
                    "violence": {"filtered": False, "severity": "safe"},
                },
            },
        }
    }
)

STREAM_ERROR_EVENT = (
    b"data: "
    + dumps(
        {
            "error": {
                "message": "The server had an error while processing your request."
                " Sorry about that!",
                "type": "server_error",
                "code": None,
            }
        }
    )
    + b"\n\n"
)


def emulator_error(message: str) -> bytes:
    """A request the emulator itself cannot interpret (a bad fault spec, say)."""
    return openai_error(message, "invalid_request_error", code="emulator_bad_request")
