"""The output file: record shape, append-only writing, resume scan, torn-line repair."""

from __future__ import annotations

import json
from pathlib import Path

from rakka_runtime.batch.output import RecordWriter, repair_torn_tail, scan_output
from rakka_runtime.batch.records import (
    DUPLICATE_CUSTOM_ID,
    completion_body,
    encode,
    failure_record,
    success_record,
    unsent_record,
)
from rakka_runtime.batch.summary import Histogram, Summary
from rakka_runtime.errors import ServerError
from rakka_runtime.types import Attempt, ChatResult, ToolCall, Usage


def result(**kw: object) -> ChatResult:
    base: dict[str, object] = {
        "request_id": "req-1",
        "text": "hello",
        "finish_reason": "stop",
        "usage": Usage(10, 5, cached_tokens=4, reasoning_tokens=2),
        "model": "gpt-4o-mini",
        "provider_request_id": "req_abc",
        "cost_usd": 0.5,
        "attempts": 2,
        "latency_ms": 12.3456,
        "ttft_ms": 12.3456,
        "response_id": "chatcmpl-9",
        "created": 7,
    }
    base.update(kw)
    return ChatResult(**base)  # type: ignore[arg-type]


def test_success_record_is_a_batch_output_line_with_a_chat_completion() -> None:
    record = success_record("c1", result(), status=200, model="fallback")
    assert record["id"].startswith("batch_req_") and record["custom_id"] == "c1"
    assert record["error"] is None
    response = record["response"]
    assert response["status_code"] == 200 and response["request_id"] == "req_abc"
    body = response["body"]
    assert (body["id"], body["object"], body["created"], body["model"]) == (
        "chatcmpl-9",
        "chat.completion",
        7,
        "gpt-4o-mini",
    )
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hello", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    assert (record["cost_usd"], record["attempts"], record["latency_ms"]) == (0.5, 2, 12.346)


def test_refusal_and_logprobs_are_kept_in_the_completion_body() -> None:
    lp = [{"token": "No", "logprob": -0.1, "bytes": [78, 111], "top_logprobs": []}]
    body = completion_body(result(text="", refusal="No.", refusal_logprobs=lp), "gpt-4o")
    [choice] = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": None, "refusal": "No."}
    assert choice["logprobs"] == {"content": None, "refusal": lp}


def test_tool_calls_come_with_null_content() -> None:
    body = completion_body(
        result(
            text="",
            tool_calls=[ToolCall("call_1", "lookup", '{"q":1}')],
            finish_reason="tool_calls",
            response_id=None,
            created=None,
        ),
        "gpt-4o",
    )
    message = body["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":1}'}}
    ]
    assert body["id"] == "chatcmpl-req-1" and isinstance(body["created"], int)


def test_failure_record_keeps_the_status_and_the_kind() -> None:
    error = ServerError("upstream broke", status=503, request_id="req_x")
    error.attempts = [Attempt("server_error", 503), Attempt("server_error", 503)]
    record = failure_record("c2", error, latency_ms=3.0, cost_usd=0.0)
    assert record["response"] == {"status_code": 503, "request_id": "req_x", "body": None}
    assert record["error"] == {"code": "server_error", "message": "upstream broke"}
    assert record["attempts"] == 2 and record["ttft_ms"] is None
    unsent = unsent_record("c3", "invalid_request", "line 3: bad")
    assert unsent["response"] is None and unsent["attempts"] == 0 and unsent["cost_usd"] == 0.0


def test_writer_appends_whole_lines_and_keeps_what_was_there(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"custom_id":"old"}\n')
    writer = RecordWriter(str(path))
    line = encode(unsent_record("new", "invalid_request", "line 1: x \u00e9"))
    writer.write(line)
    writer.close()
    writer.close()  # idempotent
    data = path.read_bytes()
    assert data == b'{"custom_id":"old"}\n' + line
    assert line.count(b"\n") == 1 and "é".encode() in line


def test_repair_cuts_a_torn_last_line_only(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    whole = b'{"custom_id":"a"}\n{"custom_id":"b"}\n'
    path.write_bytes(whole + b'{"custom_id":"c","resp')
    assert repair_torn_tail(str(path)) == len(b'{"custom_id":"c","resp')
    assert path.read_bytes() == whole
    assert repair_torn_tail(str(path)) == 0
    path.write_bytes(b'{"custom_id":"only-torn"')  # no newline at all: nothing survives
    assert repair_torn_tail(str(path)) > 0 and path.read_bytes() == b""
    assert repair_torn_tail(str(tmp_path / "absent.jsonl")) == 0


def test_repair_finds_a_newline_many_blocks_back(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"custom_id":"a"}\n' + b"x" * 200_000)
    assert repair_torn_tail(str(path)) == 200_000
    assert path.read_bytes() == b'{"custom_id":"a"}\n'


def test_scan_collects_done_ids_and_duplicate_records(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    lines = [
        encode(success_record("a", result(), status=200, model="m")),
        encode(unsent_record("a", DUPLICATE_CUSTOM_ID, "line 3: dup")),
        encode(unsent_record("a", DUPLICATE_CUSTOM_ID, "line 4: dup")),
        encode(unsent_record("b", "invalid_request", "line 2: bad")),
        b"garbage that is not json\n",
        encode(unsent_record("z", DUPLICATE_CUSTOM_ID, "line 9: dup")),
    ]
    path.write_bytes(b"".join(lines) + b'{"custom_id":"torn"')
    summary = Summary()
    state = scan_output(str(path), summary.add_resumed)
    assert state.repaired_bytes == len(b'{"custom_id":"torn"')
    assert state.records == 5 and state.unreadable == 1
    assert "a" in state.done and "b" in state.done
    assert "z" not in state.done and "torn" not in state.done
    assert state.duplicates == {"a": 2, "z": 1}
    assert summary.records == summary.resumed == 5
    assert summary.outcomes == {"ok": 1, DUPLICATE_CUSTOM_ID: 3, "invalid_request": 1}


def test_summary_totals_and_percentiles() -> None:
    summary = Summary()
    summary.add(success_record("a", result(cost_usd=0.25), status=200, model="m"))
    summary.add(success_record("b", result(cost_usd=None), status=200, model="m"))
    summary.add(failure_record("c", ServerError("x", status=500), latency_ms=1, cost_usd=0.0))
    data = summary.to_dict()
    assert data["records"] == 3 and data["ok"] == 2 and data["errors"] == 1
    assert data["outcomes"] == {"ok": 2, "server_error": 1}
    assert data["tokens"] == {
        "prompt": 20,
        "completion": 10,
        "total": 30,
        "cached": 8,
        "reasoning": 4,
    }
    assert data["cost_usd"] == 0.25 and data["cost_unknown_requests"] == 1
    json.dumps(data)  # serialisable as it is
    assert any("1 requests of unknown cost" in line for line in summary.render())


def test_histogram_percentiles_are_within_one_percent() -> None:
    histogram = Histogram()
    values = [float(v) for v in range(1, 10_001)]  # 1 ms .. 10 s
    for value in values:
        histogram.add(value)
    for p, exact in ((50, 5000.0), (95, 9500.0), (99, 9900.0)):
        estimate = histogram.percentile(p)
        assert estimate is not None and abs(estimate - exact) / exact < 0.01
    assert histogram.percentile(100) == 10_000.0 and Histogram().percentile(50) is None
