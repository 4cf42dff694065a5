"""The emulator as the official ``openai`` SDK sees it, over real loopback HTTP."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionToolParam

from rakka_provider_openai.emulator import Emulator

KEY = "sk-test-0123456789abcdef"
MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name some things found in a forest."},
]
WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(keys=[KEY], model="gpt-4o-mini") as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.url + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def azure(emu: Emulator) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=emu.url, api_key=KEY, api_version="2024-10-21", max_retries=0
    )


def expected_prompt_tokens(messages: list[Any]) -> int:
    return sum(math.ceil(len(m["content"]) / 4) + 4 for m in messages)


def test_non_streamed_completion_is_deterministic(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    again = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    other = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "something else"}]
    )

    choice = first.choices[0]
    assert first.object == "chat.completion"
    assert first.model == "gpt-4o-mini"
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert choice.message.content == again.choices[0].message.content
    assert choice.message.content != other.choices[0].message.content
    assert first.id != again.id
    assert choice.message.content is not None
    assert len(choice.message.content.split(" ")) == 16
    assert first.usage is not None
    assert first.usage.completion_tokens == 16
    assert first.usage.prompt_tokens == expected_prompt_tokens(MESSAGES)
    assert first.usage.total_tokens == first.usage.prompt_tokens + 16


def test_streamed_text_and_usage_match_non_streamed(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(content_chunks) == 16  # one word per chunk
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 16
    assert whole.usage is not None
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_max_completion_tokens_cuts_with_length(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=5, n=3
    )

    assert [c.index for c in result.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" for c in result.choices)
    assert all(len((c.message.content or "").split(" ")) == 5 for c in result.choices)
    assert result.usage is not None and result.usage.completion_tokens == 15


def test_reasoning_models_refuse_max_tokens(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="o3-mini", messages=MESSAGES, max_tokens=10)

    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "max_tokens"
    ok = client.chat.completions.create(
        model="o3-mini", messages=MESSAGES, max_completion_tokens=10
    )
    assert ok.usage is not None and ok.usage.completion_tokens == 10


def test_usage_header_sets_cached_and_reasoning_tokens(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={
            "x-emulator-usage": json.dumps({"cached_tokens": 100, "reasoning_tokens": 7})
        },
    )

    usage = result.usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 100
    assert usage.prompt_tokens >= 100
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 7
    assert usage.completion_tokens == 16 + 7


def test_azure_non_streamed_carries_filter_results(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(model="my-deployment", messages=MESSAGES)

    raw = result.model_dump()
    assert result.model == "gpt-4o-mini"
    assert raw["prompt_filter_results"][0]["content_filter_results"]["hate"] == {
        "filtered": False,
        "severity": "safe",
    }
    assert raw["choices"][0]["content_filter_results"]["violence"]["filtered"] is False
    assert result.choices[0].message.content


def test_azure_stream_opens_with_prompt_filter_chunk(
    azure: openai.AzureOpenAI, client: openai.OpenAI
) -> None:
    stream = azure.chat.completions.create(
        model="my-deployment",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    opening = chunks[0].model_dump()
    assert opening["choices"] == []
    assert opening["prompt_filter_results"][0]["prompt_index"] == 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16


def test_tool_call_non_streamed(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=[WEATHER_TOOL]
    )

    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "days", "unit"}
    assert isinstance(args["city"], str) and isinstance(args["days"], int)
    assert args["unit"] in ("c", "f")


def test_tool_call_streamed_in_fragments(client: openai.OpenAI) -> None:
    other_tool: ChatCompletionToolParam = {
        "type": "function",
        "function": {"name": "noop", "parameters": {"type": "object"}},
    }
    whole = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        tools=[other_tool, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        tools=[other_tool, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    fragments = [call for chunk in stream for call in (chunk.choices[0].delta.tool_calls or [])]

    assert fragments[0].id and fragments[0].function and fragments[0].function.name == "get_weather"
    assert all(f.id is None and f.function and f.function.name is None for f in fragments[1:])
    argument_parts = [f.function.arguments for f in fragments[1:] if f.function]
    assert len(argument_parts) >= 3
    assert whole.choices[0].message.tool_calls is not None
    call = whole.choices[0].message.tool_calls[0]
    assert call.type == "function"
    assert "".join(p or "" for p in argument_parts) == call.function.arguments


def test_tool_choice_none_answers_with_text(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="none"
    )

    assert result.choices[0].message.tool_calls is None
    assert result.choices[0].finish_reason == "stop"


def test_wrong_key_raises_authentication_error(emu: Emulator) -> None:
    bad = openai.OpenAI(
        base_url=emu.url + "/v1", api_key="sk-wrong-key-00000000abcd", max_retries=0
    )
    bad_azure = openai.AzureOpenAI(
        azure_endpoint=emu.url, api_key="wrong", api_version="2024-10-21", max_retries=0
    )

    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.code == "invalid_api_key"
    assert "sk-wrong-key-00000000abcd" not in str(caught.value.body)
    assert "abcd" in str(caught.value.body)
    with pytest.raises(openai.AuthenticationError):
        bad_azure.chat.completions.create(model="d", messages=MESSAGES)


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("rate_limit", openai.RateLimitError, "rate_limit_exceeded"),
        ("insufficient_quota", openai.RateLimitError, "insufficient_quota"),
        ("server_error;status=503", openai.InternalServerError, None),
        ("context_length", openai.BadRequestError, "context_length_exceeded"),
        ("content_filter", openai.BadRequestError, "content_filter"),
        ("http_error;status=404", openai.NotFoundError, "model_not_found"),
        ("http_error;status=409", openai.ConflictError, "conflict"),
    ],
)
def test_faults_surface_as_sdk_exceptions(
    client: openai.OpenAI, fault: str, error: type[openai.APIStatusError], code: str | None
) -> None:
    with pytest.raises(error) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-emulator-fault": fault}
        )

    assert caught.value.code == code
    assert caught.value.response.headers["x-request-id"].startswith("req_")


def test_stream_error_event_raises_api_error(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={"x-emulator-fault": "stream_error"},
    )

    with pytest.raises(openai.APIError, match="server had an error"):
        list(stream)


def test_content_filter_finish_streamed_and_not(
    client: openai.OpenAI, azure: openai.AzureOpenAI
) -> None:
    headers = {"x-emulator-fault": "content_filter_finish"}
    whole = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers
    )
    chunks = list(
        azure.chat.completions.create(
            model="d", messages=MESSAGES, stream=True, extra_headers=headers
        )
    )

    assert whole.choices[0].finish_reason == "content_filter"
    assert len((whole.choices[0].message.content or "").split(" ")) == 8
    last = chunks[-1].model_dump()
    assert last["choices"][0]["finish_reason"] == "content_filter"
    assert last["choices"][0]["content_filter_results"]["violence"]["filtered"] is True
