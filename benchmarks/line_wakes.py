"""What waiting in an admission line costs, alone: CPU per admission when ``--waiters``
asyncio tasks queue behind one concurrency slot of a local ``AdmissionQueue`` (no HTTP).

    python -m benchmarks.line_wakes                  # 5,000 waiters, best of 5 passes
    python -m benchmarks.line_wakes --waiters 200

Each task asks the queue, waits on its own notifier until it is woken at the head,
takes the slot, yields once and releases it, which wakes the next. What is measured is
the line: the asks, the wake-ups and the waits (a timer per waiting task).
To compare another checkout, run this from it (the package is imported from the
working directory).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from rakka_runtime.policies.admission import AdmissionQueue
from rakka_runtime.policies.line import Pending


async def _pass(queue: AdmissionQueue, waiters: int) -> float:
    async def one() -> None:
        waiter = None
        while True:
            step = queue.reserve(1, waiter=waiter)
            if not isinstance(step, Pending):
                break
            waiter = step.waiter
            assert step.wait.notifier is not None
            await step.wait.notifier.wait_async(step.wait.seen, step.wait.seconds)
        await asyncio.sleep(0)
        queue.release(step, requests_used=1, tokens_used=1)

    cpu = time.process_time()
    await asyncio.gather(*(one() for _ in range(waiters)))
    return (time.process_time() - cpu) / waiters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiters", type=int, default=5000)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args(argv)
    queue = AdmissionQueue(concurrent_requests=1)

    async def run() -> list[float]:
        return [await _pass(queue, args.waiters) for _ in range(args.passes)]

    best = min(asyncio.run(run()))
    print(f"{args.waiters} waiters behind one slot: {best * 1e6:.1f} µs CPU per admission")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
