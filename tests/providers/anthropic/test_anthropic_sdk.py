"""The emulator as the official ``anthropic`` SDK sees it (a test-only dependency)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from rakka_provider_anthropic.emulator import Emulator

KEY = "sk-ant-sdk-test-0123456789abcdef"
TOOL: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(keys=[KEY]) as emulator:
        yield emulator


@pytest.fixture
def sdk(emu: Emulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=KEY, base_url=emu.url, max_retries=0) as client:
        yield client


def test_create(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        system="Be terse.",
        messages=[{"role": "user", "content": "Name some trees."}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.stop_reason == "end_turn"
    [block] = message.content
    assert block.type == "text" and block.text
    assert message.usage.output_tokens == len(block.text.split(" "))
    assert message._request_id is not None and message._request_id.startswith("req_")


def test_max_tokens_and_stop_sequences(sdk: anthropic.Anthropic) -> None:
    cut = sdk.messages.create(model="m", max_tokens=2, messages=[{"role": "user", "content": "x"}])
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 2


def test_stream_text(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "Name some trees."}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_stream_tool_use_input_is_assembled_by_the_sdk(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=256,
        tools=[TOOL],
        messages=[{"role": "user", "content": "Weather in a rather long city name"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    tool = final.content[-1]
    assert tool.type == "tool_use" and tool.name == "get_weather"
    assert tool.input == {
        "query": "Weather in a rather long city name",
        "count": tool.input["count"],
    }


def test_cache_usage(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(
        model="m",
        max_tokens=4,
        messages=[{"role": "user", "content": "x"}],
        extra_headers={
            "x-emulator-usage": '{"cache_creation_input_tokens": 7, "cache_read_input_tokens": 11}'
        },
    )
    assert message.usage.cache_creation_input_tokens == 7
    assert message.usage.cache_read_input_tokens == 11


@pytest.mark.parametrize(
    ("fault", "error", "kind"),
    [
        ("overloaded", anthropic.APIStatusError, "overloaded_error"),
        ("api_error", anthropic.InternalServerError, "api_error"),
        ("rate_limit", anthropic.RateLimitError, "rate_limit_error"),
        ("authentication", anthropic.AuthenticationError, "authentication_error"),
        ("permission", anthropic.PermissionDeniedError, "permission_error"),
        ("not_found", anthropic.NotFoundError, "not_found_error"),
        ("request_too_large", anthropic.APIStatusError, "request_too_large"),
        ("prompt_too_long", anthropic.BadRequestError, "invalid_request_error"),
    ],
)
def test_error_bodies(
    sdk: anthropic.Anthropic, fault: str, error: type[Exception], kind: str
) -> None:
    with pytest.raises(error) as caught:
        sdk.messages.create(
            model="m",
            max_tokens=4,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-emulator-fault": fault},
        )
    exc = caught.value
    assert isinstance(exc, anthropic.APIStatusError)
    assert isinstance(exc.body, dict) and exc.body["error"]["type"] == kind
    assert exc.request_id is not None and exc.request_id.startswith("req_")


def test_a_wrong_key_and_a_missing_max_tokens(emu: Emulator) -> None:
    with (
        anthropic.Anthropic(api_key="sk-ant-wrong", base_url=emu.url, max_retries=0) as bad,
        pytest.raises(anthropic.AuthenticationError),
    ):
        bad.messages.create(model="m", max_tokens=4, messages=[{"role": "user", "content": "x"}])
    with (
        anthropic.Anthropic(api_key=KEY, base_url=emu.url, max_retries=0) as sdk,
        pytest.raises(anthropic.BadRequestError, match="max_tokens"),
    ):
        sdk.messages.create(model="m", max_tokens=0, messages=[{"role": "user", "content": "x"}])


def test_stream_error_event(sdk: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        sdk.messages.stream(
            model="m",
            max_tokens=64,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-emulator-fault": "stream_error;after=4"},
        ) as stream,
    ):
        for _ in stream.text_stream:
            pass
    assert "Overloaded" in str(caught.value)


def test_retries_of_the_sdk_ride_over_a_fault(emu: Emulator) -> None:
    with anthropic.Anthropic(api_key=KEY, base_url=emu.url, max_retries=2) as sdk:
        message = sdk.messages.create(
            model="m",
            max_tokens=4,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-emulator-fault": "overloaded;retry_after=0;times=1;id=sdk-retry"},
        )
    assert message.content[0].type == "text"
