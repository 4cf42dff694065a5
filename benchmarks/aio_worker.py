"""One async client's measurements, in a process of its own (CPU and RSS are that client's).

``python -m benchmarks.aio_worker --client rakka --port P --job stream --count 1000``
prints one JSON object on its last stdout line. The harness pins this process to one
core; the worker raises its own ``RLIMIT_NOFILE`` soft limit to the hard one (thousands
of sockets).

* ``stream``: build the client, warm it with one non-streamed request (lazy imports,
  first-use caches), then open ``--count`` streams at once in one event loop and read
  them to the end. Each content chunk carries the server's ``time.monotonic()`` at send;
  the delay to receipt goes into a 1 ms histogram (the same fixed-size list for every
  client, so it costs each alike and adds nothing per chunk to RSS). Reports streams
  completed, wall time, CPU (``time.process_time()``), delay percentiles, peak RSS.
* ``chat``: warm with ``--warmup`` requests at the concurrency, then ``--count``
  non-streamed requests over ``--concurrency`` tasks; CPU per request and requests/s.

Both are bounded: ``--limit`` seconds at most, after which unfinished streams count as
incomplete (and requests as not done).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from typing import Any

from benchmarks.aio_clients import CLIENTS, AsyncBenchClient
from benchmarks.server import fetch_stats

BUCKETS = 120_000  # 1 ms buckets: delays up to 120 s (later ones land in the last)


def _rss_now_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sched_wait_s() -> float:
    """Seconds this process's threads spent runnable but waiting for a CPU (Linux
    schedstat): what other load on the machine cost this client, 0 where unknown."""
    total = 0
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/schedstat", encoding="ascii") as stat:
                total += int(stat.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return total / 1e9


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Delays:
    """A histogram of send-to-receipt delays, 1 ms a bucket."""

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.total = 0

    def recorder(self) -> Any:
        counts = self.counts
        now = time.monotonic
        last = BUCKETS - 1

        def record(text: str) -> None:
            ms = int((now() - float(text)) * 1000.0)
            counts[ms if ms < last else last] += 1

        return record

    def summary(self) -> dict[str, float]:
        total = sum(self.counts)
        out: dict[str, float] = {"chunks": total}
        for name, q in (("p50_s", 0.50), ("p99_s", 0.99), ("max_s", 1.0)):
            want = max(1, int(total * q + 0.5)) if q < 1.0 else total
            seen = 0
            value = 0.0
            for ms, n in enumerate(self.counts):
                seen += n
                if n and seen >= want:
                    value = (ms + 1) / 1000.0  # the bucket's upper edge
                    break
            out[name] = value
        return out


async def stream_job(
    client: AsyncBenchClient, port: int, count: int, limit: float
) -> dict[str, Any]:
    await client.chat()  # warm: imports, first-use caches, one connection
    delays = Delays()
    record = delays.recorder()
    baseline = _rss_now_kib()
    server_before = fetch_stats(port)
    ends: list[float] = []

    async def one() -> int:
        seen = await client.stream(record)
        ends.append(time.perf_counter())
        return seen

    wait0 = sched_wait_s()
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=limit)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=10)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    waited = sched_wait_s() - wait0
    server_after = fetch_stats(port)
    seen = [t.result() for t in done if not t.cancelled() and t.exception() is None]
    errors = [repr(t.exception()) for t in done if not t.cancelled() and t.exception() is not None]
    # What failed, by kind: a tripped breaker hides the failures that tripped it.
    kinds: dict[str, str] = {}
    for text in errors:
        kinds.setdefault(text.split("(", 1)[0], text[:300])
    return {
        "streams": count,
        "completed": len(seen),
        "errors": len(errors),
        "first_errors": errors[:3],
        "error_kinds": kinds,
        "timed_out": len(pending),
        "json_chunks": sum(seen),
        "wall_s": wall,
        "last_end_s": (max(ends) - wall0) if ends else None,
        "cpu_s": cpu,
        "sched_wait_s": waited,
        "delay": delays.summary(),
        "baseline_rss_kib": baseline,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "server_cpu_s": server_after["cpu_s"] - server_before["cpu_s"],
        "server_max_lag_s": server_after["max_lag_s"],
        "server_max_open_streams": server_after["max_open_streams"],
        "connections": server_after["chat_connections"] - server_before["chat_connections"],
    }


async def chat_job(
    client: AsyncBenchClient, port: int, count: int, concurrency: int, warmup: int, limit: float
) -> dict[str, Any]:
    async def run(total: int) -> int:
        left = total

        async def loop() -> int:
            nonlocal left
            done = 0
            while left > 0:
                left -= 1
                await client.chat()
                done += 1
            return done

        workers = [asyncio.ensure_future(loop()) for _ in range(concurrency)]
        finished, pending = await asyncio.wait(workers, timeout=limit)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)
        for task in finished:
            task.result()  # re-raise the first failure
        return sum(task.result() for task in finished)

    await run(warmup)
    server_before = fetch_stats(port)
    wait0 = sched_wait_s()
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    done = await run(count)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    waited = sched_wait_s() - wait0
    server_after = fetch_stats(port)
    return {
        "requests": count,
        "completed": done,
        "concurrency": concurrency,
        "wall_s": wall,
        "cpu_s": cpu,
        "sched_wait_s": waited,
        "server_requests": server_after["requests"] - server_before["requests"],
        "server_cpu_s": server_after["cpu_s"] - server_before["cpu_s"],
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "connections": server_after["chat_connections"] - server_before["chat_connections"],
    }


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    base_url = f"http://127.0.0.1:{args.port}/v1"
    concurrency = args.count if args.job == "stream" else args.concurrency
    started = time.perf_counter()
    client = CLIENTS[args.client](base_url, concurrency)
    setup_s = time.perf_counter() - started
    try:
        if args.job == "stream":
            out = await stream_job(client, args.port, args.count, args.limit)
        else:
            out = await chat_job(
                client, args.port, args.count, args.concurrency, args.warmup, args.limit
            )
        out["info"] = client.describe()
    finally:
        await client.close()
    out["setup_s"] = setup_s
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aio_worker")
    parser.add_argument("--client", choices=sorted(CLIENTS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--job", choices=["stream", "chat"], default="stream")
    parser.add_argument("--count", type=int, default=100, help="streams, or requests")
    parser.add_argument("--concurrency", type=int, default=256, help="chat: tasks")
    parser.add_argument("--warmup", type=int, default=512, help="chat: warm-up requests")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds at most")
    args = parser.parse_args(argv)
    nofile = raise_nofile()
    out = asyncio.run(amain(args))
    out.update(client=args.client, job=args.job, nofile=nofile, python=sys.version.split()[0])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
