"""Per-chunk CPU of the Anthropic codec against the OpenAI one (SSE parsing + decoding).

    .venv/bin/python providers/anthropic/bench/decoder_cpu.py

Both drivers run every codec the same way, so what differs between providers per streamed
chunk is the event parsing and the codec's decoding; this measures exactly that, on the
same 100-word answer in each wire format (process CPU time, median of 7 runs).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from rakka_provider_anthropic.wire import MessagesStream
from rakka_provider_openai.codec import ChatStream
from rakka_runtime.sse import SSEDecoder

WORDS = 100


def openai_stream() -> bytes:
    base = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_1",
    }
    chunks: list[dict[str, Any]] = [
        {
            **base,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
    ]
    chunks += [
        {
            **base,
            "choices": [{"index": 0, "delta": {"content": f" word{i}"}, "finish_reason": None}],
        }
        for i in range(WORDS)
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append(
        {**base, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": WORDS}}
    )
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + b"data: [DONE]\n\n"


def anthropic_stream() -> bytes:
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-x",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 10, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    events += [
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": f" word{i}"},
            },
        )
        for i in range(WORDS)
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": WORDS},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events)


def per_chunk_us(make: Callable[[str], Any], body: bytes, streams: int = 300) -> float:
    runs = []
    for _ in range(7):
        started = time.process_time()
        for _ in range(streams):
            decoder, sse = make("req"), SSEDecoder()
            for event in sse.feed(body):
                decoder.event(event)
            decoder.finish()
        runs.append((time.process_time() - started) / streams / WORDS * 1e6)
    return statistics.median(runs)


if __name__ == "__main__":
    openai = per_chunk_us(ChatStream, openai_stream())
    anthropic = per_chunk_us(MessagesStream, anthropic_stream())
    print(
        f"per content chunk: openai {openai:.2f} us, anthropic {anthropic:.2f} us, "
        f"ratio {anthropic / openai:.2f}"
    )
