"""What an asyncio request in flight costs the garbage collector.

    python -m benchmarks.aio_objects floor rakka

For each named client, against the async bench server (pinned as in ``benchmarks.aio_run``):

* tracked objects per request in flight: 256 non-streamed requests started at once,
  ``gc.get_objects()`` counted 25 ms later (the server answers after 50 ms) against the
  idle client, by type;
* the collector's share of a non-streamed run: 10,000 requests at concurrency 256 with
  every pass timed by ``gc.callbacks`` (CPU time), and the passes counted.

A diagnostic for docs/benchmarks.md, not a table with targets.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import sys
import time
from typing import Any

from benchmarks.aio_clients import CLIENTS, AsyncBenchClient
from benchmarks.aio_profiling import _work
from benchmarks.aio_run import run_in_process

CONCURRENCY = 256
REQUESTS = 10_000


async def _in_flight(client: AsyncBenchClient) -> tuple[float, list[tuple[str, float]]]:
    gc.collect()
    gc.disable()
    try:
        idle = collections.Counter(type(o).__name__ for o in gc.get_objects())
        tasks = [asyncio.ensure_future(client.chat()) for _ in range(CONCURRENCY)]
        await asyncio.sleep(0.025)
        busy = collections.Counter(type(o).__name__ for o in gc.get_objects())
        await asyncio.gather(*tasks)
    finally:
        gc.enable()
    grown = busy - idle
    top = [(name, count / CONCURRENCY) for name, count in grown.most_common(8)]
    return sum(grown.values()) / CONCURRENCY, top


async def _collector(client: AsyncBenchClient) -> tuple[float, float, int]:
    spent = [0.0, 0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            spent[1] = time.thread_time()
        else:
            spent[0] += time.thread_time() - spent[1]

    passes = sum(s["collections"] for s in gc.get_stats())
    gc.callbacks.append(timed)
    cpu = time.process_time()
    try:
        await _work(client, "chat", REQUESTS, CONCURRENCY)
    finally:
        gc.callbacks.remove(timed)
    cpu = time.process_time() - cpu
    passes = sum(s["collections"] for s in gc.get_stats()) - passes
    return cpu / REQUESTS * 1e6, spent[0] / REQUESTS * 1e6, passes


async def main(port: int, name: str) -> None:
    client = CLIENTS[name](f"http://127.0.0.1:{port}/v1", CONCURRENCY)
    try:
        await asyncio.gather(*(client.chat() for _ in range(CONCURRENCY)))  # warm
        objects, top = await _in_flight(client)
        cpu, collector, passes = await _collector(client)
    finally:
        await client.close()
    kinds = ", ".join(f"{kind} {count:.1f}" for kind, count in top)
    print(f"{name}: {objects:.1f} tracked objects per request in flight ({kinds})")
    print(
        f"{name}: {cpu:.0f} us CPU per request, of which the collector {collector:.0f} us "
        f"in {passes} passes per {REQUESTS:,} requests"
    )


def run(names: list[str]) -> None:
    run_in_process(names, main)


if __name__ == "__main__":
    run(sys.argv[1:] or ["floor", "rakka"])
