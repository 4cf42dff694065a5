"""One process of a test fleet: a Runtime against the test's emulator and Redis.

Run as ``python fleet_worker.py '<json>'``. It builds its runtime, prints ``ready``,
waits for a line on stdin (the test starts every process at once), runs its job, and
prints one JSON line with what happened. Jobs:

- ``load``: ``threads`` threads send requests until ``duration`` seconds have passed;
  each request has its own ``deadline``. Every outcome is counted.
- ``trip``: after ``delay`` seconds, one request the emulator answers with a 503 (the
  breaker's threshold is 1): reports when it returned.
- ``watch``: sends requests back to back for ``duration`` seconds, reporting when each
  started and whether the circuit refused it.

Times in the report are ``time.time()``: the processes share the machine's clock.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from typing import Any

from rakka_runtime.config.loader import load_config
from rakka_runtime.errors import CircuitOpen, InferenceError
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.runtime import Runtime


def load(rt: Runtime, job: dict[str, Any]) -> dict[str, Any]:
    end = time.monotonic() + job["duration"]
    lock = threading.Lock()
    outcomes: Counter[str] = Counter()
    usage: Counter[int] = Counter()
    submitted = [0]
    overrun = [0.0]  # the longest a request ran past its deadline

    def worker() -> None:
        while time.monotonic() < end:
            with lock:
                submitted[0] += 1
            deadline = time.monotonic() + job["deadline"]
            try:
                result = rt.chat("hi", max_tokens=job["max_tokens"], deadline=job["deadline"])
            except InferenceError as exc:
                kind = exc.kind
                time.sleep(0.02)  # a refused request is retried after a breath
            except BaseException as exc:  # anything else is a bug the test must see
                kind = f"unexpected:{type(exc).__name__}"
            else:
                kind = "ok"
                assert result.usage is not None
                with lock:
                    usage[result.usage.input_tokens + result.usage.output_tokens] += 1
            with lock:
                outcomes[kind] += 1
                overrun[0] = max(overrun[0], time.monotonic() - deadline)

    threads = [threading.Thread(target=worker) for _ in range(job["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "submitted": submitted[0],
        "outcomes": dict(outcomes),
        "usage": {str(k): v for k, v in usage.items()},
        "overrun": overrun[0],
    }


def trip(rt: Runtime, job: dict[str, Any]) -> dict[str, Any]:
    time.sleep(job["delay"])
    request = rt.request("hi", extra_headers={"x-emulator-fault": "server_error;status=503"})
    before = time.time()
    try:
        rt.execute(request).result()
    except InferenceError as exc:
        kind = exc.kind
    else:
        kind = "ok"
    return {"kind": kind, "before": before, "after": time.time()}


def watch(rt: Runtime, job: dict[str, Any]) -> dict[str, Any]:
    end = time.monotonic() + job["duration"]
    calls = []
    while time.monotonic() < end:
        started = time.time()
        try:
            rt.chat("hi", max_tokens=2)
        except CircuitOpen:
            kind = "circuit_open"
        except InferenceError as exc:
            kind = exc.kind
        else:
            kind = "ok"
        calls.append((started, kind))
    return {"calls": calls}


def main() -> None:
    job = json.loads(sys.argv[1])
    hooks = PluginHooks(make_plugin_manager(disabled=job["disabled"]))
    rt = Runtime(load_config(job["overrides"]), hooks=hooks)
    print("ready", flush=True)
    sys.stdin.readline()
    report = {"load": load, "trip": trip, "watch": watch}[job["job"]](rt, job)
    rt.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
