"""Contract tests: every body we build against OpenAI's and Azure's published schemas.

Requests are checked twice: they must validate, and every key they carry must be declared
by the schema (the specs leave objects open, so validation alone lets typos through).
Responses are built to validate against the response schemas, then parsed, so the parser
is known to accept what the spec says the API sends.

The specs are the trimmed copies in ``specs/`` (see ``specs/SOURCE.md``), so these tests run
everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from spec_schemas import AZURE, OPENAI, SchemaCheck, spec_schema, spec_validator

from rakka_provider_openai.wire import (
    ChatAggregate,
    build_chat_body,
    decode_stream_chunk,
    parse_completion,
)
from rakka_runtime.types import ExecuteBatch, SamplingParams, ToolCall, Usage


@pytest.fixture(scope="module")
def openai_request() -> SchemaCheck:
    return spec_validator(OPENAI, "CreateChatCompletionRequest")


@pytest.fixture(scope="module")
def azure_request() -> SchemaCheck:
    return spec_validator(AZURE, "createChatCompletionRequest")


# --- requests -----------------------------------------------------------------------------

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


@dataclass(frozen=True)
class Case:
    req: Callable[[], ExecuteBatch]
    model: str = "gpt-4o-mini"
    stream: bool = False


CASES: dict[str, Case] = {
    "minimal": Case(lambda: ExecuteBatch(messages=[{"role": "user", "content": "Hello"}])),
    "every_sampling_field": Case(
        lambda: ExecuteBatch(
            messages=[
                {"role": "system", "content": "Be brief.", "name": "policy"},
                {"role": "user", "content": "Hello", "name": "alice"},
            ],
            sampling=SamplingParams(
                temperature=0.7,
                top_p=0.95,
                max_tokens=256,
                stop=["\n\n", "END"],
                presence_penalty=0.5,
                frequency_penalty=-0.25,
                seed=42,
                n=3,
            ),
            user="user-1234",
        )
    ),
    "stop_as_string": Case(
        lambda: ExecuteBatch(
            messages=[{"role": "user", "content": "Count"}], sampling=SamplingParams(stop="5")
        )
    ),
    "content_parts": Case(
        lambda: ExecuteBatch(
            messages=[
                {"role": "system", "content": [{"type": "text", "text": "Describe images."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in these?"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                        {
                            "type": "image_url",
                            "image_url": {
                                "url": "data:image/png;base64,iVBORw0KGgo=",
                                "detail": "low",
                            },
                        },
                    ],
                },
            ]
        ),
        model="gpt-4o",
    ),
    "tools_auto": Case(
        lambda: ExecuteBatch(
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice="auto",
        )
    ),
    "tools_required": Case(
        lambda: ExecuteBatch(
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
        )
    ),
    "tools_named": Case(
        lambda: ExecuteBatch(
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    ),
    "json_object": Case(
        lambda: ExecuteBatch(
            messages=[{"role": "user", "content": "Reply in JSON."}],
            response_format={"type": "json_object"},
        )
    ),
    "json_schema": Case(
        lambda: ExecuteBatch(
            messages=[{"role": "user", "content": "Extract the city."}],
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "city",
                    "description": "The city mentioned.",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                        "additionalProperties": False,
                    },
                },
            },
        ),
        model="gpt-4o-2024-08-06",
    ),
    "o1_max_completion_tokens": Case(
        lambda: ExecuteBatch(
            messages=[{"role": "user", "content": "Think."}],
            sampling=SamplingParams(max_tokens=2000),
        ),
        model="o1-2024-12-17",
    ),
    "o4_mini_max_completion_tokens": Case(
        lambda: ExecuteBatch(
            messages=[{"role": "user", "content": "Think."}],
            sampling=SamplingParams(max_tokens=2000),
        ),
        model="o4-mini",
    ),
    "gpt5_max_completion_tokens": Case(
        lambda: ExecuteBatch(
            messages=[{"role": "user", "content": "Think."}],
            sampling=SamplingParams(max_tokens=2000, seed=1),
        ),
        model="gpt-5-mini-2025-08-07",
    ),
    "streaming": Case(
        lambda: ExecuteBatch(
            messages=[{"role": "user", "content": "Stream please"}],
            sampling=SamplingParams(max_tokens=50, temperature=0.0),
        ),
        stream=True,
    ),
    "streaming_tools": Case(
        lambda: ExecuteBatch(
            messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL]
        ),
        stream=True,
    ),
    "tool_round_trip": Case(
        lambda: ExecuteBatch(
            messages=[
                {"role": "user", "content": "Weather in Paris and Oslo?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        ToolCall(
                            id="call_1", name="get_weather", arguments='{"city":"Paris"}'
                        ).as_dict(),
                        ToolCall(
                            id="call_2", name="get_weather", arguments='{"city":"Oslo"}'
                        ).as_dict(),
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c":18}'},
                {"role": "tool", "tool_call_id": "call_2", "content": '{"temp_c":9}'},
            ],
            tools=[WEATHER_TOOL],
        )
    ),
    "extra_body_known_fields": Case(
        lambda: ExecuteBatch(
            messages=[{"role": "user", "content": "Hi"}],
            extra_body={"logprobs": True, "top_logprobs": 2, "parallel_tool_calls": False},
        )
    ),
}


def _built(case: Case, *, azure: bool) -> dict[str, Any]:
    raw = build_chat_body(case.req(), model=case.model, stream=case.stream, azure=azure)
    out = json.loads(raw)
    assert isinstance(out, dict)
    return out


@pytest.mark.parametrize("name", CASES)
def test_openai_request_matches_schema(name: str, openai_request: SchemaCheck) -> None:
    openai_request.assert_valid(_built(CASES[name], azure=False))


@pytest.mark.parametrize("name", CASES)
def test_azure_request_matches_schema(name: str, azure_request: SchemaCheck) -> None:
    azure_request.assert_valid(_built(CASES[name], azure=True))


@pytest.mark.parametrize("name", [n for n in CASES if "max_completion_tokens" in n])
def test_reasoning_cases_really_send_max_completion_tokens(name: str) -> None:
    got = _built(CASES[name], azure=False)
    assert "max_completion_tokens" in got and "max_tokens" not in got


def test_streaming_case_really_sends_stream_options() -> None:
    got = _built(CASES["streaming"], azure=True)
    assert got["stream_options"] == {"include_usage": True}


def test_the_undeclared_key_check_catches_typos(
    openai_request: SchemaCheck, azure_request: SchemaCheck
) -> None:
    # Proof the strict check bites: each of these validates, yet carries a typo'd key.
    body = _built(CASES["tool_round_trip"], azure=False)
    body["temprature"] = 0.5
    body["messages"][0]["nmae"] = "x"
    body["messages"][1]["tool_calls"][0]["function"]["argument"] = "{}"
    body["tools"][0]["function"]["descripton"] = "typo"
    typos = [
        "$.messages[0].nmae",
        "$.messages[1].tool_calls[0].function.argument",
        "$.temprature",
        "$.tools[0].function.descripton",
    ]
    assert openai_request.errors(body) == []
    assert sorted(openai_request.undeclared(body)) == typos
    del body["model"]
    assert azure_request.errors(body) == []
    assert sorted(azure_request.undeclared(body)) == typos


def test_azure_2024_10_21_has_no_model_field(azure_request: SchemaCheck) -> None:
    # Why build_chat_body(azure=True) leaves ``model`` out: the deployment in the URL picks it.
    body = _built(CASES["minimal"], azure=False)
    assert azure_request.errors(body) == []
    assert azure_request.undeclared(body) == ["$.model"]


def test_azure_2024_10_21_accepts_max_completion_tokens() -> None:
    common = spec_schema(AZURE, "chatCompletionsRequestCommon")
    assert "max_completion_tokens" in common["properties"]
    assert (
        "stream_options"
        in spec_schema(AZURE, "createChatCompletionRequest")["allOf"][1]["properties"]
    )


def test_developer_role_is_openai_only(
    openai_request: SchemaCheck, azure_request: SchemaCheck
) -> None:
    req = ExecuteBatch(messages=[{"role": "developer", "content": "Be terse."}])
    openai_request.assert_valid(json.loads(build_chat_body(req, model="o3", stream=False)))
    azure_body = json.loads(build_chat_body(req, model="o3", stream=False, azure=True))
    assert azure_request.errors(azure_body) != []


# --- responses ----------------------------------------------------------------------------

USAGE_WITH_DETAILS: dict[str, Any] = {
    "prompt_tokens": 1200,
    "completion_tokens": 350,
    "total_tokens": 1550,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 192,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}

OPENAI_TEXT_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "o3-mini-2025-01-31",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Paris is the capital of France.",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": USAGE_WITH_DETAILS,
    "service_tier": "default",
    "system_fingerprint": "fp_42bfad963b",
}

OPENAI_TOOL_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1699896916,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_abc123",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_def456",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 82, "completion_tokens": 40, "total_tokens": 122},
}


def _openai_stream() -> list[dict[str, Any]]:
    base = {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "service_tier": "default",
    }

    def with_choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    return [
        with_choice({"role": "assistant", "content": "", "refusal": None}),
        with_choice({"content": "Let me "}),
        with_choice({"content": "check."}),
        with_choice(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        with_choice(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    }
                ]
            }
        ),
        with_choice({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        with_choice({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz":"CET"}'}}]}),
        with_choice({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        with_choice({}, "tool_calls"),
        {**base, "choices": [], "usage": USAGE_WITH_DETAILS},
    ]


def test_openai_text_completion_validates_and_parses() -> None:
    spec_validator(OPENAI, "CreateChatCompletionResponse").assert_valid(OPENAI_TEXT_COMPLETION)
    result = parse_completion(OPENAI_TEXT_COMPLETION, "r1")
    assert result.text == "Paris is the capital of France."
    assert result.finish_reason == "stop"
    assert result.model == "o3-mini-2025-01-31"
    assert result.usage == Usage(
        input_tokens=1200, output_tokens=350, cached_tokens=1024, reasoning_tokens=192
    )


def test_openai_tool_completion_validates_and_parses() -> None:
    spec_validator(OPENAI, "CreateChatCompletionResponse").assert_valid(OPENAI_TOOL_COMPLETION)
    result = parse_completion(OPENAI_TOOL_COMPLETION, "r1")
    assert result.text == ""
    assert result.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("call_abc123", "get_weather", '{"city":"Paris"}'),
        ("call_def456", "get_weather", '{"city":"Oslo"}'),
    ]
    assert result.usage == Usage(input_tokens=82, output_tokens=40)


def test_openai_stream_validates_and_decodes() -> None:
    check = spec_validator(OPENAI, "CreateChatCompletionStreamResponse")
    agg = ChatAggregate()
    texts = []
    for obj in _openai_stream():
        check.assert_valid(obj)
        out = decode_stream_chunk(obj, "r1", agg)
        if out is not None:
            texts.append(out.text_delta)
    result = agg.result("r1")
    assert "".join(texts) == result.text == "Let me check."
    assert result.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("call_a", "get_weather", '{"city":"Paris"}'),
        ("call_b", "get_time", '{"tz":"CET"}'),
    ]
    assert result.usage == Usage(
        input_tokens=1200, output_tokens=350, cached_tokens=1024, reasoning_tokens=192
    )


SAFE: dict[str, Any] = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}

AZURE_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-7R1nGnsXO8n4oi9UPz2f3UHdgAYMn",
    "object": "chat.completion",
    "created": 1686676106,
    "model": "gpt-4o-2024-08-06",
    "system_fingerprint": "fp_5f20662549",
    "prompt_filter_results": [
        {
            "prompt_index": 0,
            "content_filter_results": {**SAFE, "jailbreak": {"filtered": False, "detected": False}},
        }
    ],
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hello from Azure.", "refusal": None},
            "content_filter_results": {
                **SAFE,
                "protected_material_text": {"filtered": False, "detected": False},
            },
            "logprobs": None,
        }
    ],
    "usage": {
        "prompt_tokens": 37,
        "completion_tokens": 6,
        "total_tokens": 43,
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


def test_azure_completion_validates_and_parses() -> None:
    spec_validator(AZURE, "createChatCompletionResponse").assert_valid(AZURE_COMPLETION)
    result = parse_completion(AZURE_COMPLETION, "r1")
    assert result.text == "Hello from Azure."
    assert result.finish_reason == "stop"
    assert result.usage == Usage(input_tokens=37, output_tokens=6)


def _azure_stream() -> list[dict[str, Any]]:
    base = {
        "id": "chatcmpl-8V1mzvFANVW81eY6AMkrEgfIMuFKN",
        "object": "chat.completion.chunk",
        "created": 1702405737,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_50a4261de5",
    }

    def with_choice(choice: dict[str, Any]) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "finish_reason": None, **choice}]}

    return [
        with_choice({"delta": {"role": "assistant", "content": ""}, "content_filter_results": {}}),
        with_choice({"delta": {"content": "Hello"}, "content_filter_results": SAFE}),
        with_choice({"delta": {"content": " there"}, "content_filter_results": SAFE}),
        with_choice({"delta": {}, "finish_reason": "stop", "content_filter_results": {}}),
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        },
    ]


def test_azure_stream_validates_and_decodes() -> None:
    # ``content_filter_results`` and ``usage`` are sent by the service but not declared in
    # the 2024-10-21 chunk schema, so these are validated without the undeclared-key check.
    check = spec_validator(AZURE, "createChatCompletionStreamResponse")
    agg = ChatAggregate()
    for obj in _azure_stream():
        check.assert_valid(obj, strict=False)
        decode_stream_chunk(obj, "r1", agg)
    result = agg.result("r1")
    assert result.text == "Hello there"
    assert result.finish_reason == "stop"
    assert result.usage == Usage(input_tokens=9, output_tokens=2)


def test_azure_prompt_filter_chunk_is_outside_its_own_schema_and_is_skipped() -> None:
    # What the service really sends first (empty id/model/object, null fingerprint) fails
    # the chunk schema it publishes; the decoder has to tolerate it, not trust the spec.
    first = {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "system_fingerprint": None,
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": SAFE}],
    }
    errors = spec_validator(AZURE, "createChatCompletionStreamResponse").errors(first)
    assert any(e.startswith("$.object") for e in errors)
    assert decode_stream_chunk(first, "r1", ChatAggregate()) is None


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("temperature", 5, False),
        ("max_tokens", "5", False),
        ("tool_choice", "sometimes", False),
        ("response_format", {"type": "xml"}, False),
        ("stop", None, True),  # ``nullable: true`` in the spec: null must pass
        ("n", None, True),
        ("stream_options", None, True),
    ],
)
def test_the_validator_is_neither_blind_nor_too_strict(
    field: str, value: object, ok: bool, openai_request: SchemaCheck, azure_request: SchemaCheck
) -> None:
    messages = [{"role": "user", "content": "hi"}]
    assert (openai_request.errors({"model": "m", "messages": messages, field: value}) == []) is ok
    assert (azure_request.errors({"messages": messages, field: value}) == []) is ok


def test_the_specs_are_kept_in_the_repository() -> None:
    # A fresh clone must run every contract test: nothing may be read from outside.
    from pathlib import Path

    from spec_schemas import require

    root = Path(__file__).resolve().parents[3]
    for spec in (OPENAI, AZURE):
        require(spec)
        assert spec.path.resolve().is_relative_to(root), spec.path
    assert (OPENAI.path.parent / "SOURCE.md").is_file()
    assert (OPENAI.path.parent / "LICENSE-openai-openapi").is_file()
