"""Reading input lines: both line shapes, and every way a line can be unusable."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from rakka_runtime.batch.idset import IdSet
from rakka_runtime.batch.input import (
    PRIORITIES,
    InputError,
    count_requests,
    open_input,
    parse_line,
    read_items,
)

MESSAGES = [{"role": "user", "content": "hi"}]


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def test_batch_api_line_becomes_a_non_streamed_request() -> None:
    item = parse_line(
        line(
            {
                "custom_id": "a-1",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o",
                    "messages": MESSAGES,
                    "temperature": 0.2,
                    "max_completion_tokens": 7,
                    "logprobs": True,
                    "tools": [{"type": "x"}],
                },
            }
        ),
        3,
    )
    assert item.error is None and item.request is not None
    request = item.request
    assert (item.custom_id, item.line, item.priority) == ("a-1", 3, PRIORITIES["normal"])
    assert request.model == "gpt-4o" and request.stream is False
    assert request.sampling.temperature == 0.2 and request.sampling.max_tokens == 7
    assert request.tools == [{"type": "x"}]
    # Fields the runtime has no slot for still reach the API.
    assert request.extra_body == {"logprobs": True}


def test_plain_line_without_custom_id_is_named_by_its_line_number() -> None:
    item = parse_line(line({"messages": MESSAGES, "stream": True, "priority": "critical"}), 17)
    assert item.custom_id == "line-17"
    assert item.priority == PRIORITIES["critical"]
    assert item.request is not None and item.request.stream is True
    assert item.request.extra_body is None


@pytest.mark.parametrize(
    ("raw", "custom_id", "message"),
    [
        (b"{not json\n", "line-5", "line 5: not valid JSON"),
        (b"\xff\xfe{}\n", "line-5", "line 5: not valid JSON"),
        (line([1, 2]), "line-5", "line 5: expected a JSON object, got an array"),
        (line({"custom_id": "c"}), "c", "line 5: 'messages' is required"),
        (line({"custom_id": "c", "messages": "hi"}), "c", "'messages' must be a list"),
        (
            line({"custom_id": "c", "messages": [{"role": "robot", "content": "x"}]}),
            "c",
            "messages[0].role",
        ),
        (line({"custom_id": "c", "messages": [{"role": "user"}]}), "c", "messages[0].content"),
        (line({"custom_id": 7, "messages": MESSAGES}), "line-5", "custom_id must be"),
        (
            line({"custom_id": "c", "messages": MESSAGES, "priority": "urgent"}),
            "c",
            "priority 'urgent'",
        ),
        (line({"custom_id": "c", "messages": MESSAGES, "stream": "yes"}), "c", "'stream'"),
        (
            line(
                {
                    "custom_id": "c",
                    "method": "GET",
                    "url": "/v1/chat/completions",
                    "body": {"messages": MESSAGES},
                }
            ),
            "c",
            'method must be "POST"',
        ),
        (
            line(
                {
                    "custom_id": "c",
                    "method": "POST",
                    "url": "/v1/embeddings",
                    "body": {"input": "x"},
                }
            ),
            "c",
            "url '/v1/embeddings' is not supported",
        ),
        (
            line({"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": "x"}),
            "c",
            "'body' must be a JSON object",
        ),
    ],
)
def test_a_bad_line_becomes_an_error_item_naming_its_line(
    raw: bytes, custom_id: str, message: str
) -> None:
    item = parse_line(raw, 5)
    assert item.request is None
    assert item.custom_id == custom_id
    assert item.error is not None and message in item.error
    assert item.error.startswith("line 5:")


def test_read_items_skips_blank_lines_but_keeps_numbering() -> None:
    stream = io.BytesIO(line({"messages": MESSAGES}) + b"\n   \n" + line({"messages": MESSAGES}))
    assert [item.custom_id for item in read_items(stream)] == ["line-1", "line-4"]


def test_count_requests_counts_non_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"{}\n\n{}\n  \n{}")  # no newline at the end either
    assert count_requests(str(path)) == 3
    assert count_requests("-") is None


def test_open_input_reports_missing_file_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^cannot read .*missing\.jsonl: No such file"):
        open_input(str(tmp_path / "missing.jsonl"))


def test_idset_keeps_done_and_visited_apart_over_many_ids() -> None:
    ids = IdSet()
    for i in range(0, 20_000, 2):
        ids.mark_done(f"id-{i}")  # what a resume scan found in the output
    for i in range(20_000):
        assert ids.visit(f"id-{i}") == (True, i % 2 == 0)
    assert len(ids) == 20_000
    assert ids.visit("id-124") == (False, True) and ids.visit("id-125") == (False, False)
    assert "id-19998" in ids and "id-19999" not in ids and "id-20000" not in ids
    assert 5 not in ids
    assert ids.memory_bytes() <= 20_000 / 0.35 * 12  # 12 bytes a slot, load above 0.35


def test_count_requests_leaves_a_pipe_unread(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert count_requests(str(fifo)) is None  # would block forever if it tried to read


# --- what Python's json accepts but a request cannot carry (issue 13, item 10) -------------


@pytest.mark.parametrize(
    ("raw", "custom_id", "why"),
    [
        (
            rb'{"custom_id": "s", "messages": [{"role": "user", "content": "a\ud800b"}]}',
            "s",
            "lone UTF-16 surrogate",
        ),
        (
            rb'{"custom_id": "s", "messages": [{"role": "user", "content": "\uDFFF"}]}',
            "s",
            "lone UTF-16 surrogate",
        ),
        (
            rb'{"custom_id": "n", "messages": [{"role": "user", "content": "x"}], '
            rb'"temperature": NaN}',
            "n",
            "NaN is not a JSON value",
        ),
        (
            rb'{"custom_id": "i", "messages": [{"role": "user", "content": "x"}], '
            rb'"max_tokens": -Infinity}',
            "i",
            "-Infinity is not a JSON value",
        ),
        (b"NaN", "line-7", "NaN is not a JSON value"),
        (rb'{"custom_id": "\ud800", "messages": []}', "line-7", "lone UTF-16 surrogate"),
    ],
)
def test_lines_json_accepts_but_no_request_can_carry_are_invalid_with_their_line(
    raw: bytes, custom_id: str, why: str
) -> None:
    item = parse_line(raw, 7)
    assert item.request is None and item.error is not None
    assert item.error.startswith("line 7: ") and why in item.error
    assert item.custom_id == custom_id


def test_a_surrogate_pair_and_the_word_nan_are_fine() -> None:
    raw = '{"messages": [{"role": "user", "content": "NaN \\ud83d\\ude00 Infinity"}]}'
    item = parse_line(raw.encode(), 1)
    assert item.error is None and item.request is not None
    assert item.request.messages[0]["content"] == "NaN \U0001f600 Infinity"
