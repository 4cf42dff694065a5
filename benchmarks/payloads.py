"""What the bench clients send and what the bench server answers, in OpenAI's wire shapes.

Everything here is built once: the server writes precomputed bytes, so the only per-request
work it does is read the request and ``sendall`` a ready buffer. Standard library only, so
the server process starts fast and never imports the project it measures.
"""

from __future__ import annotations

import json
from typing import Any

MODEL = "gpt-4o-mini"
SERVED_MODEL = "gpt-4o-mini-2024-07-18"
RESPONSE_ID = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
CREATED = 1741569952
FINGERPRINT = "fp_06737a9306"

# A short but realistic prompt: a system message and one user turn.
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a concise assistant. Answer in plain prose."},
    {
        "role": "user",
        "content": "Explain in a few sentences why connection reuse matters for a client "
        "that streams chat completions over HTTP/1.1.",
    },
]

_ANSWER = (
    "Reusing a connection skips the TCP and TLS handshakes , so each new stream starts sooner"
    " and costs less CPU on both ends ."
)
# Tokens as a tokenizer splits them: the leading space belongs to the word.
_WORDS = tuple(w if i == 0 or w in ",." else " " + w for i, w in enumerate(_ANSWER.split()))

PROMPT_TOKENS = 42

# What api.openai.com sends besides the framing headers (values are representative).
_OPENAI_HEADERS = (
    ("date", "Mon, 10 Mar 2025 01:25:52 GMT"),
    ("access-control-expose-headers", "X-Request-ID"),
    ("openai-organization", "user-bench"),
    ("openai-processing-ms", "123"),
    ("openai-version", "2020-10-01"),
    ("x-ratelimit-limit-requests", "30000"),
    ("x-ratelimit-limit-tokens", "150000000"),
    ("x-ratelimit-remaining-requests", "29999"),
    ("x-ratelimit-remaining-tokens", "149999950"),
    ("x-ratelimit-reset-requests", "2ms"),
    ("x-ratelimit-reset-tokens", "0s"),
    ("x-request-id", "req_8bf9b5324070d6ba20e37a19e23bfc09"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
    ("cf-cache-status", "DYNAMIC"),
    ("x-content-type-options", "nosniff"),
    ("server", "cloudflare"),
    ("cf-ray", "91e3c9d5fb8e3c7a-AMS"),
)


def tokens(n: int) -> list[str]:
    """``n`` completion tokens (content pieces), deterministic."""
    return [_WORDS[i % len(_WORDS)] for i in range(n)]


def _usage(completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def completion_body(n_tokens: int) -> bytes:
    """A non-streamed ``chat.completion`` whose answer has ``n_tokens`` tokens."""
    return _dumps(
        {
            "id": RESPONSE_ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": SERVED_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(tokens(n_tokens)),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(n_tokens),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
    )


def _chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None) -> bytes:
    return _dumps(
        {
            "id": RESPONSE_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": SERVED_MODEL,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
            "usage": usage,
        }
    )


def stream_events(n_tokens: int) -> list[bytes]:
    """The SSE events of a stream with ``n_tokens`` content chunks (``include_usage`` on).

    A role chunk, one chunk per token, a finish chunk, the usage chunk, ``[DONE]``: every
    event but ``[DONE]`` is a JSON chunk, so a stream has ``n_tokens + 3`` JSON chunks.
    """

    def choice(delta: dict[str, Any], finish: str | None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    payloads = [_chunk(choice({"role": "assistant", "content": "", "refusal": None}, None), None)]
    payloads += [_chunk(choice({"content": tok}, None), None) for tok in tokens(n_tokens)]
    payloads.append(_chunk(choice({}, "stop"), None))
    payloads.append(_chunk([], _usage(n_tokens)))
    events = [b"data: " + p + b"\n\n" for p in payloads]
    events.append(b"data: [DONE]\n\n")
    return events


def json_chunks_per_stream(n_tokens: int) -> int:
    return n_tokens + 3


def _head(status: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def completion_response(n_tokens: int) -> bytes:
    """The whole HTTP/1.1 response (head and body) of a non-streamed completion."""
    body = completion_body(n_tokens)
    head = _head(
        "200 OK",
        [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("connection", "keep-alive"),
            *_OPENAI_HEADERS,
        ],
    )
    return head + body


def stream_response(n_tokens: int) -> bytes:
    """The whole HTTP/1.1 response of a stream: one HTTP chunk per SSE event, as OpenAI's.

    One event per HTTP chunk means a client reading with ``read1`` sees one event per read
    (http.client never returns more than the rest of the current chunk), however the bytes
    were coalesced on the socket: the per-event work is the same as on a live stream.
    """
    head = _head(
        "200 OK",
        [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
            *_OPENAI_HEADERS,
        ],
    )
    parts = [head]
    for event in stream_events(n_tokens):
        parts.append(b"%x\r\n%s\r\n" % (len(event), event))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def request_fields(*, stream: bool) -> dict[str, Any]:
    """What a minimal client sends, before encoding."""
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def request_body(*, stream: bool) -> bytes:
    """The body a minimal client sends (the floor uses it as-is)."""
    return _dumps(request_fields(stream=stream))
