"""Profile one client against the bench server: where does its CPU go?

    python -m benchmarks.profiling --client rakka --mode stream            # pyinstrument
    python -m benchmarks.profiling --client rakka --mode chat --cprofile   # call counts

pyinstrument (a sampling profiler, low overhead) shows the call tree; ``--cprofile`` adds
exact call counts at the price of inflating small functions. Neither is a runtime
dependency: ``pip install pyinstrument`` into the venv first. For a whole-process view
including C frames, run the worker under py-spy instead::

    py-spy record --native -o profile.svg -- python -m benchmarks.worker --client rakka \\
        --port PORT --scenario stream:1:2000:20
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

from benchmarks.clients import CLIENTS, run_parallel
from benchmarks.run import BenchServerProcess


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="rakka")
    parser.add_argument("--mode", choices=["chat", "stream"], default="stream")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--cprofile", action="store_true", help="cProfile instead")
    parser.add_argument("--interval", type=float, default=0.0002, help="pyinstrument interval")
    parser.add_argument("--html", metavar="FILE", help="pyinstrument: also write HTML here")
    args = parser.parse_args(argv)

    server = BenchServerProcess(args.chunks)
    try:
        client = CLIENTS[args.client](f"http://127.0.0.1:{server.port}/v1", args.concurrency)
        work = client.chat if args.mode == "chat" else client.stream
        run_parallel(work, 50, args.concurrency)  # warm: imports, connections, caches
        cpu0 = time.process_time()
        if args.cprofile:
            cprofiler = cProfile.Profile()
            cprofiler.enable()
            run_parallel(work, args.requests, args.concurrency)
            cprofiler.disable()
            stats = pstats.Stats(cprofiler, stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(35)
        else:
            from pyinstrument import Profiler

            profiler = Profiler(interval=args.interval, async_mode="disabled")
            profiler.start()
            run_parallel(work, args.requests, args.concurrency)
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
            if args.html:
                with open(args.html, "w", encoding="utf-8") as out:
                    out.write(profiler.output_html())
        cpu = time.process_time() - cpu0
        print(
            f"{args.client} {args.mode}: {cpu / args.requests * 1e6:.0f} µs CPU per request "
            "(profiler overhead included)"
        )
        client.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
