"""rakka's own CPU per non-streamed request on asyncio, without HTTP: a canned transport.

    python -m benchmarks.aio_core                       # best of 5 runs of 5,000, c=1 and 256
    python -m benchmarks.aio_core --requests 600 --once # one pass, for an instruction count:

    valgrind --tool=cachegrind --cache-sim=no python -m benchmarks.aio_core --once --requests 100
    valgrind --tool=cachegrind --cache-sim=no python -m benchmarks.aio_core --once --requests 600

(the difference of the two ``I refs`` over 500 is the instructions of one request, start-up
cancelled out). The transport answers at once with a fixed completion and OpenAI's
rate-limit headers, so what is measured is the core, the policies, the codec and the
handle: everything rakka adds on top of aiohttp's request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from typing import Any

from benchmarks.clients import compile_rakka_config

_BODY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there, how can I help?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
    }
).encode()
_HEADERS = {
    "content-type": "application/json",
    "x-request-id": "req_1",
    # Parsed and applied as a real provider's are, with limits no run reaches: a learned
    # limit that ran out would measure waiting in the queue instead.
    "x-ratelimit-limit-requests": "1000000000",
    "x-ratelimit-limit-tokens": "1000000000000",
    "x-ratelimit-remaining-requests": "999999999",
    "x-ratelimit-remaining-tokens": "999999999999",
}
MESSAGES = [{"role": "user", "content": "hi"}]


class _Canned:
    """A response that is all there at once."""

    __slots__ = ("_left", "headers", "status")

    def __init__(self) -> None:
        self.status, self.headers, self._left = 200, _HEADERS, True

    async def read(self, deadline: float | None) -> bytes:
        if self._left:
            self._left = False
            return _BODY
        return b""

    async def finish(self, how: str) -> None:
        return None


class _Transport:
    async def send(self, *args: Any, **kwargs: Any) -> _Canned:
        await asyncio.sleep(0)  # the task yields once, as a real send would
        return _Canned()

    async def close(self) -> None:
        return None


def _runtime(compiled: str) -> Any:
    from rakka_runtime.aio import AsyncRuntime

    rt = AsyncRuntime.from_compiled(compiled)
    rt._transport = _Transport()  # type: ignore[assignment]
    rt._transports = {rt.deployment.name: rt._transport}
    return rt


async def _requests(rt: Any, count: int, concurrency: int) -> None:
    left = count

    async def loop() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await rt.chat(MESSAGES)

    await asyncio.gather(*(loop() for _ in range(concurrency)))


async def _main(args: argparse.Namespace, compiled: str) -> None:
    rt = _runtime(compiled)
    if args.once:
        await _requests(rt, args.requests, 1)
        return
    await _requests(rt, 200, 1)  # warm: first-use caches
    for concurrency in (1, 256):
        best = float("inf")
        for _ in range(5):
            cpu = time.process_time()
            await _requests(rt, args.requests, concurrency)
            best = min(best, (time.process_time() - cpu) / args.requests * 1e6)
        print(f"concurrency {concurrency}: {best:.1f} µs of CPU per request (best of 5)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aio_core")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--once", action="store_true", help="one pass at concurrency 1")
    args = parser.parse_args(argv)
    compiled = os.path.join(tempfile.mkdtemp(prefix="rakka-core-"), "rakka.json")
    compile_rakka_config("http://127.0.0.1:9/v1", compiled)  # never contacted
    asyncio.run(_main(args, compiled))
    return 0


if __name__ == "__main__":
    sys.exit(main())
