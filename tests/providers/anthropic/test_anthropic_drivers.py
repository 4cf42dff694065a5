"""The provider through both drivers against its emulator: text, tools, usage and cost."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from anthropic_support import anthropic_config
from driver_clients import Client

from rakka_provider_anthropic.emulator import Emulator
from rakka_runtime.config.loader import load_config
from rakka_runtime.config.schema import RakkaConfig
from rakka_runtime.pricing import PriceTable, cost_from_usage
from rakka_runtime.types import Usage

Make = Callable[[RakkaConfig], Client]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "body"])
def test_text_usage_and_cost(client_for: Make, anthropic_emulator: Emulator, stream: bool) -> None:
    client = client_for(anthropic_config(anthropic_emulator.url))
    result, deltas = client.run("Tell me about forests", stream=stream, max_tokens=100)
    assert result.text and result.finish_reason == "stop"
    if stream:
        words = [delta for delta in deltas if delta]  # the last chunk carries usage only
        assert "".join(words) == result.text and len(words) == len(result.text.split(" "))
    assert result.provider_request_id is not None
    assert result.provider_request_id.startswith("req_")
    assert result.response_id is not None and result.response_id.startswith("msg_")
    usage = result.usage
    assert usage is not None and usage.output_tokens == len(result.text.split(" "))
    rates = PriceTable.published().get("claude-sonnet-4-5")
    assert rates is not None
    assert result.cost_usd == pytest.approx(cost_from_usage(rates, usage), abs=0)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "body"])
def test_cache_reads_and_writes_are_priced_at_their_own_rates(
    client_for: Make, anthropic_emulator: Emulator, stream: bool
) -> None:
    client = client_for(anthropic_config(anthropic_emulator.url))
    counts = {
        "input_tokens": 1000,
        "cache_creation_input_tokens": 20_000,
        "cache_read_input_tokens": 300_000,
    }
    result, _ = client.run(
        "cached",
        stream=stream,
        max_tokens=5,
        extra_headers={"x-emulator-usage": json.dumps(counts)},
    )
    assert result.usage == Usage(
        input_tokens=321_000, output_tokens=5, cached_tokens=300_000, cache_write_tokens=20_000
    )
    # claude-sonnet-4-5: input 3.00, cache write 3.75, cache read 0.30, output 15.00 per 1M.
    expected = (1000 * 3.00 + 20_000 * 3.75 + 300_000 * 0.30 + 5 * 15.00) / 1e6
    assert result.cost_usd == pytest.approx(expected, rel=1e-12)
    assert result.cost_usd == pytest.approx(0.168075, rel=1e-12)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "body"])
def test_tool_calls_are_assembled(
    client_for: Make, anthropic_emulator: Emulator, stream: bool
) -> None:
    client = client_for(anthropic_config(anthropic_emulator.url))
    result, _ = client.run("Weather in Oslo", stream=stream, tools=[WEATHER])
    assert result.finish_reason == "tool_calls"
    assert result.text == "Calling get_weather."
    [call] = result.tool_calls
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    arguments = json.loads(call.arguments)
    assert arguments["query"] == "Weather in Oslo" and isinstance(arguments["count"], int)
    # Then the tool's answer goes back as a tool message; the model answers in text.
    conversation = [
        {"role": "user", "content": "Weather in Oslo"},
        {"role": "assistant", "content": result.text, "tool_calls": [call.as_dict()]},
        {"role": "tool", "tool_call_id": call.id, "content": "cold"},
    ]
    followup, _ = client.run(conversation, stream=stream, tools=[WEATHER])  # type: ignore[arg-type]
    assert followup.finish_reason == "stop" and followup.text and not followup.tool_calls


def test_forced_tool_choice_streams_json_in_fragments(
    client_for: Make, anthropic_emulator: Emulator
) -> None:
    client = client_for(anthropic_config(anthropic_emulator.url))
    runtime = client.runtime
    handle = runtime.execute(
        runtime.request(
            "A long question about the weather in Trondheim",
            tools=[WEATHER],
            tool_choice="required",
        )
    )
    fragments = [d for chunk in handle for d in chunk.tool_call_delta or ()]
    result = handle.result()
    assert result.text == ""  # a forced call has no text before it
    assert len(fragments) > 3 and {d.index for d in fragments} == {0}
    assert "".join(d.arguments for d in fragments) == result.tool_calls[0].arguments


def test_embedded_emulator_is_the_local_default() -> None:
    from rakka_runtime.runtime import Runtime

    with Runtime(load_config(["deployment=local-anthropic"])) as runtime:
        handle = runtime.stream("hello", max_tokens=3)
        text = "".join(chunk.text_delta for chunk in handle)
        result = handle.result()
    assert text == result.text and len(text.split(" ")) == 3
    assert result.finish_reason == "length" and result.cost_usd is not None
