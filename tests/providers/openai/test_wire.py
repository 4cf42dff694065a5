"""Unit tests of the OpenAI wire format: request bodies, stream chunks, completions, usage."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rakka_provider_openai.wire as wire
from rakka_provider_openai.errors import classify_stream_error
from rakka_provider_openai.wire import (
    ChatAggregate,
    build_chat_body,
    decode_stream_chunk,
    parse_completion,
    parse_usage,
    uses_max_completion_tokens,
)
from rakka_runtime.errors import InferenceError, InvalidRequest, ProtocolError, ServerError
from rakka_runtime.types import ExecuteBatch, SamplingParams, ToolCall, ToolCallDelta, Usage

USER = [{"role": "user", "content": "hi"}]


def body(req: ExecuteBatch, model: str = "gpt-4o-mini", **kw: Any) -> dict[str, Any]:
    kw.setdefault("stream", False)
    out = json.loads(build_chat_body(req, model=model, **kw))
    assert isinstance(out, dict)
    return out


def chunk(
    *choices: dict[str, Any], usage: dict[str, Any] | None = None, **top: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": list(choices),
    }
    if usage is not None:
        obj["usage"] = usage
    obj.update(top)
    return obj


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "finish_reason": finish}


def tool_frag(
    index: int, *, id: str | None = None, name: str | None = None, args: str | None = None
) -> dict[str, Any]:
    frag: dict[str, Any] = {"index": index}
    function: dict[str, Any] = {}
    if id is not None:
        frag["id"] = id
        frag["type"] = "function"
    if name is not None:
        function["name"] = name
    if args is not None:
        function["arguments"] = args
    if function:
        frag["function"] = function
    return frag


# --- uses_max_completion_tokens ----------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        "o1",
        "o1-mini",
        "o1-preview-2024-09-12",
        "o1-2024-12-17",
        "o3",
        "o3-mini-2025-01-31",
        "o3-pro",
        "o4-mini",
        "o4-mini-2025-04-16",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano-2025-08-07",
        "gpt-5.1",
        "gpt-5.2-pro-2025-12-11",
        "GPT-5",
        "ft:o4-mini-2025-04-16:acme::abc123",
        "openai/gpt-5-mini",
    ],
)
def test_reasoning_families_use_max_completion_tokens(model: str) -> None:
    assert uses_max_completion_tokens(model)


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4o-mini-2024-07-18",
        "gpt-4.1",
        "gpt-4-turbo",
        "gpt-3.5-turbo",
        "chatgpt-4o-latest",
        "o10",
        "gpt-50",
        "gpt-4o-audio-preview",
        "ft:gpt-4o-mini:acme::abc",
        "my-o1-proxy",
        "",
    ],
)
def test_other_models_use_max_tokens(model: str) -> None:
    assert not uses_max_completion_tokens(model)


# --- build_chat_body --------------------------------------------------------------------


def test_minimal_body_is_compact_json_with_model_and_messages_only() -> None:
    raw = build_chat_body(ExecuteBatch(messages=USER), model="gpt-4o-mini", stream=False)
    assert raw == b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'


def test_every_sampling_field_is_sent_when_set() -> None:
    sampling = SamplingParams(
        temperature=0.2,
        top_p=0.9,
        max_tokens=64,
        stop=["\n\n", "END"],
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        seed=7,
        n=2,
    )
    got = body(ExecuteBatch(messages=USER, sampling=sampling, user="u-1"))
    assert got == {
        "model": "gpt-4o-mini",
        "messages": USER,
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "stop": ["\n\n", "END"],
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "seed": 7,
        "n": 2,
        "user": "u-1",
    }


def test_zero_values_are_sent_not_dropped() -> None:
    sampling = SamplingParams(temperature=0.0, presence_penalty=0.0, seed=0, max_tokens=0)
    got = body(ExecuteBatch(messages=USER, sampling=sampling))
    assert got["temperature"] == 0.0
    assert got["presence_penalty"] == 0.0
    assert got["seed"] == 0
    assert got["max_tokens"] == 0


def test_reasoning_model_gets_max_completion_tokens() -> None:
    req = ExecuteBatch(messages=USER, sampling=SamplingParams(max_tokens=100))
    got = body(req, model="o3-mini")
    assert got["max_completion_tokens"] == 100
    assert "max_tokens" not in got


def test_streaming_asks_for_usage() -> None:
    got = body(ExecuteBatch(messages=USER), stream=True)
    assert got["stream"] is True
    assert got["stream_options"] == {"include_usage": True}


def test_azure_body_has_no_model_but_model_still_picks_the_token_field() -> None:
    req = ExecuteBatch(messages=USER, sampling=SamplingParams(max_tokens=10))
    got = body(req, model="o1", azure=True)
    assert "model" not in got
    assert got["max_completion_tokens"] == 10
    assert body(req, model="gpt-4o", azure=True)["max_tokens"] == 10


def test_tools_tool_choice_response_format_pass_through() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    choice = {"type": "function", "function": {"name": "f"}}
    fmt = {"type": "json_object"}
    got = body(ExecuteBatch(messages=USER, tools=tools, tool_choice=choice, response_format=fmt))
    assert got["tools"] == tools
    assert got["tool_choice"] == choice
    assert got["response_format"] == fmt


def test_extra_body_is_merged_last_and_overrides() -> None:
    req = ExecuteBatch(
        messages=USER,
        sampling=SamplingParams(temperature=1.0),
        extra_body={
            "temperature": 0.3,
            "logprobs": True,
            "stream_options": {"include_usage": False},
        },
    )
    got = body(req, stream=True)
    assert got["temperature"] == 0.3
    assert got["logprobs"] is True
    assert got["stream_options"] == {"include_usage": False}
    assert list(got)[-1] == "logprobs"  # new keys land after ours


def test_extra_body_cannot_contradict_stream() -> None:
    req = ExecuteBatch(messages=USER, extra_body={"stream": False})
    with pytest.raises(InvalidRequest, match=r"extra_body\.stream"):
        build_chat_body(req, model="gpt-4o", stream=True)
    assert body(req, stream=False)["stream"] is False  # agreeing is allowed


def test_non_ascii_is_sent_as_utf8_not_escaped() -> None:
    req = ExecuteBatch(messages=[{"role": "user", "content": "héllo — 你好"}])
    raw = build_chat_body(req, model="gpt-4o", stream=False)
    assert "héllo — 你好".encode() in raw


def test_read_only_mappings_and_tuples_serialise() -> None:
    message = MappingProxyType({"role": "user", "content": "hi"})
    req = ExecuteBatch(messages=(message,))
    assert body(req)["messages"] == USER


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object()])
def test_unencodable_values_are_invalid_requests(bad: object) -> None:
    req = ExecuteBatch(messages=USER, extra_body={"x": bad})
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        build_chat_body(req, model="gpt-4o", stream=False)


# --- decode_stream_chunk / ChatAggregate --------------------------------------------------


def test_text_stream_aggregates_and_reports_each_delta() -> None:
    agg = ChatAggregate()
    first = decode_stream_chunk(chunk(delta(role="assistant", content="")), "r1", agg)
    assert first is None  # role-only delta: nothing for the caller
    a = decode_stream_chunk(chunk(delta(content="Hel")), "r1", agg)
    b = decode_stream_chunk(chunk(delta(content="lo")), "r1", agg)
    end = decode_stream_chunk(chunk(delta(finish="stop")), "r1", agg)
    assert a is not None and a.text_delta == "Hel" and a.request_id == "r1"
    assert b is not None and b.text_delta == "lo"
    assert end is not None and end.finish_reason == "stop" and end.text_delta == ""
    result = agg.result("r1")
    assert result.text == "Hello"
    assert result.finish_reason == "stop"
    assert result.model == "gpt-4o-mini-2024-07-18"
    assert result.tool_calls == []
    assert agg.response_id == "chatcmpl-1"


def test_tool_call_fragments_for_two_indices_interleaved() -> None:
    agg = ChatAggregate()
    frames = [
        [tool_frag(0, id="call_a", name="get_weather", args="")],
        [tool_frag(1, id="call_b", name="get_time", args="")],
        [tool_frag(0, args='{"city":')],
        [tool_frag(1, args='{"tz":"UTC"}')],
        [tool_frag(0, args='"Paris"}')],
    ]
    seen: list[ToolCallDelta] = []
    for frags in frames:
        out = decode_stream_chunk(chunk(delta(tool_calls=frags)), "r", agg)
        assert out is not None and out.tool_call_delta is not None
        seen.extend(out.tool_call_delta)
    decode_stream_chunk(chunk(delta(finish="tool_calls")), "r", agg)
    assert seen[0] == ToolCallDelta(index=0, id="call_a", name="get_weather", arguments="")
    assert seen[2] == ToolCallDelta(index=0, id=None, name=None, arguments='{"city":')
    result = agg.result("r")
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        ToolCall(id="call_a", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCall(id="call_b", name="get_time", arguments='{"tz":"UTC"}'),
    ]


def test_tool_calls_are_sorted_by_index_not_arrival() -> None:
    agg = ChatAggregate()
    decode_stream_chunk(
        chunk(delta(tool_calls=[tool_frag(1, id="b", name="g", args="{}")])), "r", agg
    )
    decode_stream_chunk(
        chunk(delta(tool_calls=[tool_frag(0, id="a", name="f", args="{}")])), "r", agg
    )
    assert [c.id for c in agg.result("r").tool_calls] == ["a", "b"]


def test_id_and_name_come_from_the_first_fragment() -> None:
    agg = ChatAggregate()
    decode_stream_chunk(chunk(delta(tool_calls=[tool_frag(0, id="a", name="f")])), "r", agg)
    decode_stream_chunk(
        chunk(delta(tool_calls=[tool_frag(0, id="zz", name="g", args="{}")])), "r", agg
    )
    (call,) = agg.result("r").tool_calls
    assert (call.id, call.name, call.arguments) == ("a", "f", "{}")


def test_fragments_without_index_are_grouped_by_id() -> None:
    # Some OpenAI-compatible servers send whole tool calls without ``index``.
    agg = ChatAggregate()
    for frag in (
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{"}},
        {"function": {"arguments": "}"}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
        {"id": "a", "function": {"arguments": ""}},
    ):
        decode_stream_chunk(chunk(delta(tool_calls=[frag])), "r", agg)
    calls = agg.result("r").tool_calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [("a", "f", "{}"), ("b", "g", "{}")]


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.text(max_size=5)),
        max_size=30,
    )
)
def test_arguments_join_in_arrival_order_per_index(pieces: list[tuple[int, str]]) -> None:
    agg = ChatAggregate()
    for i in range(3):
        decode_stream_chunk(chunk(delta(tool_calls=[tool_frag(i, id=f"c{i}", name="f")])), "r", agg)
    for index, piece in pieces:
        decode_stream_chunk(chunk(delta(tool_calls=[tool_frag(index, args=piece)])), "r", agg)
    calls = agg.result("r").tool_calls
    for i in range(3):
        assert calls[i].arguments == "".join(p for idx, p in pieces if idx == i)


def test_azure_prompt_filter_first_chunk_is_silent() -> None:
    agg = ChatAggregate()
    azure_first = {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "system_fingerprint": None,
        "prompt_filter_results": [
            {
                "prompt_index": 0,
                "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
            }
        ],
    }
    assert decode_stream_chunk(azure_first, "r", agg) is None
    assert agg.model is None and agg.response_id is None  # "" is not an answer


def test_azure_content_filter_only_chunk_without_delta_is_silent() -> None:
    agg = ChatAggregate()
    annotation = chunk(
        {
            "index": 0,
            "finish_reason": None,
            "content_filter_results": {"violence": {"filtered": False, "severity": "safe"}},
            "content_filter_offsets": {"check_offset": 44, "start_offset": 44, "end_offset": 198},
        },
        usage=None,
    )
    assert decode_stream_chunk(annotation, "r", agg) is None
    empty = chunk(delta(content_filter_results={}), usage=None)
    assert decode_stream_chunk(empty, "r", agg) is None


def test_include_usage_chunk_reports_usage() -> None:
    agg = ChatAggregate()
    decode_stream_chunk(chunk(delta(content="x"), usage=None), "r", agg)
    last = chunk(
        usage={
            "prompt_tokens": 12,
            "completion_tokens": 30,
            "total_tokens": 42,
            "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 20, "audio_tokens": 0},
        }
    )
    out = decode_stream_chunk(last, "r", agg)
    assert out is not None
    assert out.usage == Usage(
        input_tokens=12, output_tokens=30, cached_tokens=8, reasoning_tokens=20
    )
    assert out.text_delta == "" and out.finish_reason is None
    assert agg.result("r").usage == out.usage


def test_only_choice_zero_feeds_the_aggregate() -> None:
    agg = ChatAggregate()
    out = decode_stream_chunk(chunk(delta(1, content="other"), delta(0, content="mine")), "r", agg)
    assert out is not None and out.text_delta == "mine"
    assert decode_stream_chunk(chunk(delta(1, content="other", finish="stop")), "r", agg) is None
    assert agg.result("r").text == "mine"
    assert agg.finish_reason is None


def test_refusal_is_kept_on_the_aggregate() -> None:
    agg = ChatAggregate()
    decode_stream_chunk(chunk(delta(content=None, refusal="I can't ")), "r", agg)
    decode_stream_chunk(chunk(delta(content=None, refusal="help with that.")), "r", agg)
    assert agg.refusal == "I can't help with that."
    assert agg.result("r").text == ""
    assert ChatAggregate().refusal is None


def test_streamed_refusal_reaches_chunks_and_result() -> None:
    agg = ChatAggregate()
    opening = decode_stream_chunk(
        chunk(delta(role="assistant", content=None, refusal="")), "r", agg
    )
    assert opening is None
    first = decode_stream_chunk(chunk(delta(refusal="I can't ")), "r", agg)
    assert first is not None and first.refusal_delta == "I can't " and first.text_delta == ""
    decode_stream_chunk(chunk(delta(refusal="help.")), "r", agg)
    decode_stream_chunk(chunk(delta(finish="stop")), "r", agg)
    result = agg.result("r")
    assert result.refusal == "I can't help." and result.text == ""
    assert result.finish_reason == "stop"
    assert ChatAggregate().result("r").refusal is None


def _lp(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": []}


def test_streamed_logprobs_reach_chunks_and_result() -> None:
    agg = ChatAggregate()
    one = chunk(delta(content="Hi"))
    one["choices"][0]["logprobs"] = {"content": [_lp("Hi", -0.1)], "refusal": None}
    two = chunk(delta(content="!"))
    two["choices"][0]["logprobs"] = {"content": [_lp("!", -0.5)], "refusal": None}
    got = [decode_stream_chunk(c, "r", agg) for c in (one, two)]
    assert [c.logprobs for c in got if c is not None] == [[_lp("Hi", -0.1)], [_lp("!", -0.5)]]
    refused = chunk(delta(refusal="No"))
    refused["choices"][0]["logprobs"] = {"content": None, "refusal": [_lp("No", -0.2)]}
    out = decode_stream_chunk(refused, "r", agg)
    assert out is not None and out.refusal_logprobs == [_lp("No", -0.2)] and out.logprobs is None
    result = agg.result("r")
    assert result.logprobs == [_lp("Hi", -0.1), _lp("!", -0.5)]
    assert result.refusal_logprobs == [_lp("No", -0.2)]


def test_chunks_without_logprobs_carry_none() -> None:
    agg = ChatAggregate()
    out = decode_stream_chunk(chunk({**delta(content="x"), "logprobs": None}), "r", agg)
    assert out is not None and out.logprobs is None and out.refusal_logprobs is None
    assert out.refusal_delta == ""
    assert agg.result("r").logprobs is None


def test_malformed_logprobs_are_a_protocol_error() -> None:
    bad = chunk(delta(content="x"))
    bad["choices"][0]["logprobs"] = {"content": "nope"}
    with pytest.raises(ProtocolError):
        decode_stream_chunk(bad, "r", ChatAggregate())


def test_error_object_is_handed_to_classify_stream_error(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []

    def classify(payload: object, headers: object = None) -> InferenceError:
        seen.append(payload)
        return ServerError("boom")

    monkeypatch.setattr(wire, "classify_stream_error", classify)
    obj = {"error": {"message": "boom", "type": "server_error", "code": None}}
    agg = ChatAggregate()
    with pytest.raises(ServerError, match="boom"):
        decode_stream_chunk(obj, "r", agg)
    assert seen == [obj]
    assert agg.result("r").text == ""


def test_error_object_raises_the_classified_error() -> None:
    obj = {"error": {"message": "The server had an error", "type": "server_error", "code": None}}
    expected = classify_stream_error(obj)
    with pytest.raises(InferenceError) as info:
        decode_stream_chunk(obj, "r", ChatAggregate())
    assert type(info.value) is type(expected)
    assert info.value.message == expected.message


def test_error_null_is_not_an_error() -> None:
    out = decode_stream_chunk(chunk(delta(content="x"), error=None), "r", ChatAggregate())
    assert out is not None and out.text_delta == "x"


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "x", "object": "chat.completion.chunk"},  # no choices
        {"choices": None},
        {"choices": ["text"]},
        {"choices": [{"index": 0, "delta": "text"}]},
        {"choices": [], "usage": {"prompt_tokens": "12"}},
        ["not", "an", "object"],
    ],
)
def test_malformed_chunks_are_protocol_errors(bad: Any) -> None:
    with pytest.raises(ProtocolError):
        decode_stream_chunk(bad, "r", ChatAggregate())


def test_unknown_fields_are_ignored() -> None:
    obj = chunk(delta(content="x", future_field=1), obfuscation="abc", service_tier="default")
    out = decode_stream_chunk(obj, "r", ChatAggregate())
    assert out is not None and out.text_delta == "x"


@pytest.mark.parametrize(
    "reason", ["stop", "length", "tool_calls", "content_filter", "function_call"]
)
def test_finish_reasons_pass_through(reason: str) -> None:
    agg = ChatAggregate()
    out = decode_stream_chunk(chunk(delta(finish=reason)), "r", agg)
    assert out is not None and out.finish_reason == reason
    assert agg.result("r").finish_reason == reason


# --- parse_completion ---------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str = "stop", **top: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    obj.update(top)
    return obj


def test_parse_text_completion() -> None:
    obj = completion({"role": "assistant", "content": "Hi!", "refusal": None})
    result = parse_completion(obj, "r9")
    assert result.request_id == "r9"
    assert result.text == "Hi!"
    assert result.finish_reason == "stop"
    assert result.model == "gpt-4o-2024-08-06"
    assert result.usage == Usage(input_tokens=5, output_tokens=2)
    assert result.tool_calls == []


def test_parse_refusal_and_logprobs_completion() -> None:
    obj = completion({"role": "assistant", "content": None, "refusal": "I can't help."})
    obj["choices"][0]["logprobs"] = {"content": None, "refusal": [_lp("I", -0.01)]}
    result = parse_completion(obj, "r")
    assert result.refusal == "I can't help." and result.text == ""
    assert result.refusal_logprobs == [_lp("I", -0.01)] and result.logprobs is None
    plain = parse_completion(
        completion({"role": "assistant", "content": "Hi", "refusal": None}), "r"
    )
    assert plain.refusal is None and plain.logprobs is None


def test_parse_content_logprobs_completion() -> None:
    obj = completion({"role": "assistant", "content": "Hi", "refusal": None})
    obj["choices"][0]["logprobs"] = {"content": [_lp("Hi", -0.3)], "refusal": None}
    result = parse_completion(obj, "r")
    assert result.logprobs == [_lp("Hi", -0.3)] and result.refusal_logprobs is None


def test_parse_tool_call_completion() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "custom", "custom": {"name": "sql", "input": "select 1"}},
        ],
    }
    result = parse_completion(completion(message, "tool_calls"), "r")
    assert result.text == ""
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        ToolCall(id="c1", name="f", arguments="{}"),
        ToolCall(id="c2", name="sql", arguments="select 1", type="custom"),
    ]


def test_parse_completion_picks_choice_zero_and_tolerates_missing_optionals() -> None:
    obj = {
        "choices": [
            {"index": 1, "message": {"role": "assistant", "content": "second"}},
            {"index": 0, "message": {"role": "assistant", "content": "first"}},
        ]
    }
    result = parse_completion(obj, "r")
    assert result.text == "first"
    assert result.usage is None and result.model is None and result.finish_reason is None


def test_parse_completion_with_no_choices_is_empty() -> None:
    result = parse_completion({"choices": [], "model": "m"}, "r")
    assert result.text == "" and result.finish_reason is None and result.model == "m"


@pytest.mark.parametrize(
    "bad",
    [
        {"object": "chat.completion"},
        {"choices": "nope"},
        {"choices": [{"index": 2, "message": {}}]},
        {"choices": [{"index": 0}]},
        {"choices": [{"index": 0, "message": {"content": 5}}]},
        {"choices": [{"index": 0, "message": {"content": None, "tool_calls": [1]}}]},
        {"choices": [{"index": 0, "message": {"content": None, "tool_calls": [{"id": "x"}]}}]},
        {"choices": [], "usage": [1]},
    ],
)
def test_parse_completion_rejects_shapes_that_are_not_the_api(bad: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        parse_completion(bad, "r")


# --- parse_usage --------------------------------------------------------------------------


def test_parse_usage_reads_details() -> None:
    usage = parse_usage(
        {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 256,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
    )
    # Reasoning tokens are part of completion_tokens, never added on top.
    assert usage == Usage(
        input_tokens=2006, output_tokens=300, cached_tokens=1920, reasoning_tokens=256
    )


@pytest.mark.parametrize(
    "raw",
    [
        {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        {"prompt_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": None},
        {"prompt_tokens": 3, "completion_tokens": 4, "completion_tokens_details": None},
        {"prompt_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": {}},
        {
            "prompt_tokens": 3,
            "completion_tokens": 4,
            "completion_tokens_details": {"reasoning_tokens": None},
        },
    ],
)
def test_parse_usage_tolerates_missing_details(raw: dict[str, Any]) -> None:
    assert parse_usage(raw) == Usage(input_tokens=3, output_tokens=4)


def test_parse_usage_none_and_empty() -> None:
    assert parse_usage(None) is None
    assert parse_usage({}) == Usage()


@pytest.mark.parametrize(
    "raw", [{"prompt_tokens": "3"}, {"completion_tokens": True}, {"prompt_tokens": 1.5}]
)
def test_parse_usage_rejects_non_integer_counts(raw: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError, match="usage"):
        parse_usage(raw)
