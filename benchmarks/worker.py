"""One client's measurements, in a process of its own (so CPU and RSS are that client's).

``python -m benchmarks.worker --client rakka --port P ...`` prints one JSON object on its
last stdout line. Two jobs:

* ``cpu`` (default): for each scenario ``mode:concurrency`` build a fresh client, warm it
  up, then time a fixed amount of work with ``time.process_time()`` (user+sys of every
  thread of this process) and read the bench server's counters before and after.
* ``rss``: build the client, then hold 16 streams open at once (every thread parks after
  its first chunk until all 16 have one) for a few waves; report ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from typing import Any

from benchmarks.clients import CLIENTS, run_parallel
from benchmarks.server import fetch_stats


def _rss_now_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure_scenario(
    client_name: str,
    base_url: str,
    port: int,
    mode: str,
    concurrency: int,
    count: int,
    warmup: int,
) -> dict[str, Any]:
    before_setup = fetch_stats(port)
    started = time.perf_counter()
    client = CLIENTS[client_name](base_url, concurrency)
    setup_s = time.perf_counter() - started
    try:
        work = client.chat if mode == "chat" else client.stream
        run_parallel(work, warmup, concurrency)
        server_before = fetch_stats(port)
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        run_parallel(work, count, concurrency)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        server_after = fetch_stats(port)
        info = client.describe()
    finally:
        client.close()
    requests = server_after["requests"] - server_before["requests"]
    if requests != count:
        raise RuntimeError(f"{client_name} {mode}: server saw {requests} requests, sent {count}")
    return {
        "mode": mode,
        "concurrency": concurrency,
        "requests": count,
        "cpu_s": cpu,
        "wall_s": wall,
        "setup_s": setup_s,
        "server_cpu_s": server_after["cpu_s"] - server_before["cpu_s"],
        # Every connection this client opened, warm-up included (a fresh client per scenario).
        "connections": server_after["chat_connections"] - before_setup["chat_connections"],
        "total_requests": count + warmup,
        "info": info,
    }


def measure_rss(client_name: str, base_url: str, concurrency: int, waves: int) -> dict[str, Any]:
    client = CLIENTS[client_name](base_url, concurrency)
    try:
        client.stream()  # one warm stream: lazy imports and first-use caches are paid
        baseline = _rss_now_kib()
        for _ in range(waves):
            barrier = threading.Barrier(concurrency)

            def open_stream(barrier: threading.Barrier = barrier) -> None:
                # Park after the first chunk until every thread has one: all streams open.
                client.stream(lambda: barrier.wait(timeout=60))

            run_parallel(open_stream, concurrency, concurrency)
    finally:
        client.close()
    return {
        "concurrency": concurrency,
        "waves": waves,
        "baseline_rss_kib": baseline,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", choices=sorted(CLIENTS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--job", choices=["cpu", "rss"], default="cpu")
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        help="MODE:CONCURRENCY:COUNT:WARMUP, MODE is chat or stream (repeatable)",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="rss job: open streams")
    parser.add_argument("--waves", type=int, default=3, help="rss job: rounds of open streams")
    args = parser.parse_args(argv)
    base_url = f"http://127.0.0.1:{args.port}/v1"
    out: dict[str, Any] = {"client": args.client, "python": sys.version.split()[0]}
    if args.job == "rss":
        out["rss"] = measure_rss(args.client, base_url, args.concurrency, args.waves)
    else:
        out["scenarios"] = []
        for spec in args.scenario:
            mode, concurrency, count, warmup = spec.split(":")
            out["scenarios"].append(
                measure_scenario(
                    args.client,
                    base_url,
                    args.port,
                    mode,
                    int(concurrency),
                    int(count),
                    int(warmup),
                )
            )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
