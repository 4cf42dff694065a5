"""How long the garbage collector holds the event loop during 1,000 paced streams.

    python -m benchmarks.aio_gc floor rakka floor rakka

Each named client runs the stream scenario of ``benchmarks.aio_run`` once (1,000 streams,
pinned as there) with ``gc.callbacks`` timing every collector pass; prints the p99 delay,
the wall time, and the passes: their count, total time, how many took over 20 ms and the
five longest. A diagnostic, not a table with targets.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

from benchmarks.aio_clients import CLIENTS
from benchmarks.aio_run import run_in_process
from benchmarks.aio_worker import raise_nofile, stream_job

passes: list[tuple[float, int]] = []
t0 = [0.0]


def cb(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        t0[0] = time.perf_counter()
    else:
        passes.append((time.perf_counter() - t0[0], info["generation"]))


async def main(port: int, name: str) -> None:
    client = CLIENTS[name](f"http://127.0.0.1:{port}/v1", 1000)
    passes.clear()
    gc.callbacks.append(cb)
    out = await stream_job(client, port, 1000, 60)
    gc.callbacks.remove(cb)
    total = sum(d for d, _ in passes)
    longest = [round(d * 1000) for d in sorted(d for d, _ in passes)[-5:]]
    over = sum(1 for d, _ in passes if d > 0.02)
    full = sum(1 for _, generation in passes if generation == 2)
    print(
        f"{name}: p99 delay {out['delay']['p99_s']} s, wall {out['wall_s']:.2f} s; "
        f"gc {len(passes)} passes, {total:.2f} s in all, {over} over 20 ms, "
        f"longest {longest} ms, {full} full"
    )
    await client.close()


def run(names: list[str]) -> None:
    raise_nofile()
    run_in_process(names, main)


if __name__ == "__main__":
    run(sys.argv[1:] or ["floor", "rakka"])
