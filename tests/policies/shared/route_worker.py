"""One process of a routed fleet: a routed Runtime over two emulators sharing one Redis.

Run as ``python route_worker.py '<json>'`` with ``{"overrides": [...], "duration": S,
"threads": N}``. It builds its runtime, prints ``ready``, waits for a line on stdin, sends
requests to the group ``gpt-4o-mini`` back to back for ``duration`` seconds, and prints
one JSON line: how many each deployment answered, and the outcomes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter

from rakka_runtime.errors import InferenceError
from rakka_runtime.runtime import Runtime


def main() -> None:
    spec = json.loads(sys.argv[1])
    with Runtime.from_overrides(spec["overrides"]) as rt:
        print("ready", flush=True)
        sys.stdin.readline()
        end = time.monotonic() + spec["duration"]
        lock = threading.Lock()
        served: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()

        def worker() -> None:
            while time.monotonic() < end:
                try:
                    result = rt.chat("hi", model="gpt-4o-mini", max_tokens=2, deadline=5)
                except InferenceError as exc:
                    kind, deployment = exc.kind, "none"
                else:
                    kind, deployment = "ok", result.deployment or "?"
                with lock:
                    served[deployment] += 1
                    outcomes[kind] += 1
                time.sleep(0.01)

        threads = [threading.Thread(target=worker) for _ in range(spec["threads"])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print(json.dumps({"served": dict(served), "outcomes": dict(outcomes)}), flush=True)


if __name__ == "__main__":
    main()
