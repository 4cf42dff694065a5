"""What sharing the rate limits and the breaker through Redis costs an asyncio client.

    python -m benchmarks.redis_shared                 # 3,000 requests at concurrency 128
    python -m benchmarks.redis_shared --driver thread # the same on threads (Runtime)
    python -m benchmarks.redis_shared --smoke         # a few hundred, for a quick check
    python -m benchmarks.redis_shared --slots 32 --concurrency 256
                                                      # a line: 256 callers, 32 slots

Starts a ``redis-server`` (from PATH) and the bench server (``benchmarks.aio_server``,
answers after 50 ms) on loopback, then, each in a child process of its own: the
``AsyncRuntime`` (or, ``--driver thread``, the ``Runtime`` on as many threads) with local
limits and breaker, and with both on Redis. Every request asks Redis twice (reserve,
settle), plus a breaker read and a ``cap`` correction now and then. ``--slots`` sets
``concurrent_requests`` below the concurrency, so that a line of waiters forms and what
waiting in line costs shows. Reports CPU per
request (all threads of the client process), requests a second and Redis round trips per
request (the server's own ``EVALSHA``/``EVAL`` count, warm-up included), the median of
``--rounds`` interleaved rounds. To compare another checkout,
put it first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.clients import rakka_overrides

VARIANTS = ("local", "redis")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _overrides(base_url: str, variant: str, redis_url: str, slots: int | None) -> list[str]:
    out = [*rakka_overrides(base_url), "deployment.rate_limits.requests_per_minute=10000000"]
    if slots is not None:
        out.append(f"deployment.rate_limits.concurrent_requests={slots}")
    if variant == "redis":
        for section in ("rate_limits", "circuit_breaker"):
            out += [
                f"deployment.{section}.backend=redis",
                f"deployment.{section}.redis.url={redis_url}",
                f"deployment.{section}.redis.key_prefix=bench{os.getpid()}",
            ]
    return out


async def _measure(overrides: list[str], count: int, concurrency: int) -> dict[str, Any]:
    from rakka_runtime.aio import AsyncRuntime

    messages = [{"role": "user", "content": "hi"}]
    async with AsyncRuntime.from_overrides(overrides) as rt:
        queue: list[int] = []

        async def worker() -> None:
            while queue:
                queue.pop()
                await rt.chat(messages)

        queue.extend(range(concurrency * 2))  # warm-up: connections, first-use caches
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        queue.extend(range(count))
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_us": cpu / count * 1e6, "per_s": count / wall}


def _measure_threads(overrides: list[str], count: int, concurrency: int) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from rakka_runtime.runtime import Runtime

    messages = [{"role": "user", "content": "hi"}]
    rt = Runtime.from_overrides(overrides)
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda _: rt.chat(messages), range(concurrency * 2)))  # warm-up
            cpu, wall = time.process_time(), time.perf_counter()
            list(pool.map(lambda _: rt.chat(messages), range(count)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        rt.close()
    return {"cpu_us": cpu / count * 1e6, "per_s": count / wall}


def _child(args: argparse.Namespace) -> int:
    overrides = _overrides(args.base_url, args.variant, args.redis_url, args.slots)
    if args.driver == "thread":
        result = _measure_threads(overrides, args.count, args.concurrency)
    else:
        result = asyncio.run(_measure(overrides, args.count, args.concurrency))
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, help="concurrent requests allowed")
    parser.add_argument("--driver", choices=("async", "thread"), default="async")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    if args.smoke:
        args.count, args.concurrency, args.rounds = 300, 32, 1
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("redis-server is not on PATH", file=sys.stderr)
        return 2
    redis_port, port = free_port(), free_port()
    servers = [
        subprocess.Popen(
            [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
        ),
        # It serves until its stdin closes, and says PORT once it listens.
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.aio_server", "--port", str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ),
    ]
    try:
        assert servers[1].stdout is not None
        assert servers[1].stdout.readline().startswith("PORT")
        time.sleep(0.5)  # redis-server listens well within this (a benchmark, not a test)
        import redis

        admin = redis.Redis(port=redis_port)

        def scripts_run() -> int:
            stats = admin.info("commandstats")
            return sum(
                int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval")
            )

        results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for round_ in range(args.rounds):
            order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                before = scripts_run()
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.redis_shared",
                        "--child",
                        f"--variant={variant}",
                        f"--base-url=http://127.0.0.1:{port}/v1",
                        f"--redis-url=redis://127.0.0.1:{redis_port}/0",
                        f"--count={args.count}",
                        f"--concurrency={args.concurrency}",
                        f"--driver={args.driver}",
                        *([f"--slots={args.slots}"] if args.slots else []),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                sent = args.count + 2 * args.concurrency  # the warm-up's requests too
                result["round_trips"] = (scripts_run() - before) / sent
                results[variant].append(result)
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
    print(
        f"{args.driver} driver: {args.count} non-streamed requests at concurrency "
        f"{args.concurrency}{f', {args.slots} slots' if args.slots else ''}, "
        f"median of {args.rounds} round(s)"
    )
    print("| limits and breaker | CPU per request | requests/s | Redis round trips per request |")
    print("|---|---|---|---|")
    for variant in VARIANTS:
        cpu = statistics.median(r["cpu_us"] for r in results[variant])
        rate = statistics.median(r["per_s"] for r in results[variant])
        trips = statistics.median(r["round_trips"] for r in results[variant])
        print(f"| {variant} | {cpu:.0f} µs | {rate:.0f} | {trips:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
