"""Profile one async client against the async bench server: where does its CPU go?

    python -m benchmarks.aio_profiling --client rakka --streams 200            # pyinstrument
    python -m benchmarks.aio_profiling --client rakka --job chat --cprofile    # call counts

The server runs paced as in ``benchmarks.aio_run`` (pinned to the first core, this
process to the second); the profile covers the measured streams or requests only, after
one warm-up request. pyinstrument samples the event loop's thread (so ``async_mode`` is
off: a coroutine's time is where the loop runs it); ``--cprofile`` adds exact call counts
at the price of inflating small functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from typing import Any

from benchmarks.aio_clients import CLIENTS, AsyncBenchClient
from benchmarks.aio_run import FULL, AioServerProcess
from benchmarks.run import PIN, _cpus


async def _work(client: AsyncBenchClient, job: str, count: int, concurrency: int) -> None:
    if job == "stream":
        await asyncio.gather(*(client.stream(lambda text: None) for _ in range(count)))
        return
    left = count

    async def loop() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await client.chat()

    await asyncio.gather(*(loop() for _ in range(concurrency)))


async def _profile(args: argparse.Namespace, port: int) -> None:
    count = args.streams if args.job == "stream" else args.requests
    concurrency = count if args.job == "stream" else args.concurrency
    client = CLIENTS[args.client](f"http://127.0.0.1:{port}/v1", concurrency)
    try:
        await client.chat()  # warm: imports, first-use caches
        cpu0 = time.process_time()
        profiler: Any
        if args.cprofile:
            profiler = cProfile.Profile()
            profiler.enable()
            await _work(client, args.job, count, concurrency)
            profiler.disable()
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(args.top)
        else:
            from pyinstrument import Profiler

            profiler = Profiler(interval=args.interval, async_mode="disabled")
            profiler.start()
            await _work(client, args.job, count, concurrency)
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
            if args.html:
                with open(args.html, "w", encoding="utf-8") as out:
                    out.write(profiler.output_html())
        cpu = time.process_time() - cpu0
        print(
            f"{args.client} {args.job}: {cpu:.2f} s CPU for {count} "
            f"{'streams' if args.job == 'stream' else 'requests'} (profiler overhead included)"
        )
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aio_profiling")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="rakka")
    parser.add_argument("--job", choices=["stream", "chat"], default="stream")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--cprofile", action="store_true", help="cProfile instead")
    parser.add_argument("--top", type=int, default=40, help="cProfile: rows to print")
    parser.add_argument("--interval", type=float, default=0.0005, help="pyinstrument interval")
    parser.add_argument("--html", metavar="FILE", help="pyinstrument: also write HTML here")
    args = parser.parse_args(argv)
    PIN.server, PIN.client = _cpus()
    server = AioServerProcess(FULL)
    try:
        if PIN.client is not None:
            os.sched_setaffinity(0, PIN.client)
        asyncio.run(_profile(args, server.port))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
