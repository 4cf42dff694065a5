"""Translation to and from the Messages API, without a server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rakka_provider_anthropic.wire import (
    MessagesStream,
    build_messages_body,
    parse_message,
    parse_usage,
)
from rakka_runtime.provider import (
    ChatRequest,
    ContextLengthExceeded,
    InferenceError,
    ProtocolError,
    SSEEvent,
    StreamInterrupted,
    Usage,
)
from rakka_runtime.types import SamplingParams

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def body_of(request: ChatRequest, default_max_tokens: int = 4096) -> dict[str, Any]:
    raw = build_messages_body(request, model="claude-x", default_max_tokens=default_max_tokens)
    out: dict[str, Any] = json.loads(raw)
    return out


def test_system_is_lifted_out_and_max_tokens_defaults() -> None:
    body = body_of(
        ChatRequest(
            messages=[
                {"role": "system", "content": "Be terse."},
                {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
                {"role": "user", "content": "hi"},
            ],
            stream=False,
        ),
        default_max_tokens=123,
    )
    assert body == {
        "model": "claude-x",
        "max_tokens": 123,
        "system": "Be terse.\n\nNo emoji.",
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_sampling_stop_user_and_stream() -> None:
    body = body_of(
        ChatRequest(
            messages=[{"role": "user", "content": "hi"}],
            sampling=SamplingParams(
                temperature=0.5, top_p=0.9, max_tokens=7, stop="END", seed=3, presence_penalty=0.1
            ),
            user="u-1",
        )
    )
    assert body["max_tokens"] == 7 and body["temperature"] == 0.5 and body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"] and body["metadata"] == {"user_id": "u-1"}
    assert body["stream"] is True
    assert "seed" not in body and "presence_penalty" not in body


def test_tool_round_trip_becomes_tool_use_and_tool_result_blocks() -> None:
    messages = [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "cold"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "warm"},
        {"role": "user", "content": "Thanks"},
    ]
    body = body_of(
        ChatRequest(
            messages=messages,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    )
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        # Both results, then the next user text, in one user turn.
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "warm"},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"})],
)
def test_tool_choice_strings(choice: str, expected: dict[str, str]) -> None:
    body = body_of(
        ChatRequest(
            messages=[{"role": "user", "content": "x"}], tools=[WEATHER], tool_choice=choice
        )
    )
    assert body["tool_choice"] == expected


def test_images_and_response_format() -> None:
    body = body_of(
        ChatRequest(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                    ],
                }
            ],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}},
            },
        )
    )
    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]
    assert body["output_format"] == {"type": "json_schema", "schema": {"type": "object"}}


@pytest.mark.parametrize(
    "request_",
    [
        ChatRequest(messages=[{"role": "user", "content": "x"}], sampling=SamplingParams(n=2)),
        ChatRequest(
            messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"}
        ),
        ChatRequest(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]),
        ChatRequest(
            messages=[
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "a", "function": {"name": "f", "arguments": "{not json"}}
                    ],
                }
            ]
        ),
        ChatRequest(messages=[{"role": "tool", "content": "x"}]),
        ChatRequest(messages=[{"role": "user", "content": "x"}], extra_body={"stream": False}),
    ],
)
def test_what_cannot_be_encoded_is_invalid_request(request_: ChatRequest) -> None:
    with pytest.raises(InferenceError) as caught:
        body_of(request_)
    assert caught.value.kind == "invalid_request"


def test_usage_counts_the_whole_prompt_with_cache_parts() -> None:
    usage = parse_usage(
        {
            "input_tokens": 10,
            "cache_creation_input_tokens": 200,
            "cache_read_input_tokens": 3000,
            "output_tokens": 42,
        }
    )
    assert usage == Usage(
        input_tokens=3210, output_tokens=42, cached_tokens=3000, cache_write_tokens=200
    )
    with pytest.raises(ProtocolError):
        parse_usage({"input_tokens": "ten"})


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "something_new"),
    ],
)
def test_message_and_stop_reasons(stop_reason: str, finish: str) -> None:
    result = parse_message(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Hello "},
                {"type": "text", "text": "world"},
                {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"a": [1, 2]}},
            ],
            "stop_reason": stop_reason,
            "usage": {"input_tokens": 5, "output_tokens": 6},
        },
        "req-1",
    )
    assert result.text == "Hello world" and result.finish_reason == finish
    assert [(c.id, c.name, json.loads(c.arguments)) for c in result.tool_calls] == [
        ("toolu_9", "f", {"a": [1, 2]})
    ]
    assert result.response_id == "msg_1" and result.model == "claude-x"


def ev(name: str, **data: Any) -> SSEEvent:
    return SSEEvent(data=json.dumps({"type": name, **data}), event=name)


STREAM = [
    ev(
        "message_start",
        message={
            "id": "msg_s",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [],
            "stop_reason": None,
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 20,
                "output_tokens": 1,
            },
        },
    ),
    ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    ev("ping"),
    ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "Let me "}),
    ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "check."}),
    ev("content_block_stop", index=0),
    ev(
        "content_block_start",
        index=1,
        content_block={"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}},
    ),
    ev("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": ""}),
    ev(
        "content_block_delta",
        index=1,
        delta={"type": "input_json_delta", "partial_json": '{"city": "Os'},
    ),
    ev("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": 'lo"}'}),
    ev("content_block_stop", index=1),
    ev(
        "content_block_start",
        index=2,
        content_block={"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}},
    ),
    ev("content_block_stop", index=2),
    ev(
        "message_delta",
        delta={"stop_reason": "tool_use", "stop_sequence": None},
        usage={"output_tokens": 33},
    ),
    ev("message_stop"),
]


def test_stream_assembles_tool_input_per_block() -> None:
    decoder = MessagesStream("req-s")
    chunks = [c for c in (decoder.event(e) for e in STREAM) if c is not None]
    assert decoder.done
    assert "".join(c.text_delta for c in chunks) == "Let me check."
    deltas = [d for c in chunks for d in c.tool_call_delta or ()]
    # Indices count tool calls (0, 1), not content blocks (1, 2); id and name come first.
    assert [(d.index, d.id, d.name, d.arguments) for d in deltas] == [
        (0, "toolu_a", "get_weather", ""),
        (0, None, None, '{"city": "Os'),
        (0, None, None, 'lo"}'),
        (1, "toolu_b", "now", ""),
    ]
    result = decoder.finish()
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("toolu_a", "get_weather", '{"city": "Oslo"}'),
        ("toolu_b", "now", "{}"),
    ]
    assert result.finish_reason == "tool_calls" and chunks[-1].finish_reason == "tool_calls"
    assert result.usage == Usage(
        input_tokens=130, output_tokens=33, cached_tokens=100, cache_write_tokens=20
    )
    assert result.response_id == "msg_s" and result.model == "claude-x"


def test_stream_without_message_stop_is_interrupted_with_the_partial() -> None:
    decoder = MessagesStream("req-s")
    for event in STREAM[:5]:
        decoder.event(event)
    with pytest.raises(StreamInterrupted) as caught:
        decoder.finish()
    assert caught.value.partial is not None and caught.value.partial.text == "Let me check."


def test_stream_error_event_and_malformed_events() -> None:
    decoder = MessagesStream("req-s")
    decoder.event(STREAM[0])
    with pytest.raises(InferenceError) as caught:
        decoder.event(ev("error", error={"type": "overloaded_error", "message": "Overloaded"}))
    assert caught.value.kind == "server_error" and caught.value.is_retryable
    with pytest.raises(ContextLengthExceeded) as too_long:
        decoder.event(
            ev(
                "error",
                error={
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 5 tokens > 4 maximum",
                },
            )
        )
    assert too_long.value.requested_tokens == 5
    with pytest.raises(ProtocolError):
        decoder.event(SSEEvent(data="{not json", event="content_block_delta"))
    with pytest.raises(ProtocolError):
        decoder.event(
            ev(
                "content_block_delta",
                index=7,
                delta={"type": "input_json_delta", "partial_json": "{"},
            )
        )
