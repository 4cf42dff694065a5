"""The whole path of a request against the real emulator: config → plugins → urllib3 → SSE."""

from __future__ import annotations

from typing import Any

import pytest

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    InferenceError,
    InvalidRequest,
)
from rakka_runtime.runtime import Runtime
from rakka_testing import EMULATOR_KEY, RuntimeFactory

NO_RETRY = "deployment.retry.enabled=false"


def test_stream_yields_chunks_that_add_up_to_the_result(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(emulator)
    handle = runtime.stream("tell me a story", max_tokens=12)
    deltas = [chunk.text_delta for chunk in handle]
    result = handle.result()
    assert len([d for d in deltas if d]) == 12
    assert "".join(deltas) == result.text
    assert result.finish_reason == "length"
    assert result.usage is not None and result.usage.output_tokens == 12
    assert result.cost_usd is not None and result.cost_usd > 0
    assert result.ttft_ms is not None and result.latency_ms is not None
    assert 0 < result.ttft_ms <= result.latency_ms
    assert result.attempts == 1
    assert result.provider_request_id and result.provider_request_id.startswith("req_")


def test_streamed_and_non_streamed_agree(emulator: Emulator, make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(emulator)
    streamed = runtime.chat("same prompt", stream=True)
    whole = runtime.chat("same prompt", stream=False)
    assert streamed.text == whole.text != ""
    assert streamed.usage == whole.usage
    assert streamed.cost_usd == pytest.approx(whole.cost_usd)


@pytest.mark.parametrize("stream", [True, False])
def test_azure_variant_uses_its_url_and_api_key(
    emulator: Emulator, make_runtime: RuntimeFactory, stream: bool
) -> None:
    runtime = make_runtime(emulator, azure=True)
    result = runtime.chat("hello azure", stream=stream)
    assert result.text and result.finish_reason == "stop"
    # Azure hides the model behind the deployment name: base_model prices it.
    assert result.cost_usd is not None


def test_tool_call_fragments_are_joined(emulator: Emulator, make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(emulator)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    handle = runtime.stream("weather in Oslo?", tools=tools)
    fragments = [c.tool_call_delta for c in handle if c.tool_call_delta]
    result = handle.result()
    assert len(fragments) >= 3
    assert result.finish_reason == "tool_calls"
    [call] = result.tool_calls
    assert call.name == "get_weather" and call.id
    assert call.arguments == "".join(d.arguments for f in fragments for d in f)
    assert isinstance(__import__("json").loads(call.arguments), dict)


def test_connections_are_reused_across_streams(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(emulator)
    for _ in range(5):
        runtime.chat("again", stream=True)
        runtime.chat("again", stream=False)
    assert emulator.stats.connections_accepted == 1


def test_wrong_key_is_unauthorized(
    emulator: Emulator, make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = make_runtime(emulator, NO_RETRY)
    monkeypatch.setenv("RAKKA_TEST_KEY", "sk-wrong")
    runtime = make_runtime(emulator, NO_RETRY)
    with pytest.raises(InferenceError) as info:
        runtime.chat("hi")
    assert info.value.kind == "unauthorized" and info.value.status == 401
    assert "sk-wrong" not in str(info.value)
    assert EMULATOR_KEY not in str(info.value)


# Each error kind produced from its wire shape (the emulator's scripted faults).
FAULT_KINDS: list[tuple[str, bool, str, dict[str, Any]]] = [
    ("rate_limit;retry_after=7", False, "rate_limited", {"status": 429, "retry_after": 7.0}),
    ("rate_limit;retry_after_ms=150", True, "rate_limited", {"retry_after": 0.15}),
    ("insufficient_quota", False, "quota_exceeded", {"status": 429}),
    ("server_error;status=503", True, "server_error", {"status": 503}),
    ("context_length", False, "context_length_exceeded", {"status": 400}),
    ("content_filter", False, "content_filtered", {"status": 400}),
    ("http_error;status=403", False, "forbidden", {"status": 403}),
    ("http_error;status=404", False, "not_found", {"status": 404}),
    ("http_error;status=409", False, "conflict", {"status": 409}),
    ("http_error;status=408", False, "timeout", {"status": 408}),
    ("http_error;status=400", False, "bad_request", {"status": 400}),
    ("reset", False, "network", {}),
    ("reset", True, "network", {}),
    ("malformed", False, "protocol", {}),
    ("malformed", True, "protocol", {}),
    ("cut;after=3", True, "stream_interrupted", {}),
    ("stream_error", True, "server_error", {}),
    ("content_filter_finish", True, "content_filtered", {}),
    ("content_filter_finish", False, "content_filtered", {}),
]


@pytest.mark.parametrize(("fault", "stream", "kind", "attrs"), FAULT_KINDS)
def test_each_error_kind_from_its_wire_shape(
    emulator: Emulator,
    make_runtime: RuntimeFactory,
    fault: str,
    stream: bool,
    kind: str,
    attrs: dict[str, Any],
) -> None:
    emulator.set_scenario({"rules": [{"fault": fault, "every": 1}]})
    runtime = make_runtime(emulator, NO_RETRY)
    with pytest.raises(InferenceError) as info:
        runtime.chat("trigger", stream=stream)
    error = info.value
    assert error.kind == kind, error
    for name, value in attrs.items():
        assert getattr(error, name) == pytest.approx(value), name
    assert error.attempts and error.attempts[-1].kind == kind


def test_context_length_carries_token_counts(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    emulator.set_scenario({"rules": [{"fault": "context_length", "every": 1}]})
    with pytest.raises(ContextLengthExceeded) as info:
        make_runtime(emulator, NO_RETRY).chat("long")
    assert (info.value.max_context_tokens, info.value.requested_tokens) == (128000, 130000)


def test_azure_content_filter_shape(emulator: Emulator, make_runtime: RuntimeFactory) -> None:
    emulator.set_scenario({"rules": [{"fault": "content_filter", "every": 1}]})
    with pytest.raises(ContentFiltered):
        make_runtime(emulator, NO_RETRY, azure=True).chat("bad")


def test_cut_stream_keeps_partial_text(emulator: Emulator, make_runtime: RuntimeFactory) -> None:
    emulator.set_scenario({"rules": [{"fault": "cut;after=4", "every": 1}]})
    handle = make_runtime(emulator, NO_RETRY).stream("cut me")
    seen: list[str] = []
    with pytest.raises(InferenceError) as info:
        for chunk in handle:
            seen.append(chunk.text_delta)
    assert info.value.kind == "stream_interrupted"
    assert info.value.partial is not None
    assert info.value.partial.text == "".join(seen) != ""


def test_bad_messages_are_rejected_before_sending(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime: Runtime = make_runtime(emulator)
    with pytest.raises(InvalidRequest, match=r"messages\[0\]\.role"):
        runtime.chat([{"role": "wizard", "content": "hi"}])
    with pytest.raises(InvalidRequest, match=r"content\[0\]\.type"):
        runtime.chat([{"role": "user", "content": [{"type": "video"}]}])
    assert emulator.stats.requests == 0


def test_content_parts_are_sent(emulator: Emulator, make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(emulator)
    result = runtime.chat(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            }
        ]
    )
    assert result.text


def test_refusal_and_logprobs_reach_chunks_and_result(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(emulator)
    refused = runtime.stream(
        "do the bad thing",
        extra_headers={"x-emulator-fault": "refusal"},
        extra_body={"logprobs": True},
    )
    pieces = [chunk.refusal_delta for chunk in refused if chunk.refusal_delta]
    result = refused.result()
    assert result.refusal == "".join(pieces) == "I'm sorry, I can't help with that."
    assert result.text == "" and result.finish_reason == "stop"
    assert result.refusal_logprobs is not None and len(result.refusal_logprobs) == len(pieces)
    whole = runtime.chat("hello", stream=False, max_tokens=3, extra_body={"logprobs": True})
    assert whole.refusal is None and whole.logprobs is not None
    assert "".join(t["token"] for t in whole.logprobs) == whole.text


def test_o_series_sends_max_completion_tokens(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    # The emulator refuses `max_tokens` for o-series models, as the real API does.
    result = make_runtime(emulator).chat("think", model="o3-mini", max_tokens=4)
    assert result.usage is not None and result.usage.output_tokens == 4


def test_breaking_out_of_a_stream_keeps_it_for_result(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    handle = make_runtime(emulator).stream("partial reading", max_tokens=8)
    first = next(iter(handle))
    rest = handle.result()
    assert rest.text.startswith(first.text_delta) and len(rest.text.split()) == 8


def test_closing_a_stream_early_frees_its_connection(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(emulator)
    with runtime.stream("abandon me", max_tokens=50) as handle:
        next(handle)
    # The abandoned connection is closed, not returned dirty: the next call works.
    assert runtime.chat("next", stream=True).text


def test_runner_offers_the_model_runner_protocol(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(emulator, "deployment.rate_limits.requests_per_minute=120")
    runner = runtime
    assert runner.rate_limits.requests_per_minute == 120
    request = runtime.request("estimate me", max_tokens=100)
    estimate = runner.estimate_cost(request)
    assert estimate.output_tokens_max == 100 and estimate.input_tokens > 0
    # gpt-4o-mini: 0.15 in / 0.60 out per million tokens.
    expected = (estimate.input_tokens * 0.15 + 100 * 0.60) / 1e6
    assert estimate.usd == pytest.approx(expected)
    assert runner.execute(request).result().text


def test_the_pool_keeps_a_connection_for_every_request_allowed_in_flight(
    make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    in_flight = 80  # more than the default pool of 64
    with Emulator(keys=[EMULATOR_KEY], chunk_delay=0.002) as emu:
        runtime = make_runtime(emu, f"deployment.rate_limits.concurrent_requests={in_flight}")
        session = runtime.session
        assert session is not None
        assert session.pool.connection_pool_kw["maxsize"] == in_flight
        barrier = threading.Barrier(in_flight, timeout=30)
        failures: list[BaseException] = []

        def two_waves() -> None:
            try:
                for _ in range(2):
                    barrier.wait()  # all streams open together, twice
                    runtime.chat("hello", stream=True, max_tokens=8)
            except BaseException as exc:  # reported below, not lost in the thread
                failures.append(exc)

        with caplog.at_level("WARNING", logger="urllib3"):
            threads = [threading.Thread(target=two_waves) for _ in range(in_flight)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        assert failures == []
        # The second wave reuses the first wave's connections: none was discarded.
        assert emu.stats.connections_accepted <= in_flight
        assert "Connection pool is full" not in caplog.text


def test_cancel_from_another_thread_cuts_the_stream_it_reads(
    make_runtime: RuntimeFactory,
) -> None:
    import threading
    import time

    from rakka_runtime.errors import Cancelled

    # 400 chunks 20 ms apart: about 8 s to read in full.
    with Emulator(keys=[EMULATOR_KEY], chunk_delay=0.02) as emu:
        runtime = make_runtime(emu)
        handle = runtime.stream("a long answer", max_tokens=400)
        got_first = threading.Event()
        seen: list[str] = []
        failure: list[BaseException] = []

        def read() -> None:
            try:
                for chunk in handle:
                    seen.append(chunk.text_delta)
                    got_first.set()
            except BaseException as exc:
                failure.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        assert got_first.wait(10)
        cancelled_at = time.monotonic()
        handle.cancel()
        reader.join(timeout=5)
        assert not reader.is_alive()
        assert time.monotonic() - cancelled_at < 5  # far sooner than the ~8 s stream
        [error] = failure
        assert isinstance(error, Cancelled)
        assert error.kind == "cancelled" and not error.is_retryable
        assert [a.kind for a in error.attempts] == ["cancelled"]  # no retry of a cancel
        assert error.partial is not None and error.partial.text == "".join(seen)
        assert 0 < len(seen) < 400
        # Asking the handle for its result afterwards says the same (not a generic error).
        with pytest.raises(Cancelled):
            handle.result()
        # Not the provider's fault: the circuit stays closed and the next call succeeds.
        assert runtime.chat("again", stream=False, max_tokens=4).text


def test_cancel_before_sending_sends_nothing(make_runtime: RuntimeFactory) -> None:
    from rakka_runtime.errors import Cancelled

    with Emulator(keys=[EMULATOR_KEY]) as emu:
        runtime = make_runtime(emu)
        handle = runtime.stream("never sent")
        handle.cancel()
        with pytest.raises(Cancelled):
            handle.result()
        assert emu.stats.requests == 0


def test_cancel_ends_a_retry_backoff_at_once(make_runtime: RuntimeFactory) -> None:
    import threading
    import time

    from rakka_runtime.errors import Cancelled

    scenario = {"rules": [{"fault": "server_error"}]}  # every attempt fails, retryably
    with Emulator(keys=[EMULATOR_KEY], scenario=scenario) as emu:
        runtime = make_runtime(
            emu,
            "deployment.retry.initial_backoff=30s",
            "deployment.retry.max_backoff=60s",
            "deployment.retry.jitter=none",
        )
        handle = runtime.stream("hello")
        failure: list[BaseException] = []
        reader = threading.Thread(target=lambda: _collect(handle, failure))
        reader.start()
        deadline = time.monotonic() + 10
        while emu.stats.requests < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the first attempt failed; the 30 s backoff is under way
        handle.cancel()
        reader.join(timeout=5)
        assert not reader.is_alive()  # not 30 s later
        [error] = failure
        assert isinstance(error, Cancelled)
        assert "retry backoff" in error.message
        assert emu.stats.requests == 1  # no attempt after the cancel


def _collect(handle: Any, failure: list[BaseException]) -> None:
    try:
        handle.result()
    except BaseException as exc:
        failure.append(exc)


def test_cancel_takes_a_request_out_of_the_rate_limit_queue(
    make_runtime: RuntimeFactory,
) -> None:
    import threading
    import time

    from rakka_runtime.errors import Cancelled

    with Emulator(keys=[EMULATOR_KEY], chunk_delay=0.02) as emu:
        runtime = make_runtime(emu, "deployment.rate_limits.concurrent_requests=1")
        first = runtime.stream("a long answer", max_tokens=300)  # ~6 s: holds the one slot
        next(first)
        queued = runtime.stream("waiting")
        failure: list[BaseException] = []
        waiter = threading.Thread(target=lambda: _collect(queued, failure))
        waiter.start()
        time.sleep(0.2)  # it is in line now, behind the held slot
        queued.cancel()
        waiter.join(timeout=3)
        assert not waiter.is_alive()
        [error] = failure
        assert isinstance(error, Cancelled)
        assert "queued" in error.message
        first.close()
        assert emu.stats.requests == 1  # the cancelled one was never sent
